"""Processes Salvo starts around a run: supervision, process groups, ports, the reaper. Plain processes only.

- `Processes`: children each in their own session, stopped together (SIGTERM to each group, then
  SIGKILL, then every descendant that left its group).
- `stop_process_group`: SIGTERM a session leader's group, then SIGKILL.
- The *reaper*: a tiny process per driver, in its own session, holding the read end of a pipe whose
  write end only the driver has. When the driver exits for any reason (SIGKILL included), the pipe
  closes and the reaper kills every process that inherited the driver's token (``SALVO_DRIVER``):
  a temporary API server, warm zygotes and their items, Dask processes, workers.

Run ``python -m salvo.procs reap TOKEN`` to be a reaper (`start_reaper` does it). The Prefect server
these processes may include is run and watched by `deployments.server`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
#: Environment variable every process started by a driver inherits; the reaper kills by it.
TOKEN_VAR = "SALVO_DRIVER"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- small process helpers


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something already listens on ``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def process_alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def create_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), or None if it is gone."""
    import psutil

    try:
        p = psutil.Process(pid)
        return None if p.status() == psutil.STATUS_ZOMBIE else p.create_time()
    except psutil.NoSuchProcess:
        return None


def _process_or_none(pid: int) -> Any:
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (a session leader: pgid == pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class Processes:
    """Child processes, each in its own session, stopped together (last started, first stopped)."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session (in ``cwd``, default the project root), output appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd or _PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((name, proc))
        return proc

    def descendants(self) -> set[int]:
        """Pids of every started process and everything below them (remembered once seen)."""
        import psutil

        for _, proc in self.started:
            try:
                p = psutil.Process(proc.pid)
                self.seen |= {proc.pid, *(c.pid for c in p.children(recursive=True))}
            except psutil.NoSuchProcess:
                continue
        return set(self.seen)

    def first_exited(self) -> tuple[str, int] | None:
        """(name, exit code) of the first started process that has exited, or None."""
        for name, proc in self.started:
            if proc.poll() is not None:
                return name, int(proc.returncode)
        return None

    def stop(self, *, grace_s: float = 10.0) -> list[int]:
        """Stop everything; return the pids still alive afterwards (none, normally)."""
        import psutil

        pids = self.descendants()
        for _, proc in reversed(self.started):
            signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
        psutil.wait_procs([p for p in map(_process_or_none, pids) if p is not None], timeout=5)
        self.started.clear()
        return sorted(pid for pid in pids if process_alive(pid))


def supervise(
    procs: Processes, *, poll_s: float = 0.5, tick: Callable[[], None] | None = None, every_s: float = 2.0
) -> tuple[str, int]:
    """Wait until one of ``procs`` exits; return its (name, exit code). Calls ``tick`` every ``every_s`` meanwhile.

    Ctrl-C raises KeyboardInterrupt.
    """
    last = 0.0
    while True:
        gone = procs.first_exited()
        if gone is not None:
            return gone
        if tick is not None and time.monotonic() - last >= every_s:
            last = time.monotonic()
            tick()
        time.sleep(poll_s)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises KeyboardInterrupt, and SIGINT does even when started with SIGINT ignored."""

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, _raise)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not cut a teardown short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_process_group(pid: int, *, grace_s: float = 15.0) -> None:
    """SIGTERM the group ``pid`` leads, wait up to ``grace_s`` for ``pid`` to go, then SIGKILL the group."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


# --------------------------------------------------------------------------- the reaper

_reaper: subprocess.Popen[bytes] | None = None


def start_reaper(*, python: str | None = None) -> str:
    """Tie every process this one starts from now on to its life; return the token they inherit.

    Idempotent. Sets ``SALVO_DRIVER`` in ``os.environ``, so only processes started after this call
    carry it.
    """
    global _reaper
    if _reaper is not None and os.environ.get(TOKEN_VAR):
        return os.environ[TOKEN_VAR]
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VAR}
    # The pipe's write end is ours alone (not inherited: close_fds, and Python's pipes are O_CLOEXEC).
    _reaper = subprocess.Popen(
        [python or sys.executable, "-m", "salvo.procs", "reap", token],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    os.environ[TOKEN_VAR] = token
    return token


def processes_with_token(token: str, *, exclude: set[int] | None = None) -> list[int]:
    """Pids whose environment (as exec'd) holds ``SALVO_DRIVER=token``."""
    needle = f"{TOKEN_VAR}={token}".encode()
    skip = {os.getpid(), *(exclude or set())}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def sweep(token: str, *, grace_s: float = 2.0) -> list[int]:
    """SIGTERM every process carrying ``token``, then SIGKILL what is left after ``grace_s``; return what was found."""
    found = processes_with_token(token)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and processes_with_token(token):
        time.sleep(0.1)
    for _ in range(3):  # also what was forked meanwhile
        left = processes_with_token(token)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return found


def _reap_main(token: str) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):  # returns b"" once the driver has exited, however it ended
        pass
    sweep(token)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m salvo.procs reap TOKEN``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "reap":
        return _reap_main(args[1])
    print("usage: python -m salvo.procs reap TOKEN", file=sys.stderr)
    return 2


__all__ = [
    "HOST",
    "TOKEN_VAR",
    "Processes",
    "create_time",
    "free_port",
    "no_interrupts",
    "port_in_use",
    "process_alive",
    "processes_with_token",
    "sigterm_as_interrupt",
    "signal_group",
    "start_reaper",
    "stop_process_group",
    "supervise",
    "sweep",
]

if __name__ == "__main__":
    sys.exit(main())
