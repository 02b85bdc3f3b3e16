"""`salvo server start | stop | status`, and which Prefect API a `salvo` command talks to.

Every `salvo` command that needs Prefect calls `prepare_api()` before Prefect is imported (the
`salvo` entry point does it by itself, on the first ``import prefect``; see `install_hook`):

1. ``PREFECT_API_URL`` set by the user (environment, or the active profile in
   ``PREFECT_HOME/profiles.toml``) always wins. If it does not answer ``/api/health``, the command
   stops with one line naming the URL, exit 1 (`RunFailed`), before any work.
2. Otherwise, unless ``SALVO_LOCAL_SERVER=0``, the *local server* of ``PREFECT_HOME`` is used,
   started in the background by the first command that needs it (`deployments.server.ensure_local_server`)
   and left running for the next ones: `salvo server stop` stops it.
3. If it cannot start, the command falls back to Prefect's temporary (ephemeral) API, with a one-line
   warning.

Then the command's own processes are tied to its life (`salvo.procs.start_reaper`): whatever it
starts dies with it, even under SIGKILL. Its flow runs are tagged ``salvo-driver:HOST:PID``, and runs
left RUNNING by a driver on this host that is gone are marked Crashed (`mark_crashed_runs`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tomllib
from typing import Any

from cli.common import RunFailed, positive_float, positive_int
from deployments import runs
from deployments import server as prefect_server
from salvo import procs
from salvo.errors import UsageError
from salvo.validate import redact

#: Tag prefix of flow runs started by a `salvo` command: ``salvo-driver:HOST:PID``.
DRIVER_TAG = runs.DRIVER_TAG
_state: dict[str, Any] = {"prepared": False, "url": None, "skip": False}


# --------------------------------------------------------------------------- which API


def local_server_enabled() -> bool:
    """False when ``SALVO_LOCAL_SERVER`` is 0/false/no/off; unset means on, except under pytest (never leave a
    server behind)."""
    value = os.environ.get("SALVO_LOCAL_SERVER")
    if value is None:
        return "PYTEST_CURRENT_TEST" not in os.environ
    return value.strip().lower() not in ("0", "false", "no", "off")


def user_api_url() -> str | None:
    """PREFECT_API_URL as the user set it: the environment, else the active profile; None if unset."""
    if url := os.environ.get("PREFECT_API_URL", "").strip():
        return url.rstrip("/")
    try:
        doc = tomllib.loads((prefect_server.prefect_home() / "profiles.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or doc.get("active") or "ephemeral"
    url = str(doc.get("profiles", {}).get(active, {}).get("PREFECT_API_URL", "")).strip()
    return url.rstrip("/") or None


def check_api(url: str) -> None:
    """Stop with one line and exit 1 if the Prefect API at ``url`` does not answer ``/health``."""
    if not prefect_server.api_healthy(url, timeout_s=float(os.environ.get("SALVO_API_CHECK_TIMEOUT", "5"))):
        raise RunFailed(
            f"the Prefect API at {redact(url)} does not answer (GET {redact(url)}/health); "
            "start it, or unset PREFECT_API_URL to use Salvo's local server"
        )


def skip_api_setup() -> None:
    """This command manages its own servers (`salvo serve`): `prepare_api` does nothing but the reaper."""
    _state["skip"] = True


def prepare_api(*, warn: Any = None) -> str | None:
    """Choose the API before Prefect is imported; return its URL (None: Prefect's temporary API). Idempotent.

    Raises `RunFailed` (exit 1, one line) if the user's PREFECT_API_URL does not answer.
    """
    if _state["prepared"]:
        return _state["url"]
    from deployments.prefect_patches import ENVIRONMENT_DEFAULTS, set_environment_defaults

    warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))
    set_environment_defaults(ENVIRONMENT_DEFAULTS)
    url = None
    if not _state["skip"]:
        url = user_api_url()
        if url:
            check_api(url)
        elif local_server_enabled():
            try:
                info, started = prefect_server.ensure_local_server(
                    startup_timeout_s=float(os.environ.get("SALVO_SERVER_STARTUP_TIMEOUT", "180"))
                )
                url = info.url
                os.environ["PREFECT_API_URL"] = url
                if started:
                    warn(
                        f"salvo: started a local Prefect server at {info.ui} (UI; PREFECT_HOME={info.home}); "
                        "it keeps running for later commands: `salvo server stop` stops it"
                    )
            except Exception as exc:  # noqa: BLE001 - any failure falls back, with one line
                warn(
                    f"salvo: warning: no local Prefect server ({' '.join(str(exc).split())}); "
                    "using a temporary API for this command"
                )
                url = None
    procs.start_reaper()
    if url:
        try:
            mark_crashed_runs(url)
        except Exception as exc:  # noqa: BLE001 - never block a run on housekeeping
            warn(f"salvo: warning: could not check for crashed runs at {redact(url)}: {' '.join(str(exc).split())}")
    _state.update(prepared=True, url=url)
    return url


# --------------------------------------------------------------------------- the import hook


def install_hook() -> None:
    """On the first ``import prefect`` of this process: `prepare_api` just before (which writes the
    environment defaults), and just after, tag this driver's flow runs and, on Prefect's temporary
    API, start that server in its own session (`deployments.prefect_patches`). Nothing if Prefect is
    imported already; nothing is written until then."""
    from deployments import prefect_patches

    prefect_patches.install_hook(before=prepare_api, after=_after_prefect_import)


def remove_hook() -> None:
    """Undo `install_hook`."""
    from deployments import prefect_patches

    prefect_patches.remove_hook()


def _after_prefect_import() -> None:
    tag_this_driver()
    if not _state["url"] and not _state["skip"]:
        from deployments.prefect_patches import temporary_api_in_own_session

        temporary_api_in_own_session()


def driver_tag() -> str:
    """``salvo-driver:HOST:PID`` of this process."""
    return f"{DRIVER_TAG}:{socket.gethostname()}:{os.getpid()}"


def tag_this_driver() -> None:
    """Every flow run this process creates from now on carries `driver_tag`; its task runs do not
    (`deployments.prefect_patches.tag_flow_runs`); `mark_crashed_runs` finds the task runs through
    their flow run."""
    from deployments.prefect_patches import tag_flow_runs

    tag_flow_runs(driver_tag())


# --------------------------------------------------------------------------- crashed runs


def mark_crashed_runs(url: str) -> list[str]:
    """Mark Crashed the runs whose `salvo` driver on this host is gone (`deployments.runs.mark_crashed_runs`).

    The local server's guard does it every few seconds; a command does it once when it starts, for
    a server Salvo did not start.
    """
    return runs.mark_crashed_runs(url, by="the next salvo command")


# --------------------------------------------------------------------------- salvo server


def register(subparsers: Any) -> None:
    """Add `salvo server start | stop | status`."""
    p = subparsers.add_parser(
        "server",
        help="the local Prefect server every salvo command uses by default: start, stop, status",
        description="Manage the local Prefect server of PREFECT_HOME (SQLite, 127.0.0.1) that salvo commands "
        "start on first need and reuse. PREFECT_API_URL set by you always wins over it; "
        "SALVO_LOCAL_SERVER=0 turns it off (each command then starts a temporary API).",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("start", help="start it (or report the one already running)")
    s.add_argument(
        "--port", type=positive_int, help="port (default: $SALVO_SERVER_PORT, else 4200 if free, else a free port)"
    )
    s.add_argument(
        "--timeout", type=positive_float, default=180.0, help="seconds to wait for it to be healthy (default: 180)"
    )
    s.set_defaults(func=_start)
    st = sub.add_parser("status", help="is it running, where, with which PID and log; exit 0 if running, 1 if not")
    st.add_argument("--json", action="store_true", help="print the state as JSON")
    st.set_defaults(func=_status)
    sub.add_parser("stop", help="stop it (nothing else keeps running afterwards)").set_defaults(func=_stop)


def _describe(info: prefect_server.ServerInfo) -> str:
    return f"UI {info.ui}  API {info.url}  PID {info.pid}  PREFECT_HOME {info.home}  log {info.log}"


def _start(args: argparse.Namespace) -> int:
    info, started = prefect_server.ensure_local_server(port=args.port, startup_timeout_s=args.timeout)
    if not started and args.port and info.port != args.port:
        raise UsageError(
            f"a local server already runs on port {info.port}; `salvo server stop` it first to use port {args.port}"
        )
    print(("Started" if started else "Already running:") + f" local Prefect server: {_describe(info)}")
    if user_api_url() and user_api_url() != info.url:
        print(
            f"note: PREFECT_API_URL={redact(user_api_url())} is set, so salvo commands use that, not this server",
            file=sys.stderr,
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    info = prefect_server.read_state()
    alive = info is not None and info.alive()
    healthy = alive and prefect_server.api_healthy(info.url)  # type: ignore[union-attr]
    user = user_api_url()
    if args.json:
        print(
            json.dumps(
                {
                    "running": bool(healthy),
                    "process_alive": alive,
                    "server": info.__dict__ if info and alive else None,
                    "user_api_url": redact(user) if user else None,
                    "local_server_enabled": local_server_enabled(),
                },
                indent=2,
            )
        )
    elif healthy:
        print(f"Running: {_describe(info)}")  # type: ignore[arg-type]
    elif alive:
        print(f"Starting or not answering: {_describe(info)}")  # type: ignore[arg-type]
    else:
        print(
            f"Not running (PREFECT_HOME {prefect_server.prefect_home()});"
            " the next salvo command that needs Prefect starts it"
            + ("" if local_server_enabled() else " unless SALVO_LOCAL_SERVER=0, as it is now")
        )
    if user and not args.json:
        print(f"PREFECT_API_URL={redact(user)} is set: salvo commands use it, not the local server")
    return 0 if healthy else 1


def _stop(args: argparse.Namespace) -> int:
    info = prefect_server.stop_local_server()
    print(
        f"Stopped the local Prefect server (PID {info.pid}, {info.ui})."
        if info
        else f"No local Prefect server was running (PREFECT_HOME {prefect_server.prefect_home()})."
    )
    return 0


__all__ = [
    "check_api",
    "driver_tag",
    "install_hook",
    "local_server_enabled",
    "mark_crashed_runs",
    "prepare_api",
    "register",
    "skip_api_setup",
    "user_api_url",
]
