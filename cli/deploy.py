"""`salvo serve` and `salvo deploy`: the command line only.

What they do lives in `deployments/serve.py` (Prefect: settings, work pool, blocks, `prefect deploy`,
the serve loop), `deployments/server.py` (health polling) and `salvo/procs.py` (processes, each in its own
session, stopped together), so nothing `salvo serve` starts outlives it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from cli.common import positive_float, positive_int
from salvo.errors import UsageError
from deployments.server import DEFAULT_PORT, read_state
from salvo.procs import port_in_use

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = "salvo-process"


def ops() -> Any:
    """The `deployments.serve` module (it sits beside prefect.yaml, in the project root)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import deployments.serve

    return deployments.serve


def _add_schedule_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deployments")
    g.add_argument("--cron", help="cron of the nightly deployments (default: $SALVO_NIGHTLY_CRON or '0 2 * * *')")
    g.add_argument("--timezone", help="time zone of that cron (default: $SALVO_TIMEZONE or UTC)")
    g.add_argument("--no-schedule", action="store_true", help="deploy the nightly schedules paused")
    g.add_argument("--pool", help=f"work pool (default: $SALVO_WORK_POOL or {DEFAULT_POOL})")
    g.add_argument("--data", help="folder the default parameters point into (default: $SALVO_DATA or ./data)")
    g.add_argument("--dask-address", help="tcp://HOST:PORT of a Dask cluster the deployments use by default")
    g.add_argument(
        "--crash-after",
        metavar="DURATION",
        help="a run whose heartbeats stop for this long is marked Crashed (default: $SALVO_CRASH_AFTER or 90s)",
    )


def register(subparsers: Any) -> None:
    """Add `salvo serve` and `salvo deploy`."""
    s = subparsers.add_parser(
        "serve",
        help="Prefect server + blocks + work pool + deployments + a worker, until Ctrl-C",
        description="Start a Prefect server on 127.0.0.1, register the storage blocks, create the work pool, "
        "deploy every pipeline and start a worker; Ctrl-C stops them all.",
    )
    s.add_argument(
        "--port", type=positive_int, default=DEFAULT_PORT, help=f"port of the server and UI (default: {DEFAULT_PORT})"
    )
    s.add_argument("--log-dir", help="where the server and worker logs go (default: $PREFECT_HOME/salvo-serve)")
    s.add_argument(
        "--startup-timeout", type=positive_float, default=180.0, help="seconds to wait for the server (default: 180)"
    )
    s.add_argument(
        "--worker-limit", type=positive_int, help="most flow runs the worker runs at once (default: no limit)"
    )
    _add_schedule_flags(s)
    s.set_defaults(func=serve_main)
    d = subparsers.add_parser(
        "deploy",
        help="deploy every pipeline to the Prefect server salvo commands use",
        description="Create the work pool and deploy deployments/prefect.yaml to the server at PREFECT_API_URL "
        "(default: the local server, started if needed).",
    )
    d.add_argument(
        "--print-env", action="store_true", help="print the SALVO_* settings as shell exports, deploy nothing"
    )
    _add_schedule_flags(d)
    d.set_defaults(func=deploy_main)


def _settings(args: argparse.Namespace) -> dict[str, str]:
    o = ops()
    settings = o.deployment_env(
        cron=args.cron,
        timezone=args.timezone,
        schedules_active=False if args.no_schedule else None,
        pool=args.pool,
        data=args.data,
        dask_address=args.dask_address,
        crash_after_s=args.crash_after,
    )
    o.check_schedule(settings)
    return settings


def deploy_main(args: argparse.Namespace) -> int:
    """Deploy to the API salvo commands use."""
    settings = _settings(args)
    if args.print_env:
        for k, v in settings.items():
            print(f"export {k}={shlex.quote(v)}")
        return 0
    return ops().deploy_to_current(settings)


def serve_main(args: argparse.Namespace) -> int:
    """Run everything until Ctrl-C (or SIGTERM), then stop it all."""
    from cli.server import skip_api_setup

    skip_api_setup()  # serve starts its own server; PREFECT_API_URL and the local server do not apply
    if port_in_use(args.port):
        local = read_state()
        hint = (
            " (the local server: `salvo server stop` stops it)"
            if local is not None and local.port == args.port and local.alive()
            else ""
        )
        raise UsageError(f"port {args.port} is already in use{hint}; pick another with --port")
    settings = _settings(args)
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    logs = Path(args.log_dir or home / "salvo-serve").resolve()
    o = ops()
    return o.serve(
        o.ServeOptions(
            port=args.port, logs=logs, startup_timeout_s=args.startup_timeout, worker_limit=args.worker_limit
        ),
        settings,
        echo=lambda m: print(m, flush=True),
        warn=lambda m: print(m, file=sys.stderr, flush=True),
    )
