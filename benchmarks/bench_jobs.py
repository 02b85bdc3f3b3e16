"""Benchmark: 20 NAF jobs over a synthetic SIRENE Parquet (5M rows) vs the naive way.

Contenders, each in its own child process, measured in the same run:
- **salvo job-batch** (the real `salvo jobs batch` command: Prefect flow, one child per job, the
  shared scan done once by the first job): wall time, peak RSS of the whole process tree (sampled,
  Prefect's API server included) and the largest job's own peak RSS;
- **direct scan per code** (the built-in builder without the shared scan: 20 filtered scans with
  row-group pruning, which cannot prune on a file not sorted by NAF);
- **naive pandas** (read the whole file once per code, filter, write CSV and Parquet);
- for reference, the pruned scans again over a copy of the file sorted by NAF code, pruning's best case.
All keep every matching active row and every column (profile `deep`).
``SALVO_BENCH_SCALE`` (default 1.0) scales the row count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
ROWS = 5_000_000
MAX_RAM_MB = 512
CODES = [
    "68.20B",
    "70.10Z",
    "94.99Z",
    "47.91B",
    "86.90D",
    "56.10A",
    "43.21A",
    "62.01Z",
    "69.20Z",
    "43.29A",
    "45.20A",
    "74.90B",
    "66.22Z",
    "81.21Z",
    "10.71C",
    "55.10Z",
    "99.00Z",
    "02.20Z",
    "43",
    "47.1",
]

_NAIVE = """
import sys, pandas as pd
src, out, codes = sys.argv[1], sys.argv[2], sys.argv[3:]
for code in codes:
    df = pd.read_parquet(src)  # the whole file, every time
    col = df["activitePrincipaleEtablissement"]
    hit = col == code if code[-1].isalpha() else col.str.startswith(code + ("." if len(code) == 2 else ""))
    part = df[hit & (df["etatAdministratifEtablissement"] == "A")]
    d = f"{out}/naf_{code.replace('.', '')}"
    import os; os.makedirs(d, exist_ok=True)
    part.to_csv(f"{d}/dataset.csv", index=False)
    part.to_parquet(f"{d}/dataset.parquet")
    del df, part
"""

_DIRECT = (
    """
import sys
from salvo.jobs.batch import render_jobs
from salvo.jobs.builder import run_job
src, out, codes = sys.argv[1], sys.argv[2], sys.argv[3:]
for job in render_jobs(codes, template=None, profile="deep", jobs_dir=out + "/jobs"):
    run_job(str(job.path), input=src, output_dir=out, max_ram_mb=%d)
"""
    % MAX_RAM_MB
)


_SORT = """
import sys, pyarrow.parquet as pq
table = pq.read_table(sys.argv[1]).sort_by("activitePrincipaleEtablissement")
pq.write_table(table, sys.argv[2], row_group_size=128 * 1024)
"""


def _measure(argv: list[str], *, env: dict[str, str] | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``argv``; return (wall s, peak RSS MiB of the whole process tree, completed process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak, stop = [0.0], threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total / 2**20)
            except psutil.Error:
                pass
            stop.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    t.join()
    done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, peak[0], done


def run() -> str:
    """Build the data, run the three contenders, return a markdown section."""
    scale = float(os.environ.get("SALVO_BENCH_SCALE", "1.0"))
    rows = max(10_000, int(ROWS * scale))
    sys.path.insert(0, str(ROOT))

    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    try:
        src = work / "sirene.parquet"
        gen_wall, gen_peak, _ = _measure(
            [
                sys.executable,
                "-c",
                f"from salvo.jobs.synth import write_synthetic_sirene as w; w({str(src)!r}, rows={rows})",
            ]
        )
        size_mb = src.stat().st_size / 2**20
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            PREFECT_HOME=str(work / "prefect"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        )
        args = [
            sys.executable,
            "-m",
            "cli",
            "jobs",
            "batch",
            "--input",
            str(src),
            "--output-dir",
            str(work / "ours"),
            "--jobs-dir",
            str(work / "ours-jobs"),
            "--profile",
            "deep",
            "--max-ram-mb",
            str(MAX_RAM_MB),
            "--json",
        ]
        for c in CODES:
            args += ["--naf", c]
        ours_wall, ours_peak, done = _measure(args, env=env)
        doc = json.loads(done.stdout)
        job_peak = max(e["peak_rss_mb"] or 0 for e in doc["jobs"])
        job_time = doc["summary"]["total_time_s"]
        rows_out = sum(e["rows"] for e in doc["jobs"])
        scan_s = max(r["metrics"].get("build_s", 0.0) for r in doc["items"])
        direct_wall, direct_peak, _ = _measure(
            [sys.executable, "-c", _DIRECT, str(src), str(work / "direct"), *CODES], env=env
        )
        naive_wall, naive_peak, _ = _measure(
            [sys.executable, "-c", _NAIVE, str(src), str(work / "naive"), *CODES], env=env
        )
        # Pruning's best case: the same rows sorted by NAF code, so each code sits in a few row groups.
        sorted_src = work / "sirene_by_naf.parquet"
        _measure([sys.executable, "-c", _SORT, str(src), str(sorted_src)], env=env)
        pruned_wall, pruned_peak, _ = _measure(
            [sys.executable, "-c", _DIRECT, str(sorted_src), str(work / "pruned"), *CODES], env=env
        )
        sorted_args = [a if a != str(src) else str(sorted_src) for a in args]
        sorted_args[sorted_args.index("--output-dir") + 1] = str(work / "ours-sorted")
        ours_sorted_wall, ours_sorted_peak, done = _measure(sorted_args, env=env)
        sorted_doc = json.loads(done.stdout)
        sorted_how = sorted({r["metrics"]["source"] for r in sorted_doc["items"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join(
        [
            "## jobs: 20 NAF codes over a synthetic SIRENE Parquet",
            "",
            f"Input: {rows:,} rows, {size_mb:.0f} MiB Parquet"
            f" (generated in chunks in {gen_wall:.1f} s, peak {gen_peak:.0f} MiB); "
            f"20 codes (18 subclasses, a division, a group), profile `deep`, `--max-ram-mb {MAX_RAM_MB}`;"
            f" {rows_out:,} rows written in all.",
            "",
            "| contender | wall time | peak RSS |",
            "|---|---|---|",
            f"| salvo job-batch (CLI, Prefect, shared scan) | {ours_wall:.1f} s"
            f" | {ours_peak:.0f} MiB tree, largest job {job_peak:.0f} MiB |",
            f"| ... of which the 20 jobs | {job_time:.1f} s (first job, with the shared scan: {scan_s:.1f} s) | |",
            f"| built-in builder, one pruned scan per code | {direct_wall:.1f} s | {direct_peak:.0f} MiB |",
            f"| naive: pandas reads the whole file per code | {naive_wall:.1f} s | {naive_peak:.0f} MiB |",
            "",
            "Pruning's best case, the same rows sorted by NAF code:",
            "",
            "| contender | wall time | peak RSS |",
            "|---|---|---|",
            f"| built-in builder, one pruned scan per code | {pruned_wall:.1f} s | {pruned_peak:.0f} MiB |",
            f"| salvo job-batch (chose: {', '.join(sorted_how)}) | {ours_sorted_wall:.1f} s"
            f" (jobs: {sorted_doc['summary']['total_time_s']:.1f} s) | {ours_sorted_peak:.0f} MiB tree |",
            "",
            "Peak RSS is sampled every 50 ms over the whole process tree; the salvo row includes the Prefect API",
            "server the command starts. The rest of salvo's wall time is that server's start-up, hashing the input",
            "for resume keys and the flow's bookkeeping: a fixed cost per command, not per row. Row-group pruning",
            "cannot help on this file: it is in SIREN order, so every row group holds every NAF code, and each",
            "pruned scan still reads the whole file; the shared scan reads it once for all 20 jobs. On a file",
            "sorted by NAF code (not the case of the SIRENE stock file) pruning cuts both; the batch chooses between",
            "one shared pass and a pruned scan per job by counting, from row-group statistics alone, the row groups",
            f"each would read (`prefer_shared_scan`); here it chose: {', '.join(sorted_how)}.",
        ]
    )


if __name__ == "__main__":
    print(run())
