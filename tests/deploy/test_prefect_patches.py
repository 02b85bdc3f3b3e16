"""Each patch in deployments/prefect_patches.py still finds in Prefect what it relies on.

These fail when a Prefect upgrade changes a private name, signature or behaviour a patch uses; the
message names the patch to re-check. Also: importing Salvo's entry-point packages writes no
environment (the defaults are written by an explicit call).
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployments import prefect_patches

pytestmark = pytest.mark.pure

ROOT = Path(__file__).resolve().parents[2]


def _fresh_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _clean_env() -> dict[str, str]:
    """This process's environment without what the test harness or an earlier import set for Prefect."""
    drop = (*prefect_patches.ENVIRONMENT_DEFAULTS, "PYTEST_CURRENT_TEST", "PREFECT_API_URL")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONPATH": str(ROOT)}


def test_the_installed_prefect_is_the_version_every_patch_was_checked_against() -> None:
    import prefect

    assert prefect.__version__ == prefect_patches.CHECKED_AGAINST, (
        f"Prefect {prefect.__version__} is installed, the patches were checked against "
        f"{prefect_patches.CHECKED_AGAINST}: re-check each of them in deployments/prefect_patches.py, then raise "
        "CHECKED_AGAINST: " + "; ".join(f"{name}: {why}" for name, why in prefect_patches.PATCHES.items())
    )


def test_importing_the_entry_point_packages_writes_no_environment() -> None:
    code = (
        "import json, os\n"
        "before = dict(os.environ)\n"
        "import flows, tasks, cli.main, cli.server, deployments.prefect_patches\n"
        "after = dict(os.environ)\n"
        "print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after) "
        "if before.get(k) != after.get(k)}))\n"
    )
    proc = _fresh_python(code, _clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


def test_the_defaults_are_written_by_the_call_and_never_over_the_users_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in prefect_patches.ENVIRONMENT_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "mine")
    prefect_patches.set_environment_defaults()
    assert os.environ["DO_NOT_TRACK"] == "mine"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"


def test_prefect_reads_do_not_track_when_it_would_send_an_event_not_only_when_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """set_environment_defaults / flows.batch.tag_current_run: DO_NOT_TRACK written after Prefect's
    import (at a flow's start) still turns its telemetry off."""
    from prefect._internal.analytics.enabled import is_telemetry_enabled
    from prefect._internal.analytics.service import AnalyticsService

    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert not is_telemetry_enabled(), "re-check set_environment_defaults (DO_NOT_TRACK)"
    assert not AnalyticsService._quick_enabled_check(object.__new__(AnalyticsService)), "re-check DO_NOT_TRACK"


def test_install_hook_runs_before_prefect_reads_its_settings_and_after_it_is_imported() -> None:
    """set_environment_defaults / install_hook: Prefect reads the environment when imported (a value
    written after the import is not seen), and the hook's ``before`` step comes early enough."""
    code = (
        "import os, sys\n"
        "from deployments import prefect_patches as p\n"
        "seen = []\n"
        "def before():\n"
        "    seen.append(('before', 'prefect' in sys.modules))\n"
        "    os.environ['PREFECT_FLOWS_DEFAULT_RETRIES'] = '7'\n"
        "def after():\n"
        "    seen.append(('after', 'prefect' in sys.modules))\n"
        "p.install_hook(before, after)\n"
        "import prefect\n"
        "from prefect.settings import get_current_settings\n"
        "os.environ['PREFECT_FLOWS_DEFAULT_RETRIES'] = '3'\n"
        "print(seen, get_current_settings().flows.default_retries, p._PrefectImportHook in map(type, sys.meta_path))\n"
    )
    env = _clean_env()
    env.pop("PREFECT_FLOWS_DEFAULT_RETRIES", None)
    proc = _fresh_python(code, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[('before', False), ('after', True)] 7 False", (
        "re-check install_hook and set_environment_defaults: " + proc.stdout
    )


def test_create_flow_run_is_still_the_private_method_the_clients_create_flow_runs_with() -> None:
    """tag_flow_runs: both clients' create_flow_run exist, take ``tags``, and the engine calls it."""
    import prefect.flow_engine
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.client.orchestration._flow_runs.client import FlowRunAsyncClient, FlowRunClient

    assert issubclass(SyncPrefectClient, FlowRunClient) and issubclass(PrefectClient, FlowRunAsyncClient)
    for cls in (FlowRunClient, FlowRunAsyncClient):
        original = getattr(cls.create_flow_run, "_salvo_original", cls.create_flow_run)
        params = inspect.signature(original).parameters
        assert list(params)[:2] == ["self", "flow"] and "tags" in params, f"re-check tag_flow_runs: {cls}"
        assert inspect.iscoroutinefunction(original) == (cls is FlowRunAsyncClient), f"re-check tag_flow_runs: {cls}"
    assert "client.create_flow_run(" in inspect.getsource(prefect.flow_engine), "re-check tag_flow_runs"


def test_the_temporary_api_is_still_started_through_the_server_modules_subprocess_popen() -> None:
    """temporary_api_in_own_session: SubprocessASGIServer calls `subprocess.Popen` through the module global."""
    from prefect.server.api import server as srv

    assert hasattr(srv, "subprocess") and hasattr(srv.subprocess, "Popen"), "re-check temporary_api_in_own_session"
    source = inspect.getsource(srv.SubprocessASGIServer._run_uvicorn_command)
    assert "subprocess.Popen(" in source, "re-check temporary_api_in_own_session"


def test_the_console_handler_is_found_by_its_class_name_and_prints_through_its_console_attribute() -> None:
    """console_handlers / share_console: the class name, and the rich Console it prints through."""
    from prefect.logging.handlers import PrefectConsoleHandler
    from rich.console import Console

    assert PrefectConsoleHandler.__name__ == prefect_patches.CONSOLE_HANDLER
    logger = logging.getLogger("prefect")
    handler = PrefectConsoleHandler()
    logger.addHandler(handler)
    try:
        assert handler in prefect_patches.console_handlers()
        own, out = handler.console, io.StringIO()
        assert isinstance(own, Console), "re-check share_console"
        swapped = prefect_patches.share_console(Console(file=out, width=200))
        assert (handler, own) in swapped
        record = {"name": "prefect.salvo-test", "levelno": logging.WARNING, "levelname": "WARNING"}
        handler.emit(logging.makeLogRecord({**record, "msg": "through the shared console"}))
        prefect_patches.restore_console(swapped)
        assert "through the shared console" in out.getvalue(), "re-check share_console"
        assert handler.console is own
    finally:
        logger.removeHandler(handler)


def test_a_result_record_is_what_prefect_calls_it_and_holds_the_value_as_result() -> None:
    """result_record_data: the class name, and the field holding the task's value."""
    from prefect._internal.result_records import ResultRecord, ResultRecordMetadata
    from prefect.serializers import PickleSerializer

    assert ResultRecord.__name__ == prefect_patches.RESULT_RECORD, "re-check result_record_data"
    record = ResultRecord(result=[1, 2], metadata=ResultRecordMetadata(serializer=PickleSerializer(), storage_key="k"))
    assert prefect_patches.result_record_data(record) == [1, 2]
    assert prefect_patches.result_record_data([3]) == [3]
