"""Processes Salvo starts around a run: supervision, health polling, the local API server, the reaper.

No Prefect import here: a Prefect server is just a child process with a health URL.

- `Processes`: children each in their own session, stopped together (SIGTERM to each group, then
  SIGKILL, then every descendant that left its group).
- `wait_healthy` / `api_healthy`: poll ``<api>/health``.
- The *local server*: one `prefect server start` per ``PREFECT_HOME``, started in the background on
  first need (its own session, SQLite in ``PREFECT_HOME``, 127.0.0.1), remembered in
  ``PREFECT_HOME/salvo-server.json`` under a lock so that two commands starting at once share one
  server, and reused by later commands until `salvo server stop`.
- The *reaper*: a tiny process per driver, in its own session, holding the read end of a pipe whose
  write end only the driver has. When the driver exits for any reason (SIGKILL included), the pipe
  closes and the reaper kills every process that inherited the driver's token (``SALVO_DRIVER``):
  a temporary API server, warm zygotes and their items, Dask processes, workers.

Run ``python -m salvo.procs reap TOKEN`` to be a reaper (`start_reaper` does it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from salvo.errors import UsageError

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
#: Environment variable every process started by a driver inherits; the reaper kills by it.
TOKEN_VAR = "SALVO_DRIVER"
STATE_FILE = "salvo-server.json"
LOCK_FILE = "salvo-server.lock"
LOG_FILE = "salvo-server.log"
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


def prefect_command(*args: str, python: str | None = None) -> list[str]:
    """argv of the `prefect` CLI of this interpreter."""
    return [python or sys.executable, "-m", "prefect", *args]


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


# --------------------------------------------------------------------------- health


def api_healthy(api_url: str, *, timeout_s: float = 3.0) -> bool:
    """True if ``<api_url>/health`` answers ``true`` within ``timeout_s``."""
    headers = {}
    if key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    try:
        req = urllib.request.Request(f"{api_url.rstrip('/')}/health", headers=headers)
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.read().strip() == b"true"
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return False


def wait_healthy(
    api_url: str, *, timeout_s: float = 180.0, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> float:
    """Poll ``<api>/health`` until it answers true; return the seconds it took."""
    t0 = time.monotonic()
    delay = 0.05
    while True:
        if api_healthy(api_url, timeout_s=5):
            return time.monotonic() - t0
        if process is not None and process.poll() is not None:
            raise UsageError(f"the Prefect server exited with code {process.returncode}{log_hint(log)}")
        if time.monotonic() - t0 > timeout_s:
            raise UsageError(f"the Prefect server at {api_url} was not healthy after {timeout_s:.0f} s{log_hint(log)}")
        time.sleep(delay)  # polling back-off, not a fixed wait
        delay = min(delay * 1.5, 0.5)


def log_hint(log: Path | None) -> str:
    """ " (last log line: ...; see LOG)" for an error message, or ""."""
    if log is None or not log.exists():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f" (last log line: {lines[-1].strip()}; see {log})" if lines else f" (see {log})"


# --------------------------------------------------------------------------- the local server


def prefect_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``home``, else ``$PREFECT_HOME``, else ``~/.prefect`` (Prefect's own default)."""
    return Path(home or os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser().resolve()


@dataclass(frozen=True)
class ServerInfo:
    """A local `prefect server start` Salvo started, as remembered in its state file."""

    pid: int
    url: str
    port: int
    started: float  # the process's create time, to tell it from a later process with the same pid
    log: str
    home: str

    @property
    def ui(self) -> str:
        """The UI's address."""
        return self.url.removesuffix("/api")

    def alive(self) -> bool:
        """The remembered process still runs (same pid, same start time)."""
        t = create_time(self.pid)
        return t is not None and abs(t - self.started) < 1.0


@contextlib.contextmanager
def _server_lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # freed by the OS if the holder dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(home: str | os.PathLike[str] | None = None) -> ServerInfo | None:
    """The state file's server (alive or not), or None if there is no readable state file."""
    path = prefect_home(home) / STATE_FILE
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(home: Path, info: ServerInfo) -> None:
    tmp = home / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
    os.replace(tmp, home / STATE_FILE)


def _clear_state(home: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (home / STATE_FILE).unlink()


def running_server(home: str | os.PathLike[str] | None = None, *, timeout_s: float = 3.0) -> ServerInfo | None:
    """The local server of ``home`` if its process runs and its API answers, else None."""
    info = read_state(home)
    if info is None or not info.alive():
        return None
    return info if api_healthy(info.url, timeout_s=timeout_s) else None


#: Settings that would point the server's UI at another API than its own (see `server_env`).
_UI_URL_VARS = (
    "PREFECT_API_URL",
    "PREFECT_UI_API_URL",
    "PREFECT_SERVER_UI_API_URL",
    "PREFECT_UI_URL",
    "PREFECT_SERVER_UI_URL",
)


def server_env(home: Path, base: dict[str, str] | None = None, *, port: int | None = None) -> dict[str, str]:
    """Environment of the local server: this PREFECT_HOME, no telemetry, no driver token, no client URL.

    With ``port``, the UI's API address is this server's own: ``prefect server start --port P``
    serves on P, but its ``/ui-settings`` derive the UI's API URL from the *settings* (host
    127.0.0.1, port 4200 by default), so a server moved off a taken 4200 sent its UI to whatever
    listened on 4200.
    """
    env = {k: v for k, v in (base if base is not None else os.environ).items() if k not in (TOKEN_VAR, *_UI_URL_VARS)}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    if port is not None:
        api = f"http://{HOST}:{port}/api"
        env.update(
            PREFECT_SERVER_API_HOST=HOST,
            PREFECT_SERVER_API_PORT=str(port),
            PREFECT_UI_API_URL=api,
            PREFECT_UI_URL=api.removesuffix("/api"),
        )
    return env


def ensure_local_server(
    home: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    startup_timeout_s: float = 180.0,
    python: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[ServerInfo, bool]:
    """The running local server of ``home``, started first if needed; and whether this call started it.

    Holds ``PREFECT_HOME/salvo-server.lock`` while it checks and starts, so that concurrent callers
    share one server. Raises `UsageError` (one line, naming the log) if the server does not come up.
    """
    h = prefect_home(home)
    with _server_lock(h):
        info = read_state(h)
        if info is not None and info.alive():
            try:  # started by a caller that gave up waiting, or busy: give it the same chance once
                wait_healthy(info.url, timeout_s=startup_timeout_s, log=Path(info.log))
                return info, False
            except UsageError:
                stop_process_group(info.pid)
        _clear_state(h)
        if port is None:
            configured = os.environ.get("SALVO_SERVER_PORT")
            port = int(configured) if configured else (DEFAULT_PORT if not port_in_use(DEFAULT_PORT) else free_port())
        elif port_in_use(port):
            raise UsageError(f"port {port} is already in use; pick another with --port or SALVO_SERVER_PORT")
        log = h / LOG_FILE
        argv = [
            sys.executable,
            "-m",
            "salvo.procs",
            "guard",
            str(h),
            "--",
            *prefect_command("server", "start", "--host", HOST, "--port", str(port), python=python),
        ]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=server_env(h, env, port=port),
                cwd=h,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # Ctrl-C and a closed terminal do not reach it
        info = ServerInfo(
            pid=proc.pid,
            url=f"http://{HOST}:{port}/api",
            port=port,
            started=create_time(proc.pid) or time.time(),
            log=str(log),
            home=str(h),
        )
        _write_state(h, info)  # at once, so that `salvo server stop` can stop a server still starting
        try:
            wait_healthy(info.url, timeout_s=startup_timeout_s, process=proc, log=log)  # type: ignore[arg-type]
        except BaseException:
            stop_process_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            _clear_state(h)
            raise
        return info, True


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


def stop_local_server(home: str | os.PathLike[str] | None = None) -> ServerInfo | None:
    """Stop the local server of ``home``; return what was stopped (None if none ran). Removes the state file."""
    h = prefect_home(home)
    with _server_lock(h):
        info = read_state(h)
        if info is not None and info.alive():
            stop_process_group(info.pid)
        else:
            info = None
        _clear_state(h)
        return info


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


def _name_runs_quietly(api_url: str | None) -> None:
    """Give Salvo's new scheduled and pending runs their real names (see :mod:`salvo.runnames`), and mark
    Crashed the running ones whose driver on this host is gone (killed by the OOM killer, say); never fatal."""
    if not api_url:
        return
    from salvo.runnames import mark_crashed_runs, name_new_runs

    with contextlib.suppress(Exception):
        name_new_runs(api_url)
    with contextlib.suppress(Exception):
        mark_crashed_runs(api_url, by="the local server's guard")


def _guard_main(home: str, argv: list[str]) -> int:
    """Run the local server ``argv`` and end it if its state file stops naming us (PREFECT_HOME deleted, say).

    Every two seconds it also names the server's new scheduled and pending Salvo runs, so that runs
    created by a schedule or ``prefect deployment run`` carry their real name from the start, and
    marks Crashed the running Salvo runs whose driver is gone (within seconds, with no other command).

    Without this, deleting a PREFECT_HOME (a temporary one, in a script) would leave its server
    running with nothing pointing at it.
    """
    state = Path(home) / STATE_FILE
    child = subprocess.Popen(argv)

    def _stop(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    t0, seen = time.monotonic(), False
    while child.poll() is None:
        time.sleep(2.0)
        try:
            info = json.loads(state.read_text())
            ours = info.get("pid") == os.getpid()
        except (OSError, ValueError, AttributeError):
            info, ours = {}, False
        seen = seen or ours
        if ours:
            _name_runs_quietly(info.get("url"))
        if not ours and (seen or time.monotonic() - t0 > 600):
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
            break
    return child.wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m salvo.procs reap TOKEN`` or ``python -m salvo.procs guard HOME -- ARGV...``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "reap":
        return _reap_main(args[1])
    if len(args) >= 4 and args[0] == "guard" and args[2] == "--":
        return _guard_main(args[1], args[3:])
    print("usage: python -m salvo.procs reap TOKEN | guard HOME -- ARGV...", file=sys.stderr)
    return 2


__all__ = [
    "HOST",
    "DEFAULT_PORT",
    "TOKEN_VAR",
    "Processes",
    "ServerInfo",
    "api_healthy",
    "create_time",
    "ensure_local_server",
    "free_port",
    "log_hint",
    "no_interrupts",
    "port_in_use",
    "prefect_command",
    "prefect_home",
    "process_alive",
    "processes_with_token",
    "read_state",
    "running_server",
    "sigterm_as_interrupt",
    "signal_group",
    "start_reaper",
    "stop_local_server",
    "stop_process_group",
    "supervise",
    "sweep",
    "wait_healthy",
]

if __name__ == "__main__":
    sys.exit(main())
