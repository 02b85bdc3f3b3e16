"""Every place Salvo reaches into Prefect's insides, in one module.

Each function here relies on something Prefect does not promise (a private class, a module global,
a class name, the moment settings are read). Each was checked against Prefect `CHECKED_AGAINST`
(the version pinned in requirements.lock), and each has a test in
``tests/deploy/test_prefect_patches.py`` that fails when Prefect changes what it relies on. After
upgrading Prefect: run those tests, re-check each patch listed in `PATCHES`, then raise
`CHECKED_AGAINST`.

Importing this module changes nothing (no environment, no patch): everything is done by a call.

- `set_environment_defaults`: the ``PREFECT_*`` settings Salvo wants unless the user set them,
  written before Prefect is imported (Prefect reads them once, when it is imported).
- `install_hook` / `remove_hook`: run a step just before the first ``import prefect`` of the
  process (choose the API, write the defaults) and another just after it (the patches below).
- `tag_flow_runs`: every flow run this process creates carries a tag (through the private
  ``FlowRunClient.create_flow_run``).
- `temporary_api_in_own_session`: Prefect's temporary API server starts in its own session
  (through the ``subprocess`` global of ``prefect.server.api.server``).
- `console_handlers` / `share_console`: Prefect's console log handler found by its class name and
  given another rich ``Console`` (its ``console`` attribute).
- `result_record_data`: a local task state's data unwrapped from Prefect's ``ResultRecord``,
  recognised by its class name.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: The Prefect version every patch below was checked against (requirements.lock pins it).
CHECKED_AGAINST = "3.8.8"

#: Each patch and the Prefect behaviour it relies on (the version test names them on a mismatch).
PATCHES = {
    "set_environment_defaults": "Prefect reads PREFECT_* settings from the environment once, when imported; "
    "DO_NOT_TRACK each time it would send a telemetry event",
    "install_hook": "`import prefect` is found by importlib's PathFinder, its loader has exec_module",
    "tag_flow_runs": "the private FlowRunClient/FlowRunAsyncClient.create_flow_run(..., tags=...) "
    "in prefect.client.orchestration._flow_runs.client creates every flow run the engine starts",
    "temporary_api_in_own_session": "prefect.server.api.server.SubprocessASGIServer starts the temporary "
    "API with `subprocess.Popen` through that module's global `subprocess`",
    "console_handlers/share_console": "Prefect's console log handler is a class named PrefectConsoleHandler "
    "printing through its rich Console attribute `console`",
    "result_record_data": "a task state's data is the value itself or a class named ResultRecord holding it "
    "as `.result`",
}

# --------------------------------------------------------------------------- environment

#: No telemetry: a flow run on a closed network must not try to reach Prefect's servers.
NO_TELEMETRY = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}

#: What a `salvo` command and a flow called from plain Python set unless already set: no telemetry;
#: time for a first start of the temporary API on a busy machine (its SQLite migrations can exceed
#: Prefect's 20 s); a heartbeat every 30 s (Prefect's default is 180): `salvo deploy`'s
#: automation marks a run Crashed 90 s after its heartbeats stop (a `salvo` command turns them off:
#: its runs are the guard's, see `cli.common.quick_local_runs`).
ENVIRONMENT_DEFAULTS = {
    **NO_TELEMETRY,
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
}


def set_environment_defaults(defaults: Mapping[str, str] = ENVIRONMENT_DEFAULTS) -> None:
    """Write ``defaults`` into ``os.environ`` where unset; call it before Prefect is imported.

    Relies on: Prefect 3 builds its settings from the environment once, when ``prefect`` is imported
    (its root settings context); a variable written later is not seen by this process's Prefect
    (only by its children). ``DO_NOT_TRACK`` is the exception: Prefect reads it each time it would
    send a telemetry event, so `flows.batch.tag_current_run` also writes it at a flow's start.
    Needed so that the defaults apply without the user exporting them.
    """
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


# --------------------------------------------------------------------------- the import hook


class _PrefectImportHook(importlib.abc.MetaPathFinder):
    """Runs ``before`` just before the first ``import prefect``, and ``after`` just after it."""

    def __init__(self, before: Callable[[], None], after: Callable[[], None]) -> None:
        self.before, self.after = before, after

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "prefect":
            return None
        remove_hook()
        self.before()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            original = spec.loader.exec_module
            after = self.after

            def exec_module(module: Any) -> None:
                original(module)
                after()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install_hook(before: Callable[[], None], after: Callable[[], None]) -> None:
    """Call ``before()`` on the first ``import prefect`` of this process, before Prefect's code runs,
    and ``after()`` once it is imported; nothing if Prefect is imported already (or a hook is installed).

    Relies on: ``prefect`` is an ordinary package that importlib's ``PathFinder`` finds, whose
    loader has ``exec_module`` (a source loader). Needed because Prefect reads its settings (which
    API, telemetry) when imported, and because a flow called from plain Python gives Salvo no other
    place to choose the API first: the hook costs nothing until Prefect is imported, and writes
    nothing before.
    """
    if "prefect" in sys.modules or any(isinstance(f, _PrefectImportHook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _PrefectImportHook(before, after))


def remove_hook() -> None:
    """Undo `install_hook`."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _PrefectImportHook)]


# --------------------------------------------------------------------------- flow runs tagged


def tag_flow_runs(tag: str) -> None:
    """Every flow run this process creates from now on carries ``tag``; its task runs do not.

    Relies on: Prefect's engine creates a flow run through the private
    ``FlowRunClient.create_flow_run`` / ``FlowRunAsyncClient.create_flow_run`` (module
    ``prefect.client.orchestration._flow_runs.client``, base classes of the sync and async clients),
    which take a ``tags`` argument.

    Needed because the tag must go on the flow runs only, not into Prefect's tags context: a task
    run inherits the context's tags, and Prefect asks the API for tag concurrency slots (one round
    trip through one service thread) for every task run that has a tag. With the tag in the context
    that was most of the per-item cost of a local batch (see benchmarks/RESULTS.md). Idempotent for
    one tag; a new tag replaces the previous one.
    """
    import functools
    import inspect

    from prefect.client.orchestration._flow_runs.client import FlowRunAsyncClient, FlowRunClient

    def with_tag(original: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        bound = inspect.signature(original).bind(*args, **kwargs)
        bound.arguments["tags"] = sorted({*(bound.arguments.get("tags") or ()), tag})
        return bound

    for cls in (FlowRunClient, FlowRunAsyncClient):
        original = cls.create_flow_run
        if getattr(original, "_salvo_driver_tag", None) == tag:
            continue
        original = getattr(original, "_salvo_original", original)
        if inspect.iscoroutinefunction(original):

            async def create_flow_run(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                bound = with_tag(_original, args, kwargs)
                return await _original(*bound.args, **bound.kwargs)
        else:

            def create_flow_run(*args: Any, _original: Any = original, **kwargs: Any) -> Any:  # type: ignore[misc]
                bound = with_tag(_original, args, kwargs)
                return _original(*bound.args, **bound.kwargs)

        functools.update_wrapper(create_flow_run, original)
        create_flow_run._salvo_driver_tag = tag  # type: ignore[attr-defined]
        create_flow_run._salvo_original = original  # type: ignore[attr-defined]
        cls.create_flow_run = create_flow_run  # type: ignore[method-assign]


# --------------------------------------------------------------------------- the temporary API


def temporary_api_in_own_session() -> None:
    """Start Prefect's temporary API server in its own session, so that a Ctrl-C to the command's
    process group does not kill it before the command has recorded how its run ended.

    Relies on: ``prefect.server.api.server.SubprocessASGIServer`` starts the server with a plain
    ``subprocess.Popen``, looked up through that module's global ``subprocess``. This gives that
    module a ``subprocess`` whose ``Popen`` adds ``start_new_session=True``; nothing else changes.
    Salvo's reaper still ends the server if the command is killed.
    """
    import functools
    import subprocess
    import types

    try:
        from prefect.server.api import server as srv
    except Exception:  # noqa: BLE001 - without the server module there is no temporary API to start
        return
    if getattr(srv.subprocess, "_salvo_own_session", False):
        return
    shim = types.SimpleNamespace(**{k: getattr(subprocess, k) for k in dir(subprocess) if not k.startswith("__")})
    shim.Popen = functools.partial(subprocess.Popen, start_new_session=True)
    shim._salvo_own_session = True
    srv.subprocess = shim


# --------------------------------------------------------------------------- the console handler

#: The class name of Prefect's console log handler (``prefect.logging.handlers``).
CONSOLE_HANDLER = "PrefectConsoleHandler"


def console_handlers(loggers: Iterable[Any] | None = None) -> list[Any]:
    """Prefect's console log handlers on ``loggers`` (default: the root logger and every named one).

    Relies on: Prefect's logging configuration puts a handler of class ``PrefectConsoleHandler`` on
    its loggers for the terminal (another handler sends records to the API). It is recognised by
    class name, so that finding it never imports Prefect's logging module first. Needed to keep
    Prefect's own lines off the terminal unless ``--verbose`` (a filter on these handlers only:
    the UI still gets every record).
    """
    import logging

    if loggers is None:
        known = logging.Logger.manager.loggerDict.values()
        loggers = [logging.getLogger(), *(lg for lg in known if isinstance(lg, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers if type(h).__name__ == CONSOLE_HANDLER]


def share_console(console: Any) -> list[tuple[Any, Any]]:
    """Make Prefect's console handlers (on ``prefect`` and the root logger) print through ``console``;
    return ``(handler, its own console)`` pairs for `restore_console`.

    Relies on: ``PrefectConsoleHandler`` prints every record through its rich ``Console``, kept in
    its ``console`` attribute (not a public API). Needed so that Prefect's log lines print above
    the command's progress bar (drawn by the same rich Console) instead of through it.
    """
    import logging

    swapped = []
    for h in console_handlers([logging.getLogger("prefect"), logging.getLogger()]):
        if hasattr(h, "console"):
            swapped.append((h, h.console))
            h.console = console
    return swapped


def restore_console(swapped: list[tuple[Any, Any]]) -> None:
    """Give each handler `share_console` changed its own console back."""
    for handler, console in swapped:
        handler.console = console


# --------------------------------------------------------------------------- task results

#: The class name of Prefect's result record (``prefect._internal.result_records``).
RESULT_RECORD = "ResultRecord"


def result_record_data(data: Any) -> Any:
    """A task state's data as the task returned it: unwrapped from a ``ResultRecord``, else as is.

    Relies on: a local task run's final state holds either the returned value or Prefect's private
    ``ResultRecord`` (recognised by class name, its module being private) holding it as ``.result``.
    Needed to read a local task's results from its state without ``future.result()``, which goes
    through Prefect's event-loop thread (0.67 ms a call against 0.003 ms; 14% of the batch's
    dispatch loop on tiny items).
    """
    return getattr(data, "result", data) if type(data).__name__ == RESULT_RECORD else data


__all__ = [
    "CHECKED_AGAINST",
    "ENVIRONMENT_DEFAULTS",
    "NO_TELEMETRY",
    "PATCHES",
    "console_handlers",
    "install_hook",
    "remove_hook",
    "restore_console",
    "result_record_data",
    "set_environment_defaults",
    "share_console",
    "tag_flow_runs",
    "temporary_api_in_own_session",
]
