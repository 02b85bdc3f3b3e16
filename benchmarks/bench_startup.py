"""Benchmark: what orchestration costs a short batch. `salvo extract` on 3 small NetCDF files vs plain Python.

Contenders, each a child process timed with its peak RSS, in one run:
- plain Python: a loop calling ``salvo.extract.extract_plots`` on each file (no Prefect at all);
- `salvo extract` with no PREFECT_API_URL: Prefect starts a temporary (ephemeral) API server for the run;
- `salvo extract` with PREFECT_API_URL pointing at a `prefect server start` that already runs.
Every contender gets a fresh copy of the inputs, so nothing is resumed. ``SALVO_BENCH_SCALE``
multiplies the number of repetitions (default 1: one run each, plus one warm-up of each).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, bench_env, measure, scale
from salvo.procs import Processes, free_port, prefect_command, wait_healthy

FILES = 3
PLAIN = (
    "import sys, pathlib\n"
    "from salvo.extract import extract_plots\n"
    "for f in sorted(pathlib.Path(sys.argv[1]).glob('*.nc')):\n"
    "    extract_plots(input=str(f), output_dir=str(f.with_name(f.stem + '_results')))\n"
)


def _inputs(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _time(label: str, argv_for, env: dict[str, str], src: Path, work: Path, reps: int) -> tuple[str, float, float]:  # noqa: ANN001
    walls, peaks = [], []
    for i in range(reps + 1):  # the first run warms the page cache and .pyc files; it is not counted
        folder = _inputs(src, work / f"{label}-{i}")
        m = measure(argv_for(folder), env=env, cwd=ROOT)
        if m.returncode != 0:
            raise RuntimeError(f"{label} failed with exit code {m.returncode}")
        if i:
            walls.append(m.wall_s)
            peaks.append(m.peak_rss_mb)
    return label, statistics.median(walls), max(peaks)


def run() -> str:
    """Measure the three contenders; return a markdown section."""
    from salvo.samples.netcdf import write_series_file

    reps = max(1, round(scale()))
    work = Path(tempfile.mkdtemp(prefix="salvo-bench-startup-"))
    procs = Processes()
    try:
        src = work / "src"
        for i in range(FILES):
            write_series_file(src / f"small_{i}.nc", steps=12, seed=i)
        env = bench_env()
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_HOME"] = str(work / "prefect-home")
        plain = _time("plain", lambda d: [sys.executable, "-c", PLAIN, str(d)], env, src, work, reps)
        salvo = [sys.executable, "-m", "cli", "extract", "--json", "--directory"]
        ephemeral = _time("ephemeral", lambda d: [*salvo, str(d)], env, src, work, reps)
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        server_env = {**env, "PREFECT_UI_ENABLED": "false"}
        server = procs.start("server", prefect_command("server", "start", "--host", "127.0.0.1", "--port", str(port)), env=server_env, log=work / "server.log")
        startup = wait_healthy(api, timeout_s=300, process=server, log=work / "server.log")
        served = _time("server", lambda d: [*salvo, str(d)], {**env, "PREFECT_API_URL": api}, src, work, reps)
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = plain[1]
    rows = [
        "| contender | wall time (s) | vs plain Python | peak RSS (MiB) |",
        "|---|---:|---:|---:|",
    ]
    names = {
        "plain": "plain Python loop over `extract_plots` (no orchestrator)",
        "ephemeral": "`salvo extract`, embedded ephemeral API (no PREFECT_API_URL)",
        "server": "`salvo extract`, PREFECT_API_URL = a running `prefect server start`",
    }
    for label, wall, peak in (plain, ephemeral, served):
        rows.append(f"| {names[label]} | {wall:.1f} | +{wall - base:.1f} s | {peak:.0f} |")
    return "\n".join([
        f"## Start-up cost: `salvo extract` on {FILES} small files vs plain Python",
        "",
        f"Each contender is a fresh child process over a fresh copy of {FILES} NetCDF files (12 steps, 6x8 grid);"
        f" median of {reps} run(s) after one warm-up. Peak RSS is the largest process of the tree.",
        "",
        *rows,
        "",
        f"The server itself took {startup:.1f} s to become healthy (paid once, not per batch).",
        "What is configured to keep this small: no heartbeat wait at the end of a CLI flow run"
        " (`flows.heartbeat_frequency=None`), one warm zygote per worker thread so each item forks"
        " with its imports already paid, and `--parallel` running Dask threads inside the flow's process"
        " (one API, not one per Dask worker process; docs/deploy.md says to give an external cluster's"
        " workers PREFECT_API_URL for the same reason). What remains is Prefect's import and the ephemeral API's start, which a"
        " running server (PREFECT_API_URL) removes.",
    ])


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(run())
