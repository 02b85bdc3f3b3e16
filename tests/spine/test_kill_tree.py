"""A timed-out item leaves no process behind, even one that left its process group and session."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from salvo.items import Item, Worker
from salvo.outcome import Status
from salvo.runner import run_item
from tests.helpers import alive, wait_until
from tests.spine.workers import marked_processes

pytestmark = pytest.mark.pure


@pytest.mark.slow  # seconds on an idle machine: make test runs it, make test-fast does not
@pytest.mark.parametrize("double_fork", [False, True], ids=["setsid-grandchild", "orphaned-daemon"])
def test_timeout_kills_a_grandchild_that_called_setsid(tmp_path: Path, double_fork: bool) -> None:
    marker = f"salvo-kill-tree-{uuid.uuid4().hex}"
    pid_file = tmp_path / "pids"
    item = Item("escape", params={"pid_file": str(pid_file), "marker": marker, "double_fork": double_fork})
    t0 = time.monotonic()
    r = run_item(item, Worker("python", "tests.spine.workers:escape_session"), timeout_s=2.0)
    elapsed = time.monotonic() - t0
    assert r.status is Status.TIMEOUT
    assert elapsed < 2.0 + 10
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2, "the worker saw its grandchild start"
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout=5), [p for p in pids if alive(p)]
    assert marked_processes(marker) == []


def test_a_finished_item_leaves_no_daemon_behind(tmp_path: Path) -> None:
    """An item that exits 0 but left a detached daemon running: the daemon is swept at item end."""
    marker = f"salvo-daemon-{uuid.uuid4().hex}"
    script = tmp_path / "daemonize.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execvp(sys.executable, [sys.executable, '-c', 'import time; time.sleep(3600)', sys.argv[1]])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "deadline = time.monotonic() + 10\n"
        "while time.monotonic() < deadline and not any(\n"
        "    sys.argv[1].encode() in open(f'/proc/{p}/cmdline', 'rb').read() for p in os.listdir('/proc')"
        " if p.isdigit() and os.path.exists(f'/proc/{p}/cmdline')):\n"
        "    time.sleep(0.02)\n"
    )
    r = run_item(Item("daemon"), Worker("command", f"python3 {script} {marker}"), timeout_s=30)
    assert r.status is Status.SUCCESS
    assert wait_until(lambda: marked_processes(marker) == [], timeout=5), marked_processes(marker)
