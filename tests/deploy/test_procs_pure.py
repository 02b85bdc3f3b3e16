"""salvo.procs, deployments.server and cli.server without a Prefect server: the reaper's sweep, a server that
fails to start, names, settings."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployments import server
from salvo import procs
from salvo.errors import UsageError
from tests.helpers import wait_until

pytestmark = pytest.mark.pure


def test_sweep_ends_every_process_carrying_the_token_and_no_other(tmp_path: Path) -> None:
    token = "t" + os.urandom(6).hex()
    mine = [
        subprocess.Popen(["sleep", "120"], env={**os.environ, procs.TOKEN_VAR: token}, start_new_session=True)
        for _ in range(2)
    ]
    other = subprocess.Popen(["sleep", "120"], env={**os.environ, procs.TOKEN_VAR: "someone-else"})
    try:
        assert sorted(procs.processes_with_token(token)) == sorted(p.pid for p in mine)
        found = procs.sweep(token, grace_s=1.0)
        assert sorted(found) == sorted(p.pid for p in mine)
        assert all(p.wait(timeout=10) is not None for p in mine)
        assert other.poll() is None
    finally:
        for p in [*mine, other]:
            p.kill()
            p.wait()


def test_the_reaper_ends_the_drivers_processes_when_the_driver_is_killed(tmp_path: Path) -> None:
    driver = (
        "import subprocess, sys, time\n"
        "from salvo.procs import start_reaper\n"
        "start_reaper()\n"
        "p = subprocess.Popen(['sleep', '120'], start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", driver],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    child = int(proc.stdout.readline())  # type: ignore[union-attr]
    assert procs.process_alive(child)
    proc.kill()
    proc.wait()
    assert wait_until(lambda: not procs.process_alive(child), timeout=10)


def test_a_local_server_that_cannot_start_is_one_line_naming_its_log_and_leaves_no_state(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        server.ensure_local_server(tmp_path / "home", port=procs.free_port(), startup_timeout_s=30, python="/bin/false")
    assert (
        "exited with code 1" in str(err.value) and "salvo-server.log" in str(err.value) and "\n" not in str(err.value)
    )
    assert server.read_state(tmp_path / "home") is None
    assert server.stop_local_server(tmp_path / "home") is None


def test_the_user_api_url_comes_from_the_environment_else_the_active_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.server import user_api_url

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert user_api_url() is None
    (tmp_path / "profiles.toml").write_text(
        'active = "lab"\n[profiles.lab]\nPREFECT_API_URL = "http://lab:4200/api/"\n[profiles.ephemeral]\n'
    )
    assert user_api_url() == "http://lab:4200/api"
    monkeypatch.setenv("PREFECT_PROFILE", "ephemeral")
    assert user_api_url() is None
    monkeypatch.setenv("PREFECT_API_URL", "http://env:1/api")
    assert user_api_url() == "http://env:1/api"


def test_the_local_server_is_off_under_pytest_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.server import local_server_enabled

    monkeypatch.delenv("SALVO_LOCAL_SERVER", raising=False)
    assert "PYTEST_CURRENT_TEST" in os.environ and not local_server_enabled()
    monkeypatch.setenv("SALVO_LOCAL_SERVER", "1")
    assert local_server_enabled()
    monkeypatch.setenv("SALVO_LOCAL_SERVER", "0")
    assert not local_server_enabled()


def test_run_names_are_pipeline_input_and_time() -> None:
    from deployments.serve import run_name

    when = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.timezone.utc)
    local = when.astimezone().strftime("%Y%m%d-%H%M%S")
    assert run_name("netcdf-extract", {"directory": "/data/model-out/"}, when) == f"netcdf-extract-model-out-{local}"
    assert run_name("subject-batch", {"manifest": "", "bids_dir": "/study/bids"}, when) == f"subject-batch-bids-{local}"
    assert run_name("salvage-merge", {}, when) == f"salvage-merge-{local}"
