"""Items run as SLURM jobs: `--cluster slurm` on a real single-node SLURM (slurmctld, slurmd, munged) on 127.0.0.1.

The worker leaves a marker per run with the SLURM job it ran in (``SLURM_JOB_ID`` from its
environment), so the tests see that each item ran inside a job SLURM knows, that a job cancelled
under an item (``scancel``) makes the item run once more in another job, and that an item that
would outlive its job's walltime ends as a timeout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import markers, salvo, wait_until
from tests.slurm import Slurm, start_slurm, why_not

pytestmark = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))

#: A `--worker-command`: a marker per run (item, SLURM job), an optional sleep on the first run of
#: one item, then a real 1x1 PNG in {output_dir}.
WORKER = r"""
import json, os, struct, sys, time, zlib
from pathlib import Path
src, out, marks, slow, pause = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], float(sys.argv[5])
marks.mkdir(parents=True, exist_ok=True)
first = not [m for m in marks.glob(src.stem + ".*") if not m.name.startswith(".")]
doc = {"item": src.stem, "job": os.environ.get("SLURM_JOB_ID"), "pid": os.getpid()}
tmp = marks / f".{src.stem}.{os.getpid()}"
tmp.write_text(json.dumps(doc))
tmp.rename(marks / f"{src.stem}.{os.getpid()}.{time.monotonic_ns()}")
if src.stem == slow and first:
    time.sleep(pause)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")
out.mkdir(parents=True, exist_ok=True)
(out / f"{src.stem}.png").write_bytes(png)
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slurm]:
    cluster = start_slurm(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()


def _inputs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True)
    files = [folder / f"s{i:02d}.nc" for i in range(n)]
    for i, f in enumerate(files):
        f.write_bytes(f"input {i}\n".encode())
    return files


def _extract(
    tmp_path: Path,
    slurm: Slurm,
    child_env: dict[str, str],
    *flags: str,
    slow: str = "-",
    pause: float = 0.0,
    timeout: float = 600,
) -> tuple[object, Path]:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    marks = tmp_path / "marks"
    proc = salvo(
        "extract",
        "--directory",
        str(tmp_path / "in"),
        "--retries",
        "1",
        "--items-per-task",
        "1",
        "--json",
        "--worker-command",
        f"{sys.executable} {worker} {{input}} {{output_dir}} {marks} {slow} {pause}",
        "--cluster",
        "slurm",
        "--slurm-interface",
        "lo",
        "--slurm-max-jobs",
        "2",
        "--slurm-config",
        str(_config(tmp_path)),
        *flags,
        env={**child_env, **slurm.env},
        timeout=timeout,
    )
    return proc, marks


def _config(tmp_path: Path) -> Path:
    """Settings from a YAML file, as a lab keeps them; flags override them."""
    conf = tmp_path / "slurm.yaml"
    conf.write_text(
        f"slurm:\n  partition: debug\n  memory: 1GB\n  walltime: '00:10:00'\n  log_directory: {tmp_path / 'joblogs'}\n"
        "  job_extra_directives: ['--comment=salvo-test']\n"
    )
    return conf


def _runs(marks: Path) -> dict[str, list[str]]:
    """For each item, the SLURM job of each of its runs, in order."""
    out: dict[str, list[str]] = {}
    for m in sorted(markers(marks), key=lambda p: int(p.name.rsplit(".", 1)[1])):
        doc = json.loads(m.read_text())
        out.setdefault(doc["item"], []).append(doc["job"])
    return out


def test_items_run_inside_slurm_jobs(slurm: Slurm, child_env: dict[str, str], tmp_path: Path) -> None:
    files = _inputs(tmp_path / "in", 4)
    proc, marks = _extract(tmp_path, slurm, child_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["summary"]["total"] == 4 and doc["summary"]["failed"] == 0
    runs = _runs(marks)
    assert sorted(runs) == [f.stem for f in files] and all(len(jobs) == 1 for jobs in runs.values())
    jobs = {j for js in runs.values() for j in js}
    assert None not in jobs and jobs
    for job in jobs:  # each a job SLURM ran, submitted by Salvo with the settings given
        shown = slurm.run("scontrol", "show", "job", job)
        assert "JobName=salvo" in shown and "Partition=debug" in shown and "Comment=salvo-test" in shown, shown
    assert all((f.parent / f"{f.stem}_results" / f"{f.stem}.png").is_file() for f in files)
    assert list((tmp_path / "joblogs").glob("*.out")) or list((tmp_path / "joblogs").glob("*.err"))
    assert wait_until(lambda: not slurm.jobs(), timeout=120), f"jobs left in the queue: {slurm.jobs()}"


def test_a_job_cancelled_under_an_item_runs_the_item_once_more_elsewhere(
    slurm: Slurm, child_env: dict[str, str], tmp_path: Path
) -> None:
    import threading

    files = _inputs(tmp_path / "in", 3)
    marks = tmp_path / "marks"
    cancelled: list[str] = []

    def cancel_when_started() -> None:
        if wait_until(lambda: "s01" in _runs(marks), timeout=300, interval=0.2):
            job = _runs(marks)["s01"][0]
            slurm.run("scancel", job)
            cancelled.append(job)

    watcher = threading.Thread(target=cancel_when_started, daemon=True)
    watcher.start()
    proc, marks = _extract(tmp_path, slurm, child_env, slow="s01", pause=600)
    watcher.join(timeout=10)
    assert cancelled, "the slow item never started"
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _runs(marks)
    assert len(runs["s01"]) == 2 and runs["s01"][0] == cancelled[0] and runs["s01"][1] != cancelled[0], runs
    assert all(len(runs[f.stem]) == 1 for f in files if f.stem != "s01"), runs
    doc = json.loads(proc.stdout)
    assert doc["summary"]["succeeded"] == 3 if "succeeded" in doc["summary"] else doc["summary"]["failed"] == 0
    # Resumed: nothing runs again, in SLURM or here.
    again, _ = _extract(tmp_path, slurm, child_env, slow="s01", pause=600)
    assert again.returncode == 0 and _runs(marks) == runs


def test_an_item_that_would_outlive_its_job_is_a_timeout(
    slurm: Slurm, child_env: dict[str, str], tmp_path: Path
) -> None:
    _inputs(tmp_path / "in", 1)
    proc, marks = _extract(tmp_path, slurm, child_env, "--slurm-walltime", "1", slow="s00", pause=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    item = doc["items"][0]
    assert item["status"] == "timeout" and item["attempt"] == 1, item
    assert len(_runs(marks)["s00"]) == 1  # a timeout is never retried
    assert not (tmp_path / "in" / "s00_results").exists()


def test_a_gridded_run_split_across_slurm_jobs_equals_an_unsplit_run(
    slurm: Slurm, child_env: dict[str, str], tmp_path: Path
) -> None:
    """dvmdostem's cluster workflow: a 10 x 10 real-layout run split into 4 batches with failing cells,
    each batch recovered in a SLURM job, merged: cell for cell what one unsplit run gives."""
    import shlex
    import shutil

    import netCDF4
    import numpy as np

    from tests.helpers import PUBLIC_FIXTURES

    wrapper = tmp_path / "jobmark.py"  # notes the SLURM job each model run is in, then runs the model
    wrapper.write_text(
        "import os, sys\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(os.environ.get('SLURM_JOB_ID', 'none') + '\\n')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'salvo.gridded.fakemodel', *sys.argv[2:]])\n"
    )
    marks = tmp_path / "jobs.txt"
    model = (
        f"{shlex.quote(sys.executable)} {wrapper} {marks} --mask {{mask}} --output {{output}} "
        "--fail-cells '1,1;4,6;8,3' --fail-runs 1 --seed 2"
    )
    for name in ("whole", "split"):
        (tmp_path / name).mkdir()
        shutil.copy(PUBLIC_FIXTURES / "dvmdostem-imnaviat" / "run-mask.nc", tmp_path / name / "run-mask.nc")
    env = {**child_env, **slurm.env}
    ref = salvo(
        "recover",
        "--model-command",
        model,
        "--mask",
        str(tmp_path / "whole" / "run-mask.nc"),
        "--output",
        str(tmp_path / "whole" / "output"),
        "--json",
        env=env,
        timeout=600,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    marks.unlink()
    proc = salvo(
        "recover",
        "--model-command",
        model,
        "--mask",
        str(tmp_path / "split" / "run-mask.nc"),
        "--output",
        str(tmp_path / "split" / "output"),
        "--cells-per-batch",
        "25",
        "--max-queued",
        "2",
        "--json",
        "--cluster",
        "slurm",
        "--slurm-interface",
        "lo",
        "--slurm-walltime",
        "00:20:00",
        "--slurm-config",
        str(_config(tmp_path)),
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert len(doc["batches"]) == 4 and doc["merge"]["success_cells"] == 100
    for name in sorted(p.name for p in (tmp_path / "whole" / "output").glob("*.nc")):
        with (
            netCDF4.Dataset(tmp_path / "whole" / "output" / name) as a,
            netCDF4.Dataset(tmp_path / "split" / "output" / name) as b,
        ):
            for var in a.variables:
                assert np.array_equal(np.asarray(a.variables[var][:]), np.asarray(b.variables[var][:])), f"{name}:{var}"
    # Every model run (4 batches, plus one re-run round in each batch holding a failing cell) was inside a SLURM job.
    jobs = marks.read_text().split()
    assert len(jobs) == 4 + 3 and "none" not in jobs, jobs
    assert wait_until(lambda: not slurm.jobs(), timeout=120), f"jobs left in the queue: {slurm.jobs()}"
