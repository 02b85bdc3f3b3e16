"""The local Prefect server Salvo runs and watches: start, share, health, stop, and its guard.

The processes themselves are plain (`salvo.procs`); what makes them a Prefect server lives here:

- `wait_healthy` / `api_healthy`: poll ``<api>/health`` (HTTP).
- The *local server*: one `prefect server start` per ``PREFECT_HOME``, started in the background on
  first need (its own session, SQLite in ``PREFECT_HOME``, 127.0.0.1), remembered in
  ``PREFECT_HOME/salvo-server.json`` under a lock so that two commands starting at once share one
  server, and reused by later commands until `salvo server stop`.
- The *guard*: the server's parent, ``python -m deployments.server guard HOME -- ARGV...``. It ends
  the server when its state file stops naming it, names new runs and marks crashed ones
  (`deployments.runs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from salvo.errors import UsageError
from salvo.procs import HOST, TOKEN_VAR, create_time, free_port, port_in_use, stop_process_group

DEFAULT_PORT = 4200
STATE_FILE = "salvo-server.json"
LOCK_FILE = "salvo-server.lock"
LOG_FILE = "salvo-server.log"


def prefect_command(*args: str, python: str | None = None) -> list[str]:
    """argv of the `prefect` CLI of this interpreter."""
    return [python or sys.executable, "-m", "prefect", *args]


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
            "deployments.server",
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


def _name_runs_quietly(api_url: str | None) -> None:
    """Give Salvo's new scheduled and pending runs their real names (see :mod:`deployments.runs`), and mark
    Crashed the running ones whose driver on this host is gone (killed by the OOM killer, say); never fatal."""
    if not api_url:
        return
    from deployments.runs import mark_crashed_runs, name_new_runs

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
    """``python -m deployments.server guard HOME -- ARGV...``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 4 and args[0] == "guard" and args[2] == "--":
        return _guard_main(args[1], args[3:])
    print("usage: python -m deployments.server guard HOME -- ARGV...", file=sys.stderr)
    return 2


__all__ = [
    "DEFAULT_PORT",
    "HOST",
    "ServerInfo",
    "api_healthy",
    "ensure_local_server",
    "log_hint",
    "prefect_command",
    "prefect_home",
    "read_state",
    "running_server",
    "server_env",
    "stop_local_server",
    "wait_healthy",
]

if __name__ == "__main__":
    sys.exit(main())
