"""Two "hosts" run the same batch at once, sharing only the records' storage (S3 or a shared folder).

Each host is a `salvo extract` child process with its own TMPDIR, PREFECT_HOME and host id
(``SALVO_HOST_ID``: it cannot see the other's processes), talking to the same Prefect API. They
share only ``--state``: a moto S3 endpoint on loopback, or one local folder. The worker leaves a
marker per invocation, outside the outputs, naming its ancestors' pids (so which host ran it);
both hosts run the very same command, so their items have the same resume keys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import MARKER_WORKER
from tests.helpers import markers, wait_until

ITEMS = 24
LEASE_S = 3.0


@pytest.fixture(params=["s3", "shared-folder"])
def shared_state(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The state both hosts use, and the environment it needs."""
    if request.param == "shared-folder":
        return str(tmp_path / "shared-state"), {}
    endpoint = request.getfixturevalue("s3_endpoint")
    return request.getfixturevalue("s3_url") + "/records", {"AWS_ENDPOINT_URL": endpoint}


def _batch(tmp_path: Path) -> list[str]:
    src = tmp_path / "in"
    src.mkdir()
    stems = [f"m{i:02d}" for i in range(ITEMS)]
    for s in stems:
        (src / f"{s}.nc").write_bytes(s.encode() * 16)
    return stems


def _start(
    host: str, tmp_path: Path, child_env: dict[str, str], state: str, extra: dict[str, str], pause: float
) -> subprocess.Popen[str]:
    home = tmp_path / host
    (home / "tmp").mkdir(parents=True)
    (home / "prefect").mkdir()
    env = {
        **child_env,
        **extra,
        "TMPDIR": str(home / "tmp"),
        "PREFECT_HOME": str(home / "prefect"),
        "SALVO_HOST_ID": host,
        "SALVO_LEASE_S": str(LEASE_S),
        "SALVO_CLAIM_POLL_S": "0.2",
    }
    argv = [
        sys.executable,
        "-m",
        "cli",
        "extract",
        "--directory",
        str(tmp_path / "in"),
        "--output-dir",
        str(tmp_path / "out"),
        "--state",
        state,
        "--retries",
        "0",
        "--json",
        "--worker-command",
        f"{sys.executable} {MARKER_WORKER} {{input}} {{output_dir}} {tmp_path / 'markers'} {pause}",
    ]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _runs(tmp_path: Path, stems: list[str], hosts: dict[str, int]) -> dict[str, dict[str, int]]:
    """How many times each item ran, on each host (known by the host's pid among the marker's ancestors)."""
    runs = {s: {h: 0 for h in hosts} for s in stems}
    for s in stems:
        for m in markers(tmp_path / "markers", s):
            ancestors = json.loads(m.read_text())["ancestors"]
            (host,) = [h for h, pid in hosts.items() if pid in ancestors]
            runs[s][host] += 1
    return runs


def _marks_of(tmp_path: Path, pid: int) -> int:
    return sum(1 for m in markers(tmp_path / "markers") if _ran_under(m, pid))


def _ran_under(marker: Path, pid: int) -> bool:
    try:
        return pid in json.loads(marker.read_text())["ancestors"]
    except ValueError:  # being written
        return False


def _finish(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def test_two_hosts_run_each_item_exactly_once(shared_state, tmp_path: Path, child_env: dict[str, str]) -> None:  # noqa: ANN001
    state, extra = shared_state
    stems = _batch(tmp_path)
    hosts = {h: _start(h, tmp_path, child_env, state, extra, pause=0.2) for h in ("host-a", "host-b")}
    docs = [_finish(p) for p in hosts.values()]

    for doc in docs:
        assert doc["summary"]["total"] == ITEMS and doc["summary"]["failed"] == 0
    runs = _runs(tmp_path, stems, {h: p.pid for h, p in hosts.items()})
    assert all(sum(r.values()) == 1 for r in runs.values()), runs  # each item ran exactly once
    assert all(len(list((tmp_path / "out" / s).glob("*.png"))) == 1 for s in stems)


def test_a_killed_hosts_item_runs_again_once_after_its_lease(
    shared_state, tmp_path: Path, child_env: dict[str, str]
) -> None:  # noqa: ANN001
    state, extra = shared_state
    stems = _batch(tmp_path)
    a = _start("host-a", tmp_path, child_env, state, extra, pause=0.4)
    try:
        # host-a gets going alone, so that it holds an item when it dies.
        assert wait_until(lambda: _marks_of(tmp_path, a.pid) >= 3, timeout=120)
        b = _start("host-b", tmp_path, child_env, state, extra, pause=0.4)
        assert wait_until(lambda: _marks_of(tmp_path, a.pid) >= 5, timeout=120)
    finally:
        os.killpg(a.pid, signal.SIGKILL)  # mid-item: its worker sleeps 0.4 s after its marker
        killed = time.time()
        a.wait(timeout=30)
    doc = _finish(b)

    assert doc["summary"]["total"] == ITEMS and doc["summary"]["failed"] == 0
    runs = _runs(tmp_path, stems, {"host-a": a.pid, "host-b": b.pid})
    assert all(sum(r.values()) >= 1 for r in runs.values()), runs  # the other host finished everything
    twice = [s for s, r in runs.items() if sum(r.values()) > 1]
    assert len(twice) <= 1, runs  # nothing finished ran twice: only the item in flight at the kill
    for s in twice:  # ... which ran once more, on host-b, once host-a's lease had run out
        assert runs[s] == {"host-a": 1, "host-b": 1}
        (rerun,) = [m for m in markers(tmp_path / "markers", s) if _ran_under(m, b.pid)]
        assert rerun.stat().st_mtime - killed >= LEASE_S * 0.5
    assert all(len(list((tmp_path / "out" / s).glob("*.png"))) == 1 for s in stems)
