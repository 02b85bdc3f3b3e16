"""Item claims with leases, between real processes, on a local folder and on S3 (moto)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from salvo.claims import Claim
from salvo.storage import open_storage
from tests.helpers import wait_until

# Real processes contending for leases (and a moto server for S3): seconds each, so make test-fast leaves them out.
pytestmark = [pytest.mark.pure, pytest.mark.slow]

ROOT = str(Path(__file__).resolve().parents[2])

CONTENDER = textwrap.dedent(
    """
    import sys, time
    from salvo.claims import Claim
    from salvo.storage import open_storage
    url, endpoint, log, who = sys.argv[1:5]
    target = open_storage(url, endpoint_url=endpoint or None).child("claims")
    for i in range(6):
        with Claim(target, f"key{i % 3}"):
            with open(log, "a") as fh:
                fh.write(f"{who} key{i % 3} in {time.time():.6f}\\n")
            time.sleep(0.05)
            with open(log, "a") as fh:
                fh.write(f"{who} key{i % 3} out {time.time():.6f}\\n")
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time, pathlib
    from salvo.outcome import ItemResult, Status
    from salvo.spine.records import item_lock, record_store, write_record
    state, key, ready, go, verdict = sys.argv[1:6]
    store = record_store(state)
    with item_lock(store, key):
        pathlib.Path(ready).touch()
        while not pathlib.Path(go).exists():
            time.sleep(0.02)
        ok = write_record(store, key, ItemResult("written-by-the-first-holder", Status.SUCCESS))
        pathlib.Path(verdict).write_text(str(ok))
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT
    env.update(extra)
    return env


def _location(storage_location) -> tuple[str, str]:  # noqa: ANN001
    return storage_location.url, storage_location.endpoint_url or ""


def test_two_processes_never_hold_the_same_claim_at_once(storage_location, tmp_path: Path) -> None:  # noqa: ANN001
    url, endpoint = _location(storage_location)
    log = tmp_path / "log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, url, endpoint, str(log), who], env=_env(SALVO_CLAIM_POLL_S="0.05")
        )
        for who in ("A", "B")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    events: dict[str, list[tuple[float, str, str]]] = {}
    for line in log.read_text().splitlines():
        who, key, what, t = line.split()
        events.setdefault(key, []).append((float(t), what, who))
    assert sum(len(v) for v in events.values()) == 2 * 2 * 6
    for key, evs in events.items():
        holder = None
        for _t, what, who in sorted(evs):
            if what == "in":
                assert holder is None, f"{who} entered {key} while {holder} held it"
                holder = who
            else:
                assert holder == who
                holder = None


def _holder(state: str, key: str, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], Path, Path, Path]:
    ready, go, verdict = tmp_path / "ready", tmp_path / "go", tmp_path / "verdict"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, state, key, str(ready), str(go), str(verdict)], env=_env(**env)
    )
    assert wait_until(ready.exists, timeout=60)
    return proc, ready, go, verdict


def test_a_dead_hosts_claim_is_taken_over_after_its_lease(
    storage_location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    from salvo.spine.records import item_lock, read_record, record_store

    if storage_location.endpoint_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", storage_location.endpoint_url)
    lease = 2.0
    proc, *_ = _holder(storage_location.url, "k" * 40, tmp_path, SALVO_LEASE_S=str(lease), SALVO_HOST_ID="host-a")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    monkeypatch.setenv("SALVO_HOST_ID", "host-b")  # another machine: it cannot see host-a's processes
    monkeypatch.setenv("SALVO_LEASE_S", str(lease))
    store = record_store(storage_location.url)
    with item_lock(store, "k" * 40) as claim:
        waited = time.monotonic() - killed
        assert claim.took_over and read_record(store, "k" * 40) is None
    assert lease * 0.9 <= waited < lease * 10


def test_on_one_host_a_dead_processs_claim_is_free_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from salvo.spine.records import item_lock, record_store

    monkeypatch.delenv("SALVO_HOST_ID", raising=False)
    proc, *_ = _holder(str(tmp_path / "state"), "d" * 40, tmp_path, SALVO_LEASE_S="60")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    with item_lock(record_store(str(tmp_path / "state")), "d" * 40) as claim:
        assert "gone" in (claim.took_over or "")
    assert time.monotonic() - t0 < 30  # not the 60 s lease


def test_a_host_that_lost_its_lease_does_not_record_over_the_new_holder(
    storage_location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    from salvo.outcome import ItemResult, Status
    from salvo.spine.records import item_lock, read_record, record_store, write_record

    if storage_location.endpoint_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", storage_location.endpoint_url)
    lease, key = 2.0, "e" * 40
    out = tmp_path / "out.txt"
    out.write_text("x")
    proc, _ready, go, verdict = _holder(
        storage_location.url, key, tmp_path, SALVO_LEASE_S=str(lease), SALVO_HOST_ID="host-a"
    )
    proc.send_signal(signal.SIGSTOP)  # the host freezes (a long GC pause, a VM migration, a cut link)
    try:
        monkeypatch.setenv("SALVO_HOST_ID", "host-b")
        monkeypatch.setenv("SALVO_LEASE_S", str(lease))
        store = record_store(storage_location.url)
        with item_lock(store, key) as claim:
            assert claim.took_over
            assert write_record(store, key, ItemResult("written-by-the-new-holder", Status.SUCCESS, outputs=[str(out)]))
            go.touch()
            proc.send_signal(signal.SIGCONT)  # the old holder wakes up and finishes its item
            assert proc.wait(timeout=60) == 0
    finally:
        proc.send_signal(signal.SIGCONT)
    assert verdict.read_text() == "False"
    assert read_record(record_store(storage_location.url), key).item_id == "written-by-the-new-holder"


def test_a_claim_is_renewed_while_held(tmp_path: Path) -> None:
    target = open_storage(str(tmp_path / "s")).child("claims")
    with Claim(target, "r", lease_s=0.9) as claim:
        first = (tmp_path / "s" / "claims" / "r" / f"{claim.gen:012d}").read_bytes()
        assert wait_until(
            lambda: (tmp_path / "s" / "claims" / "r" / f"{claim.gen:012d}").read_bytes() != first, timeout=10
        )
        time.sleep(1.5)  # longer than the lease: still held, because it is renewed
        assert claim.held()
        other = Claim(target, "r", lease_s=0.9)
        with pytest.raises(TimeoutError):
            other.acquire(timeout=1.5)
    other.acquire(timeout=5)  # released: free at once
    other.release()
