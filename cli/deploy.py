"""`salvo serve` and `salvo deploy`: a Prefect server, blocks, work pool, deployments and a worker.

Every process started here runs in its own session (process group). Teardown sends SIGTERM to
each group, then SIGKILL, then kills any descendant that left its group (Prefect starts flow runs
in their own sessions), so nothing outlives `salvo serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cli.common import positive_float, positive_int
from salvo.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = ROOT / "deployments" / "prefect.yaml"
DEFAULT_POOL = "salvo-process"
DEFAULT_PORT = 4200
HOST = "127.0.0.1"


def deployment_env(*, cron: str | None = None, timezone: str | None = None, schedules_active: bool | None = None,
                   pool: str | None = None, data: str | None = None, dask_address: str | None = None) -> dict[str, str]:
    """The SALVO_* variables prefect.yaml is templated with: explicit values, else the environment, else defaults."""
    def pick(name: str, value: Any, default: str) -> str:
        return str(value) if value is not None else os.environ.get(name, default)

    active = None if schedules_active is None else ("true" if schedules_active else "false")
    return {
        "SALVO_NIGHTLY_CRON": pick("SALVO_NIGHTLY_CRON", cron, "0 2 * * *"),
        "SALVO_TIMEZONE": pick("SALVO_TIMEZONE", timezone, "UTC"),
        "SALVO_SCHEDULES_ACTIVE": pick("SALVO_SCHEDULES_ACTIVE", active, "true"),
        "SALVO_WORK_POOL": pick("SALVO_WORK_POOL", pool, DEFAULT_POOL),
        "SALVO_DATA": str(Path(pick("SALVO_DATA", data, str(Path.cwd() / "data"))).expanduser().resolve()),
        "SALVO_DASK_ADDRESS": pick("SALVO_DASK_ADDRESS", dask_address, ""),
    }


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


def prefect_command(*args: str) -> list[str]:
    """argv of the `prefect` CLI of this interpreter."""
    return [sys.executable, "-m", "prefect", *args]


@dataclass
class Processes:
    """Child processes, each in its own session, stopped together (last started, first stopped)."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def start(self, name: str, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session, output appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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

    def stop(self, *, grace_s: float = 10.0) -> list[int]:
        """Stop everything; return the pids still alive afterwards (none, normally)."""
        import psutil

        pids = self.descendants()
        for _, proc in reversed(self.started):
            _signal_group(proc, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
        psutil.wait_procs([p for p in map(_process_or_none, pids) if p is not None], timeout=5)
        self.started.clear()
        return sorted(pid for pid in pids if process_alive(pid))


def _process_or_none(pid: int) -> Any:
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def process_alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the child is its session's leader: pgid == pid


def wait_healthy(api_url: str, *, timeout_s: float = 180.0, process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> float:
    """Poll ``<api>/health`` until it answers true; return the seconds it took."""
    t0 = time.monotonic()
    delay = 0.05
    while True:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=5) as resp:
                if resp.read().strip() == b"true":
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if process is not None and process.poll() is not None:
            raise UsageError(f"the Prefect server exited with code {process.returncode}{_log_hint(log)}")
        if time.monotonic() - t0 > timeout_s:
            raise UsageError(f"the Prefect server at {api_url} was not healthy after {timeout_s:.0f} s{_log_hint(log)}")
        time.sleep(delay)  # polling back-off, not a fixed wait
        delay = min(delay * 1.5, 0.5)


def _log_hint(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f" (last log line: {lines[-1].strip()}; see {log})" if lines else f" (see {log})"


@contextlib.contextmanager
def api_settings(api_url: str) -> Iterator[None]:
    """Talk to ``api_url`` from this process, whatever Prefect's settings were at import."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"api.url": api_url}):
        yield


def ensure_work_pool(name: str, api_url: str) -> bool:
    """Create the `process` work pool ``name`` unless it exists; return True if created."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    with api_settings(api_url), get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
        except ObjectAlreadyExists:
            return False
    return True


def register_storage_blocks(api_url: str) -> list[str]:
    """Register Salvo's block types with the server (what `salvo blocks register` does)."""
    from blocks.storage import register_blocks

    with api_settings(api_url):
        return register_blocks()


def deployable_file(prefect_file: Path = PREFECT_FILE) -> tuple[Path, list[str]]:
    """``prefect_file``, or a copy without deployments whose flow file is absent; and those entrypoints."""
    doc = yaml.safe_load(prefect_file.read_text())
    missing = [d["entrypoint"] for d in doc["deployments"] if not (ROOT / d["entrypoint"].split(":")[0]).is_file()]
    if not missing:
        return prefect_file, []
    doc["deployments"] = [d for d in doc["deployments"] if d["entrypoint"] not in missing]
    fd, name = tempfile.mkstemp(prefix="salvo-prefect-", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    return Path(name), missing


def deploy_all(api_url: str, *, settings: dict[str, str], env: dict[str, str] | None = None, echo: Callable[[str], None] = print) -> int:
    """`prefect --no-prompt deploy --all` of deployments/prefect.yaml, from the project root; return its exit code."""
    ensure_work_pool(settings["SALVO_WORK_POOL"], api_url)
    path, missing = deployable_file()
    for entry in missing:
        echo(f"warning: {entry.split(':')[0]} does not exist; its deployment is left out")
    child_env = {**(env or os.environ), **settings, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "200"}
    try:
        proc = subprocess.run(prefect_command("--no-prompt", "deploy", "--all", "--prefect-file", str(path)),
                              cwd=ROOT, env=child_env, capture_output=True, text=True)
    finally:
        if path != PREFECT_FILE:
            path.unlink()
    if proc.returncode != 0:
        tail = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()][-15:]
        echo("\n".join(tail))
        return proc.returncode
    deployed = [line.split("'")[1] for line in proc.stdout.splitlines() if "Deployment '" in line and "'" in line]
    echo(f"Deployed {len(deployed)} deployment(s) to work pool {settings['SALVO_WORK_POOL']!r}: {', '.join(deployed)}")
    return 0


def _add_schedule_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deployments")
    g.add_argument("--cron", help="cron of the nightly deployments (default: $SALVO_NIGHTLY_CRON or '0 2 * * *')")
    g.add_argument("--timezone", help="time zone of that cron (default: $SALVO_TIMEZONE or UTC)")
    g.add_argument("--no-schedule", action="store_true", help="deploy the nightly schedules paused")
    g.add_argument("--pool", help=f"work pool (default: $SALVO_WORK_POOL or {DEFAULT_POOL})")
    g.add_argument("--data", help="folder the default parameters point into (default: $SALVO_DATA or ./data)")
    g.add_argument("--dask-address", help="tcp://HOST:PORT of a Dask cluster the deployments use by default")


def register(subparsers: Any) -> None:
    """Add `salvo serve` and `salvo deploy`."""
    s = subparsers.add_parser("serve", help="Prefect server + blocks + work pool + deployments + a worker, until Ctrl-C",
                              description="Start a Prefect server on 127.0.0.1, register the storage blocks, create the work pool, "
                                          "deploy every pipeline and start a worker; Ctrl-C stops them all.")
    s.add_argument("--port", type=positive_int, default=DEFAULT_PORT, help=f"port of the server and UI (default: {DEFAULT_PORT})")
    s.add_argument("--log-dir", help="where the server and worker logs go (default: $PREFECT_HOME/salvo-serve)")
    s.add_argument("--startup-timeout", type=positive_float, default=180.0, help="seconds to wait for the server (default: 180)")
    s.add_argument("--worker-limit", type=positive_int, help="most flow runs the worker runs at once (default: no limit)")
    _add_schedule_flags(s)
    s.set_defaults(func=serve_main)
    d = subparsers.add_parser("deploy", help="deploy every pipeline to the Prefect server at PREFECT_API_URL",
                              description="Create the work pool and deploy deployments/prefect.yaml to the server at PREFECT_API_URL.")
    d.add_argument("--print-env", action="store_true", help="print the SALVO_* settings as shell exports, deploy nothing")
    _add_schedule_flags(d)
    d.set_defaults(func=deploy_main)


def _settings(args: argparse.Namespace) -> dict[str, str]:
    settings = deployment_env(cron=args.cron, timezone=args.timezone, schedules_active=False if args.no_schedule else None,
                              pool=args.pool, data=args.data, dask_address=args.dask_address)
    from prefect.client.schemas.schedules import CronSchedule

    cron, tz = settings["SALVO_NIGHTLY_CRON"], settings["SALVO_TIMEZONE"]
    try:
        CronSchedule(cron=cron, timezone=tz)
    except ValueError as exc:
        raise UsageError(f"bad --cron/--timezone {cron!r} {tz!r}: {str(exc).splitlines()[-1].strip()}") from None
    return settings


def _current_api_url() -> str | None:
    from prefect.settings import get_current_settings

    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    return str(url).rstrip("/") if url else None


def deploy_main(args: argparse.Namespace) -> int:
    """Deploy to the current PREFECT_API_URL."""
    settings = _settings(args)
    if args.print_env:
        for k, v in settings.items():
            print(f"export {k}={shlex.quote(v)}")
        return 0
    url = _current_api_url()
    if not url:
        raise UsageError("PREFECT_API_URL is not set: start a server (`salvo serve`) or `prefect config set PREFECT_API_URL=...`")
    wait_healthy(url, timeout_s=10)
    return deploy_all(url, settings=settings)


def serve_main(args: argparse.Namespace) -> int:
    """Run everything until Ctrl-C (or SIGTERM), then stop it all."""
    settings = _settings(args)
    if port_in_use(args.port):
        raise UsageError(f"port {args.port} is already in use (a server running already?); pick another with --port")
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    logs = Path(args.log_dir or home / "salvo-serve").resolve()
    api_url = f"http://{HOST}:{args.port}/api"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    procs = Processes()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        server = procs.start("server", prefect_command("server", "start", "--host", HOST, "--port", str(args.port)), env=env, log=logs / "server.log")
        took = wait_healthy(api_url, timeout_s=args.startup_timeout, process=server, log=logs / "server.log")
        print(f"Prefect server healthy after {took:.1f} s (PREFECT_HOME={home}, log: {logs / 'server.log'})", flush=True)
        print(f"Registered block types: {', '.join(register_storage_blocks(api_url))}", flush=True)
        code = deploy_all(api_url, settings=settings, env=env, echo=lambda m: print(m, flush=True))
        if code != 0:
            print("salvo serve: deploying failed; stopping", file=sys.stderr)
            return 1
        pool = settings["SALVO_WORK_POOL"]
        limit = ["--limit", str(args.worker_limit)] if args.worker_limit else []
        procs.start("worker", prefect_command("worker", "start", "--pool", pool, "--type", "process", *limit), env=env, log=logs / "worker.log")
        print(f"Worker started on pool {pool!r} (log: {logs / 'worker.log'})", flush=True)
        print(f"Salvo is serving. Prefect UI: http://{HOST}:{args.port}  (API: {api_url})", flush=True)
        print(f"Try: PREFECT_API_URL={api_url} prefect deployment run 'netcdf-extract/nightly' --param directory=PATH --watch", flush=True)
        print("Press Ctrl-C to stop the worker and the server.", flush=True)
        while True:
            for name, proc in procs.started:
                if proc.poll() is not None:
                    print(f"salvo serve: the {name} exited with code {proc.returncode}; stopping (see {logs / (name + '.log')})", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut teardown short
        left = procs.stop()
        signal.signal(signal.SIGINT, interrupt)
        print("Stopped the worker and the server." + (f" Still alive: {left}" if left else ""), flush=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
