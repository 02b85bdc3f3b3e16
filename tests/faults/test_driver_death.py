"""The driver of every pipeline command dies mid-batch: kill -9, SIGTERM, or a terminal's Ctrl-C.

Each command runs in its own session (as a terminal's foreground job), with short items that leave a
marker file per invocation. Once one item has finished and another is running, the driver gets:

- ``SIGKILL`` or ``SIGTERM`` (the driver alone): its flow run is left RUNNING, and the next command
  marks it Crashed in the (real) Prefect API;
- ``SIGINT`` to the whole process group (what Ctrl-C in a terminal does): exit 130, reports
  written, the flow run ends Cancelled.

Either way no process of the command's tree (collected while it ran) is alive soon after, and a
resume run finishes the rest without running a finished item twice.

Combinations tested elsewhere are not repeated here: extract x SIGKILL
(tests/extract/test_cli.py, tests/deploy/test_local_server.py), extract x Ctrl-C to the group
(tests/spine/test_batch_interrupt.py), jobs x SIGKILL (tests/jobs/test_batch.py) and subjects x
SIGKILL (tests/subjects/test_cli.py).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.extract.scripts import command as extract_command
from tests.extract.scripts import write_script
from tests.helpers import child_env_for, wait_until

ROOT = Path(__file__).resolve().parents[2]
#: The product aims at 5 s from the signal to the last process gone; allowed more on a loaded machine.
GONE_WITHIN_S = 15
#: Each item's duration while the driver is killed (short, so the whole file stays cheap).
ITEM_S = "1.5"
N_ITEMS = 4


@dataclass
class Case:
    """One pipeline command: how to start it, and what its markers say."""

    argv: Callable[[Path], list[str]]
    #: item -> invocations so far
    runs: Callable[[Path], dict[str, int]]
    #: items whose outputs are complete (finished)
    finished: Callable[[Path], set[str]]
    #: a report the command writes when it ends on Ctrl-C
    report: Callable[[Path], Path]
    items: list[str]
    env: Callable[[Path, bool], dict[str, str]] = lambda tmp, slow: {}
    resume_argv: Callable[[Path], list[str]] | None = None
    #: when to send the signal (default: one item finished and another one started)
    ready: Callable[[Path], bool] | None = None


def _count(folder: Path) -> dict[str, int]:
    """Invocations per item from marker files ``<item>.<pid>``."""
    out: dict[str, int] = {}
    for p in folder.glob("*") if folder.is_dir() else []:
        name, _, pid = p.name.rpartition(".")
        if pid.isdigit():
            out[name] = out.get(name, 0) + 1
    return out


# --------------------------------------------------------------------------- extract


def _extract_argv(tmp: Path) -> list[str]:
    data = tmp / "data"
    if not data.exists():
        data.mkdir()
        for i in range(N_ITEMS):
            (data / f"slow_{i}.nc").write_text(str(i))
    return [
        "extract",
        "--directory",
        str(data),
        "--retries",
        "0",
        "--worker-command",
        extract_command(write_script(tmp), str(tmp / "calls")),
    ]


EXTRACT = Case(
    argv=_extract_argv,
    runs=lambda tmp: {k.removesuffix(".nc"): v for k, v in _count(tmp / "calls").items()},
    finished=lambda tmp: {p.name.removesuffix("_results") for p in (tmp / "data").glob("*_results")},
    report=lambda tmp: tmp / "data" / "batch_processing_summary.txt",
    items=[f"slow_{i}" for i in range(N_ITEMS)],
    env=lambda tmp, slow: {"SLOW_SECONDS": ITEM_S if slow else "0"},
)


# --------------------------------------------------------------------------- jobs batch

JOB_WORKER = ROOT / "tests" / "jobs" / "cmd_worker.py"
NAF = ["6920Z", "4329A", "0111Z", "4711D"]


def _jobs_argv(tmp: Path) -> list[str]:
    from salvo.jobs.synth import write_synthetic_sirene

    sirene, marks = tmp / "sirene.parquet", tmp / "calls"
    if not sirene.exists():
        write_synthetic_sirene(sirene, rows=2_000, seed=1, row_group_rows=1_000)
        marks.mkdir()
        (marks / "mode.json").write_text("{}")
    # The built-in builder, behind a wrapper that sleeps first while FAULT_SLEEP_S is set.
    cmd = (
        f"{shlex.quote(sys.executable)} -c \"import os,time; time.sleep(float(os.environ.get('FAULT_SLEEP_S','0')))\" "
        f"&& {shlex.quote(sys.executable)} {JOB_WORKER} {marks} {{naf_code}} {{job_file}} {{input}} {{output_dir}}"
    )
    argv = [
        "jobs",
        "batch",
        "--input",
        str(sirene),
        "--output-dir",
        str(tmp / "out"),
        "--jobs-dir",
        str(tmp / "jobs"),
        "--retries",
        "0",
        "--job-command",
        f"sh -c {shlex.quote(cmd)}",
    ]
    for c in NAF:
        argv += ["--naf", c]
    return argv


def _jobs_finished(tmp: Path) -> set[str]:
    return {p.name.removeprefix("naf_") for p in (tmp / "out").glob("naf_*") if (p / "dataset.parquet").exists()}


JOBS = Case(
    argv=_jobs_argv,
    runs=lambda tmp: _count(tmp / "calls"),
    finished=_jobs_finished,
    report=lambda tmp: tmp / "out" / "batch_processing_summary.txt",
    items=NAF,
    env=lambda tmp, slow: {"FAULT_SLEEP_S": ITEM_S if slow else "0"},
)


# --------------------------------------------------------------------------- subjects


def _subjects_argv(tmp: Path) -> list[str]:
    from salvo.subjects.samples import make_manifest_study
    from tests.subjects.support import fake_command, write_plan

    manifest = tmp / "study" / "manifest.json"
    if not manifest.exists():
        manifest = make_manifest_study(tmp / "study", subjects=N_ITEMS, shape=(4, 4, 3))
    plan = tmp / "plan" / "plan.json"
    if not plan.exists():
        write_plan(tmp / "plan", {})
    return [
        "subjects",
        "--manifest",
        str(manifest),
        "--out",
        str(tmp / "out"),
        "--retries",
        "0",
        "--pipeline-command",
        fake_command(plan),
    ]


def _subjects_env(tmp: Path, slow: bool) -> dict[str, str]:
    from tests.subjects.support import write_plan

    write_plan(tmp / "plan", {f"sub-00{i}": f"sleep:{ITEM_S if slow else 0}" for i in range(1, N_ITEMS + 1)})
    return {}


def _subjects_runs(tmp: Path) -> dict[str, int]:
    folder = tmp / "plan" / "markers"
    return (
        {p.name.removesuffix(".runs"): len(p.read_text().splitlines()) for p in folder.glob("*.runs")}
        if folder.is_dir()
        else {}
    )


def _subjects_finished(tmp: Path) -> set[str]:
    from salvo.subjects.unit import read_done

    return {p.name for p in (tmp / "out").glob("sub-*") if (d := read_done(p)) and d["status"] == "success"}


SUBJECTS = Case(
    argv=_subjects_argv,
    runs=_subjects_runs,
    finished=_subjects_finished,
    report=lambda tmp: tmp / "out" / "batch_processing_summary.txt",
    items=[f"sub-00{i}" for i in range(1, N_ITEMS + 1)],
    env=_subjects_env,
)


# --------------------------------------------------------------------------- assembly run


def _assembly_argv(tmp: Path) -> list[str]:
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"calls: {tmp / 'calls'}\n")
    return [
        "assembly",
        "run",
        "tests.faults.workers:slow_generator",
        "--storage",
        str(tmp / "store"),
        "--config",
        str(cfg),
        "--samples",
        str(N_ITEMS),
        "--chunk-size",
        "1",
        "--retries",
        "0",
    ]


def _assembly_id(tmp: Path) -> str:
    [aid] = [p.name for p in (tmp / "store").glob("*/chunks/*")]
    return aid


def _assembly_resume(tmp: Path) -> list[str]:
    return [*_assembly_argv(tmp), "--resume", _assembly_id(tmp)]


def _assembly_finished(tmp: Path) -> set[str]:
    """Chunks written; every chunk once the data file holds them (the chunks are then removed)."""
    if list((tmp / "store").glob("*/*.parquet")):
        return {str(i) for i in range(N_ITEMS)}
    return {str(int(p.stem.split("_")[1])) for p in (tmp / "store").glob("*/chunks/*/chunk_*.parquet")}


ASSEMBLY = Case(
    argv=_assembly_argv,
    runs=lambda tmp: _count(tmp / "calls"),
    finished=_assembly_finished,
    report=lambda tmp: next((tmp / "store").glob("*/reports/*/batch_processing_summary.txt"), tmp / "no-report"),
    items=[str(i) for i in range(N_ITEMS)],
    env=lambda tmp, slow: {"FAULT_SLEEP_S": ITEM_S if slow else "0"},
    resume_argv=_assembly_resume,
)


# --------------------------------------------------------------------------- recover

#: Cells of the simulated model that fail their first run; the second model run (round 1) hangs.
FAIL_CELLS = ["1,1", "2,2"]


def _recover_argv(tmp: Path) -> list[str]:
    from salvo.gridded.formats import write_run_mask

    mask = tmp / "run-mask.nc"
    if not mask.exists():
        run = np.ones((3, 3), dtype="i4")
        run[0, 0] = 0
        write_run_mask(mask, run=run)
    model = (
        f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}} "
        "--years 2 --layers 3 "
        f"--state {tmp / 'model-state.json'} --fail-cells '{';'.join(FAIL_CELLS)}' --fail-runs 1 --hang-on-run 2"
    )
    return [
        "recover",
        "--model-command",
        model,
        "--mask",
        str(mask),
        "--output",
        str(tmp / "output"),
        "--max-rounds",
        "3",
    ]


def _recover_state(tmp: Path) -> dict:
    path = tmp / "model-state.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": 0, "attempts": {}}


def _recover_finished(tmp: Path) -> set[str]:
    """Cells the model has run to success: every attempted cell, but a failing cell only from its second run."""
    attempts = _recover_state(tmp)["attempts"]
    return {c for c, n in attempts.items() if c not in FAIL_CELLS or n >= 2}


RECOVER = Case(
    argv=_recover_argv,
    runs=lambda tmp: dict(_recover_state(tmp)["attempts"]),
    finished=_recover_finished,
    report=lambda tmp: tmp / "output.recovery" / "recovery.json",
    items=[f"{y},{x}" for y in range(3) for x in range(3) if (y, x) != (0, 0)],
    ready=lambda tmp: _recover_state(tmp)["runs"] >= 2,  # round 1's model run is running (hung)
)


CASES = {"extract": EXTRACT, "jobs": JOBS, "subjects": SUBJECTS, "assembly": ASSEMBLY, "recover": RECOVER}
#: (pipeline, signal) pairs not already tested elsewhere (see the module's docstring).
COMBOS = [
    ("extract", "SIGTERM"),
    ("jobs", "SIGTERM"),
    ("jobs", "SIGINT"),
    ("subjects", "SIGTERM"),
    ("subjects", "SIGINT"),
    ("assembly", "SIGKILL"),
    ("assembly", "SIGTERM"),
    ("assembly", "SIGINT"),
    ("recover", "SIGKILL"),
    ("recover", "SIGTERM"),
    ("recover", "SIGINT"),
]


# --------------------------------------------------------------------------- the API


def _post(api: str, path: str, body: dict) -> object:
    req = urllib.request.Request(
        f"{api}{path}", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _driver_runs(api: str, pid: int) -> list[dict]:
    """The flow runs the driver ``pid`` created (tagged ``salvo-driver:HOST:PID``)."""
    tag = f"salvo-driver:{socket.gethostname()}:{pid}"
    return _post(api, "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}, "limit": 50})  # type: ignore[return-value]


def _tree(pid: int) -> set[int]:
    try:
        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _live(pids: set[int]) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out[pid] = " ".join(p.cmdline()[:5])
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.mark.parametrize(("pipeline", "sig"), COMBOS, ids=[f"{p}-{s}" for p, s in COMBOS])
def test_the_driver_dies_mid_batch(pipeline: str, sig: str, tmp_path: Path, prefect_api: str) -> None:
    case = CASES[pipeline]
    env = child_env_for(prefect_api)
    argv = case.argv(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *argv],
        cwd=ROOT,
        env={**env, **case.env(tmp_path, True)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tree: set[int] = set()

    def one_done_one_running() -> bool:
        tree.update(_tree(proc.pid))
        if case.ready is not None:
            return case.ready(tmp_path) or proc.poll() is not None
        runs, done = case.runs(tmp_path), case.finished(tmp_path)
        return bool(done) and any(item not in done for item in runs) or proc.poll() is not None

    try:
        assert wait_until(one_done_one_running, timeout=240, interval=0.1), "no item finished"
        assert proc.poll() is None, proc.communicate()
        tree.update(_tree(proc.pid))
        done_before = case.finished(tmp_path)
        t0 = time.monotonic()
        if sig == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        else:
            os.kill(proc.pid, getattr(signal, sig))  # the driver alone
        out, err = proc.communicate(timeout=120)
        exited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert tree, "the command started no process"
    gone = wait_until(lambda: not _live(tree), timeout=5)
    left_at_5s = _live(tree)
    assert gone or wait_until(lambda: not _live(tree), timeout=GONE_WITHIN_S - 5), _live(tree)
    print(
        f"{pipeline} {sig}: driver exited {exited:.1f} s,"
        f" all {len(tree)} processes gone {time.monotonic() - t0:.1f} s after the signal"
        + (f"; still alive at 5 s: {left_at_5s}" if left_at_5s else "")
    )
    [run] = [r for r in _driver_runs(prefect_api, proc.pid) if r.get("parent_task_run_id") is None]

    if sig == "SIGINT":
        assert proc.returncode == 130, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert case.report(tmp_path).exists(), err[-3000:]
        with urllib.request.urlopen(f"{prefect_api}/flow_runs/{run['id']}", timeout=30) as resp:
            assert json.loads(resp.read())["state"]["type"] == "CANCELLED"
    else:
        assert proc.returncode == -getattr(signal, sig), err[-3000:]

    # The next run (same command) resumes: finished items are not run again, the rest run once more.
    again_argv = case.resume_argv(tmp_path) if case.resume_argv else argv
    again = subprocess.run(
        [sys.executable, "-m", "cli", *again_argv],
        cwd=ROOT,
        env={**env, **case.env(tmp_path, False)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    with urllib.request.urlopen(f"{prefect_api}/flow_runs/{run['id']}", timeout=30) as resp:
        state = json.loads(resp.read())["state"]
    assert state["type"] == ("CANCELLED" if sig == "SIGINT" else "CRASHED"), state
    assert case.finished(tmp_path) == set(case.items)
    runs = case.runs(tmp_path)
    assert all(runs.get(item) == 1 for item in done_before), (done_before, runs)  # nothing finished ran twice
    assert all(1 <= runs.get(item, 0) <= 2 for item in case.items), runs  # the interrupted one at most once more
