"""One real `salvo serve` (Prefect server, blocks, pool, deployments, worker) per test module."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from salvo.procs import Processes, free_port

ROOT = Path(__file__).resolve().parents[2]
MARKER_WORKER = Path(__file__).with_name("marker_worker.py")
STARTUP_TIMEOUT_S = 300.0


@dataclass
class Served:
    """A running `salvo serve` and what the tests need to talk to it."""

    api_url: str
    process: subprocess.Popen[str]
    env: dict[str, str]
    home: Path
    data: Path
    logs: Path
    lines: list[str] = field(default_factory=list)
    extra: Processes = field(default_factory=Processes)
    seen: set[int] = field(default_factory=set)

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the `prefect` CLI against this server."""
        return subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def remember_processes(self) -> set[int]:
        """Pids of serve and everything below it (and of extra processes), remembered once seen."""
        with contextlib.suppress(psutil.NoSuchProcess):
            self.seen |= {self.process.pid, *(c.pid for c in psutil.Process(self.process.pid).children(recursive=True))}
        return self.seen | self.extra.descendants()

    def worker_pid(self) -> int:
        """The pid of the Prefect worker `salvo serve` started."""
        found = [
            c.pid
            for c in psutil.Process(self.process.pid).children()
            if "worker" in c.cmdline() and "start" in c.cmdline()
        ]
        assert len(found) == 1, found
        return found[0]

    def stop(self) -> tuple[int | None, list[int]]:
        """SIGTERM `salvo serve` (it stops its own children); return its exit code and pids left alive."""
        pids = self.remember_processes()
        self.extra.stop()
        code = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(timeout=90)
        else:
            code = self.process.returncode
        left = [pid for pid in pids if _alive(pid)]
        return code, left

    def kill_leftovers(self) -> None:
        """Last resort after a failed test: kill whatever is still alive of ours."""
        for pid in self.remember_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def serve_env(home: Path) -> dict[str, str]:
    """Environment of `salvo serve` in tests: a private PREFECT_HOME (SQLite), fast polling, no UI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        SALVO_LOCAL_SERVER="0",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1",  # upcoming runs appear within a second
        PREFECT_WORKER_QUERY_SECONDS="1",  # workers pick runs up within a second
        SALVO_CRASH_AFTER="40s",  # `salvo deploy --crash-after`: above the runs' 30 s heartbeat, shorter to wait for
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def _pump(stream, sink: queue.Queue[str | None]) -> None:  # noqa: ANN001
    for line in stream:
        sink.put(line.rstrip("\n"))
    sink.put(None)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`salvo serve` on a free port with a temporary PREFECT_HOME, stopped at the end of the module."""
    yield from start_served(tmp_path_factory)


def start_served(tmp_path_factory: pytest.TempPathFactory, extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """Start `salvo serve` (with ``extra_env``, e.g. a database URL), yield it once ready, then stop it."""
    base = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**serve_env(base / "home"), **(extra_env or {})}
    # One flow run at a time per worker: two concurrent runs then need two workers.
    argv = [
        sys.executable,
        "-m",
        "cli",
        "serve",
        "--port",
        str(port),
        "--data",
        str(base / "data"),
        "--log-dir",
        str(base / "logs"),
        "--worker-limit",
        "1",
    ]
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    api_url = f"http://127.0.0.1:{port}/api"
    s = Served(
        api_url=api_url,
        process=proc,
        env={**env, "PREFECT_API_URL": api_url},
        home=base / "home",
        data=base / "data",
        logs=base / "logs",
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while not any("Salvo is serving" in line for line in s.lines):
            s.remember_processes()
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"salvo serve not ready after {STARTUP_TIMEOUT_S:.0f} s:\n" + "\n".join(s.lines)
                ) from None
            if line is None:
                raise AssertionError(
                    f"salvo serve exited with {proc.wait()}:\n" + "\n".join(s.lines) + _logs(base / "logs")
                )
            s.lines.append(line)
        threading.Thread(target=_collect, args=(lines, s.lines), daemon=True).start()
        s.remember_processes()
        yield s
    finally:
        s.stop()
        s.kill_leftovers()


def _collect(source: queue.Queue[str | None], sink: list[str]) -> None:
    while (line := source.get()) is not None:
        sink.append(line)


def _logs(folder: Path) -> str:
    return "".join(
        f"\n--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-20:])
        for p in sorted(folder.glob("*.log"))
    )
