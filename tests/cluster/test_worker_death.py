"""A Dask worker process that dies mid-item, on a real cluster (`dask scheduler`, two `dask worker`).

`salvo extract --dask-address ... --items-per-task 1` runs 8 items; one of them sleeps on its first
run, and the test SIGKILLs the Dask worker process whose tree runs it. The item's zygote kills the
item (its stdin closes), the scheduler gives the lost task to the other worker, and the item's
claim, held by a process of this host that is gone, is free at once: the item runs again there,
once. The first attempt's task run must not stay RUNNING in the Prefect API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster, start_cluster
from tests.helpers import alive, markers, wait_until

ITEMS = 8
SLOW = "w03"

#: The `--worker-command`: a marker per invocation (item, pid, ancestors' pids); the SLOW item
#: sleeps on its first run only (it is killed there); then a PNG in {output_dir}.
WORKER = """
import json, os, sys, time
from pathlib import Path
src, out, marks, slow = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
marks.mkdir(parents=True, exist_ok=True)
first = not list(marks.glob(src.stem + ".*"))
pids, pid = [], os.getppid()
while pid > 1:
    pids.append(pid)
    pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
doc = {"item": src.stem, "pid": os.getpid(), "ancestors": pids}
tmp = marks / ("." + src.stem + ".tmp." + str(os.getpid()))
tmp.write_text(json.dumps(doc))
tmp.rename(marks / f"{src.stem}.{os.getpid()}.{time.monotonic_ns()}")
time.sleep(300 if (src.stem == slow and first) else 0.2)
out.mkdir(parents=True, exist_ok=True)
(out / f"{src.stem}.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + src.read_bytes()[:64])
"""


#: Far longer than the test may take: an item runs again only because its claim's holder is seen dead.
LEASE_S = "600"


@pytest.fixture
def make_cluster(prefect_api: str, tmp_path: Path) -> Iterator[Callable[[int], Cluster]]:
    """Clusters of their own (a worker gets killed): two single-thread workers, no nanny (a killed
    worker stays dead, and stays an unreaped zombie of this test process, as under a parent that
    does not reap), the scheduler's ``allowed-failures`` as given."""
    started: list[Cluster] = []

    def make(allowed_failures: int) -> Cluster:
        base = tmp_path / f"dask{len(started)}"
        base.mkdir()
        env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(allowed_failures), "SALVO_LEASE_S": LEASE_S}
        started.append(start_cluster(prefect_api, base, workers=("dw-1", "dw-2"), nthreads=1, extra_env=env))
        return started[-1]

    try:
        yield make
    finally:
        for c in started:
            c.processes.stop()


def _marks(folder: Path) -> list[dict]:
    return [json.loads(m.read_text()) for m in markers(folder)]


def _worker_of(doc: dict, cluster: Cluster) -> int:
    (pid,) = [p for p in doc["ancestors"] if p in cluster.worker_pids.values()]
    return pid


def _flow_run_tasks(label: str) -> tuple[object, list]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=label)))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return run, tasks


@dataclass
class Killed:
    """A batch during which the Dask worker running SLOW was SIGKILLed."""

    returncode: int
    doc: dict
    stderr: str
    label: str  # part of the flow run's name
    out: Path
    runs: dict[str, list[dict]]  # item -> its markers
    first: dict  # the killed run's marker
    victim: int  # the killed worker's pid
    survivor: int


def _batch_with_a_killed_worker(cluster: Cluster, child_env: dict[str, str], tmp_path: Path) -> Killed:
    """`salvo extract` over ITEMS items on the cluster; SIGKILL the worker whose tree runs SLOW."""
    label = f"wd{uuid.uuid4().hex[:10]}"
    src = tmp_path / label
    src.mkdir()
    stems = [f"w{i:02d}" for i in range(ITEMS)]
    for s in stems:
        (src / f"{s}.nc").write_bytes(s.encode() * 16)
    script = tmp_path / "slow_worker.py"
    script.write_text(WORKER)
    marks, out = tmp_path / "markers", tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "cli",
        "extract",
        "--directory",
        str(src),
        "--output-dir",
        str(out),
        "--state",
        str(tmp_path / "state"),
        "--dask-address",
        cluster.address,
        "--items-per-task",
        "1",
        "--retries",
        "0",
        "--json",
        "--worker-command",
        f"{sys.executable} {script} {{input}} {{output_dir}} {marks} {SLOW}",
    ]
    proc = subprocess.Popen(
        argv,
        env={**child_env, "SALVO_LEASE_S": LEASE_S},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: any(d["item"] == SLOW for d in _marks(marks)), timeout=600, interval=0.2), (
            "the slow item never started"
        )
        (first,) = [d for d in _marks(marks) if d["item"] == SLOW]
        victim = _worker_of(first, cluster)
        os.kill(victim, signal.SIGKILL)
        out_text, err = proc.communicate(timeout=900)  # generous: a busy 2-core machine runs this many times slower
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    # The killed run did not outlive its worker: its zygote saw its stdin close and killed it.
    assert wait_until(lambda: not alive(first["pid"]), timeout=30)
    return Killed(
        returncode=proc.returncode,
        doc=json.loads(out_text),
        stderr=err,
        label=label,
        out=out,
        runs={s: [d for d in _marks(marks) if d["item"] == s] for s in stems},
        first=first,
        victim=victim,
        survivor=next(p for p in cluster.worker_pids.values() if p != victim),
    )


def _states(task_run_id: object) -> list[tuple[str, str]]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [(s.type.value, s.message or "") for s in client.read_task_run_states(task_run_id)]


def test_a_killed_dask_workers_item_runs_once_more_elsewhere_and_no_task_run_stays_running(
    make_cluster: Callable[[int], Cluster], child_env: dict[str, str], tmp_path: Path
) -> None:
    cluster = make_cluster(3)  # Dask's default: a task may lose up to 3 workers
    k = _batch_with_a_killed_worker(cluster, child_env, tmp_path)

    # The batch completed, every item with its one output.
    assert k.returncode == 0, k.stderr[-3000:]
    assert k.doc["summary"]["total"] == ITEMS and k.doc["summary"]["failed"] == 0, k.doc["summary"]
    assert all([p.name for p in (k.out / s).glob("*")] == [f"{s}.png"] for s in k.runs)
    # The killed item ran twice: once under the killed worker, once under the other one (its claim,
    # held by a dead process of this host, was free at once: the lease is longer than the test).
    assert len(k.runs[SLOW]) == 2, k.runs[SLOW]
    assert [_worker_of(d, cluster) for d in k.runs[SLOW] if d["pid"] != k.first["pid"]] == [k.survivor]
    # Every other item ran exactly once (a task whose result was lost with the worker found its record).
    assert {s: len(r) for s, r in k.runs.items() if s != SLOW} == {s: 1 for s in k.runs if s != SLOW}

    # In the Prefect API: the flow run completed; every task run completed, none left RUNNING.
    run, tasks = _flow_run_tasks(k.label)
    assert run.state.is_completed(), run.state
    assert sorted(t.name for t in tasks) == sorted(f"{s}.nc" for s in k.runs)
    assert [(t.name, t.state.type.value) for t in tasks if not t.state.is_completed()] == []
    (slow,) = [t for t in tasks if t.name == f"{SLOW}.nc"]
    assert [t for t, _ in _states(slow.id)].count("RUNNING") == 2  # the killed attempt, then the one that finished


def test_a_task_dask_gives_up_on_fails_its_item_and_its_task_run_does_not_stay_running(
    make_cluster: Callable[[int], Cluster], child_env: dict[str, str], tmp_path: Path
) -> None:
    cluster = make_cluster(0)  # the first lost worker is one too many: Dask raises KilledWorker
    k = _batch_with_a_killed_worker(cluster, child_env, tmp_path)

    # The item failed loudly (not silently lost) and did not run again. With no failure allowed, Dask
    # also gives up on tasks that were only queued on the dead worker: those fail the same way.
    assert k.returncode == 1, k.stderr[-3000:]
    failed = k.doc["summary"]["failed_items"]
    assert f"{SLOW}.nc" in failed, k.doc["summary"]
    assert all("KilledWorker" in r["reason"] for r in k.doc["items"] if r["item_id"] in failed), k.doc["items"]
    assert len(k.runs[SLOW]) == 1 and not list((k.out / SLOW).glob("*.png"))
    assert all(len(r) == 1 for s, r in k.runs.items() if f"{s}.nc" not in failed), k.runs  # the others: once each
    assert all(len(r) <= 1 for r in k.runs.values()), k.runs

    # Prefect would leave their task runs RUNNING forever; the batch ends them Crashed, with the reason.
    run, tasks = _flow_run_tasks(k.label)
    assert run.state.is_failed(), run.state
    assert [(t.name, t.state.type.value) for t in tasks if t.state.type.value in ("PENDING", "RUNNING")] == []
    crashed = sorted(t.name for t in tasks if t.state.type.value == "CRASHED")
    assert f"{SLOW}.nc" in crashed and set(crashed) <= set(failed), [(t.name, t.state) for t in tasks]
    assert all("Dask worker died" in (t.state.message or "") for t in tasks if t.name in crashed)
    # A failed item that never started (queued on the dead worker) has no task run at all.
    assert not {t.name for t in tasks} & (set(failed) - set(crashed))
    assert sorted(t.name for t in tasks if t.state.is_completed()) == sorted(
        f"{s}.nc" for s in k.runs if f"{s}.nc" not in failed
    )


@pytest.mark.pure
def test_a_claim_held_by_a_zombie_process_is_free_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed holder that its parent has not reaped yet (a SIGKILLed Dask worker without a nanny) is gone."""
    from salvo.spine.records import item_lock, record_store
    from tests.spine.test_claims import _holder

    monkeypatch.delenv("SALVO_HOST_ID", raising=False)
    proc, *_ = _holder(str(tmp_path / "state"), "z" * 40, tmp_path, SALVO_LEASE_S=LEASE_S)
    try:
        proc.send_signal(signal.SIGKILL)
        assert wait_until(
            lambda: Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", timeout=30
        )
        with item_lock(record_store(str(tmp_path / "state")), "z" * 40) as claim:  # not after the 600 s lease
            assert "gone" in (claim.took_over or "")
    finally:
        proc.wait()
