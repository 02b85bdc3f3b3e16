"""What `salvo serve` and `salvo deploy` do with Prefect: settings, work pool, blocks, `prefect deploy`, the serve loop.

Process supervision lives in `salvo.procs`, health polling in `deployments.server`; the command line in `cli/deploy.py`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from salvo.errors import UsageError
from deployments.runs import NAME_PARAMS, name_new_runs, run_name  # noqa: F401 - re-exported
from deployments.server import prefect_command, wait_healthy
from salvo.procs import HOST, Processes, no_interrupts, sigterm_as_interrupt, supervise

ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = ROOT / "deployments" / "prefect.yaml"
DEFAULT_POOL = "salvo-process"


def deployment_env(
    *,
    cron: str | None = None,
    timezone: str | None = None,
    schedules_active: bool | None = None,
    pool: str | None = None,
    data: str | None = None,
    dask_address: str | None = None,
    crash_after_s: float | None = None,
) -> dict[str, str]:
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
        "SALVO_CRASH_AFTER": pick("SALVO_CRASH_AFTER", crash_after_s, str(HEARTBEAT_GRACE_S)),
    }


def check_schedule(settings: dict[str, str]) -> None:
    """Refuse a cron or time zone Prefect would not accept (one line)."""
    from prefect.client.schemas.schedules import CronSchedule

    cron, tz = settings["SALVO_NIGHTLY_CRON"], settings["SALVO_TIMEZONE"]
    try:
        CronSchedule(cron=cron, timezone=tz)
    except ValueError as exc:
        raise UsageError(f"bad --cron/--timezone {cron!r} {tz!r}: {str(exc).splitlines()[-1].strip()}") from None
    crash_after_s(settings)


def crash_after_s(settings: dict[str, str]) -> float:
    """Seconds without a heartbeat before the automation marks a run Crashed (``SALVO_CRASH_AFTER``), refused in
    one line unless it leaves room for a missed beat: deployment runs beat every `HEARTBEAT_S` seconds."""
    from salvo.validate import duration

    text = settings.get("SALVO_CRASH_AFTER") or str(HEARTBEAT_GRACE_S)
    value = duration(text, "--crash-after")
    if value <= HEARTBEAT_S:
        raise UsageError(
            f"bad --crash-after {text!r}: runs beat every {HEARTBEAT_S} s, so a run would be Crashed while alive "
            f"(give more than {HEARTBEAT_S} s; default {HEARTBEAT_GRACE_S} s)"
        )
    return value


@contextlib.contextmanager
def api_settings(api_url: str) -> Iterator[None]:
    """Talk to ``api_url`` from this process, whatever Prefect's settings were at import."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"api.url": api_url}):
        yield


def current_api_url() -> str | None:
    """The API this process talks to (PREFECT_API_URL or the active profile), or None."""
    from prefect.settings import get_current_settings

    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    return str(url).rstrip("/") if url else None


def ensure_work_pool(name: str, api_url: str) -> bool:
    """Create the `process` work pool ``name`` unless it exists; return True if created."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    with api_settings(api_url), get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
                )
            )
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


#: The automation `salvo deploy` sets up: a flow run whose heartbeats stop is marked Crashed.
CRASH_AUTOMATION = "salvo-crashed-without-heartbeat"
#: Seconds between the heartbeats of a deployment run (prefect.yaml) or a flow called from Python.
HEARTBEAT_S = 30
#: Default seconds without a heartbeat before a run is Crashed (`salvo deploy --crash-after`).
HEARTBEAT_GRACE_S = 90


def ensure_crash_automation(api_url: str, grace_s: float = HEARTBEAT_GRACE_S) -> bool:
    """Create (once) Prefect's zombie-run automation: a flow run that sent a heartbeat and then sends
    none for ``grace_s`` seconds (default `HEARTBEAT_GRACE_S`), nor ends, is set Crashed. This covers runs whose
    process and
    worker died together on a server Salvo did not start (the local server's guard covers the rest).
    Only Salvo's pipeline flows, which beat every 30 s (prefect.yaml for deployment runs, `flows` for
    Python calls); a run that never sent a heartbeat (a `salvo` command's own) never arms it.
    Return True if created."""
    import datetime as dt

    from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType

    with api_settings(api_url):
        from prefect import get_client

        with get_client(sync_client=True) as client:
            if client.read_automations_by_name(CRASH_AUTOMATION):
                return False
        trigger = EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            # Salvo's pipelines only: other flows on the server may beat every 180 s (Prefect's default).
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": sorted(NAME_PARAMS)},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=grace_s),
        )
        action = ChangeFlowRunState(
            state=StateType.CRASHED,
            name="Crashed",
            message=f"no heartbeat for {grace_s:g} s: its process is gone (killed?)",
        )
        Automation(
            name=CRASH_AUTOMATION,
            description="salvo deploy: runs whose heartbeats stop are Crashed",
            trigger=trigger,
            actions=[action],
        ).create()
    return True


def deploy_all(
    api_url: str, *, settings: dict[str, str], env: dict[str, str] | None = None, echo: Callable[[str], None] = print
) -> int:
    """`prefect --no-prompt deploy --all` of deployments/prefect.yaml, from the project root, and the
    automation that marks runs without heartbeats Crashed; return the deploy's exit code."""
    ensure_work_pool(settings["SALVO_WORK_POOL"], api_url)
    grace_s = crash_after_s(settings)
    if ensure_crash_automation(api_url, grace_s):
        echo(f"Created automation {CRASH_AUTOMATION!r}: a run without a heartbeat for {grace_s:g} s is Crashed")
    path, missing = deployable_file()
    for entry in missing:
        echo(f"warning: {entry.split(':')[0]} does not exist; its deployment is left out")
    child_env = {
        **(env or os.environ),
        **settings,
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "COLUMNS": "200",
    }
    try:
        proc = subprocess.run(
            prefect_command("--no-prompt", "deploy", "--all", "--prefect-file", str(path)),
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            text=True,
        )
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


def deploy_to_current(settings: dict[str, str]) -> int:
    """`salvo deploy`: deploy to the API this process talks to."""
    url = current_api_url()
    if not url:
        raise UsageError("no Prefect API: start one (`salvo server start`, `salvo serve`) or set PREFECT_API_URL")
    wait_healthy(url, timeout_s=10)
    return deploy_all(url, settings=settings)


@dataclass(frozen=True)
class ServeOptions:
    """What `salvo serve` was asked for."""

    port: int
    logs: Path
    startup_timeout_s: float = 180.0
    worker_limit: int | None = None


def serve(
    opts: ServeOptions, settings: dict[str, str], *, echo: Callable[[str], None], warn: Callable[[str], None]
) -> int:
    """Server, blocks, work pool, deployments and a worker, until Ctrl-C or SIGTERM; then stop them all.
    Return the exit code."""
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    api_url = f"http://{HOST}:{opts.port}/api"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    procs = Processes()
    server_log, worker_log = opts.logs / "server.log", opts.logs / "worker.log"
    try:
        with sigterm_as_interrupt():
            server = procs.start(
                "server",
                prefect_command("server", "start", "--host", HOST, "--port", str(opts.port)),
                env=env,
                log=server_log,
                cwd=ROOT,
            )
            took = wait_healthy(api_url, timeout_s=opts.startup_timeout_s, process=server, log=server_log)
            echo(f"Prefect server healthy after {took:.1f} s (PREFECT_HOME={home}, log: {server_log})")
            echo(f"Registered block types: {', '.join(register_storage_blocks(api_url))}")
            if deploy_all(api_url, settings=settings, env=env, echo=echo) != 0:
                warn("salvo serve: deploying failed; stopping")
                return 1
            pool = settings["SALVO_WORK_POOL"]
            limit = ["--limit", str(opts.worker_limit)] if opts.worker_limit else []
            procs.start(
                "worker",
                prefect_command("worker", "start", "--pool", pool, "--type", "process", *limit),
                env=env,
                log=worker_log,
                cwd=ROOT,
            )
            echo(f"Worker started on pool {pool!r} (log: {worker_log})")
            echo(f"Salvo is serving. Prefect UI: http://{HOST}:{opts.port}  (API: {api_url})")
            echo(
                f"Try: PREFECT_API_URL={api_url} .venv/bin/prefect deployment run 'netcdf-extract/nightly' "
                "--param directory=PATH --watch"
            )
            echo("Press Ctrl-C to stop the worker and the server.")
            name, code = supervise(procs, tick=lambda: _name_quietly(api_url, warn), every_s=2.0)
            warn(f"salvo serve: the {name} exited with code {code}; stopping (see {opts.logs / (name + '.log')})")
            return 1
    except KeyboardInterrupt:
        return 0
    finally:
        with no_interrupts():
            left = procs.stop()
        echo("Stopped the worker and the server." + (f" Still alive: {left}" if left else ""))


def _name_quietly(api_url: str, warn: Callable[[str], None]) -> None:
    try:
        name_new_runs(api_url)
    except Exception as exc:  # noqa: BLE001 - naming is cosmetic; never stop serving for it
        warn(f"salvo serve: could not name new flow runs: {' '.join(str(exc).split())}")
