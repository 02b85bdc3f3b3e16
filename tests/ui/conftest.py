"""A real local Prefect server (`salvo server start`, SQLite, 127.0.0.1) shared by a test module, and
what its tests read from its API. Plain HTTP: the server is another process, as a user's is."""

from __future__ import annotations

import json
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployments.server import ServerInfo, read_state, stop_local_server
from salvo.samples.netcdf import write_series_file
from tests.helpers import child_env_for, salvo

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Local:
    """The module's local server and the environment of a user whose `salvo` commands use it."""

    env: dict[str, str]
    info: ServerInfo
    home: Path

    def post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            f"{self.info.url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.info.url}{path}", timeout=30) as resp:
            return json.loads(resp.read())

    def flow_runs(self, like: str = "") -> list[dict[str, Any]]:
        body: dict[str, Any] = {"sort": "EXPECTED_START_TIME_DESC", "limit": 50}
        if like:
            body["flow_runs"] = {"name": {"like_": like}}
        return self.post("/flow_runs/filter", body)

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        return self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no PREFECT_API_URL, Salvo's local server on, a private PREFECT_HOME."""
    env = {
        k: v for k, v in child_env_for("unused").items() if not k.startswith("PREFECT_") and k != "PYTEST_CURRENT_TEST"
    }
    env.update(PREFECT_HOME=str(home), SALVO_LOCAL_SERVER="1", **extra)
    return env


def start_local(home: Path, **extra: str) -> Local:
    env = user_env(home, **extra)
    started = salvo("server", "start", "--timeout", "280", env=env, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    info = read_state(home)
    assert info is not None
    return Local(env=env, info=info, home=home)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    """One local server for the module, on a free port (never 4200), stopped at the end."""
    from salvo.procs import free_port

    home = tmp_path_factory.mktemp("ui-home")
    try:
        yield start_local(home, SALVO_SERVER_PORT=str(free_port()), PREFECT_UI_ENABLED="false")
    finally:
        stop_local_server(home)


def series(folder: Path, names: list[str]) -> Path:
    """NetCDF files named ``names`` in ``folder`` (real files the built-in extract reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_series_file(folder / name, steps=4, seed=i)
    return folder


def worker(tmp_path: Path, *, fail: tuple[str, ...] = (), sleep_s: float = 0.0) -> str:
    """A `--worker-command` that fails (exit 3, a last stderr line) for the files named in ``fail``."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        name = os.path.basename(sys.argv[1])
        time.sleep(float(os.environ.get("SLEEP_S", "{sleep_s}")))
        if name in {list(fail)!r}:
            print("step 3 of 3: reading " + name + " failed: bad chunk", file=sys.stderr)
            sys.exit(3)
        os.makedirs(sys.argv[2], exist_ok=True)
        open(os.path.join(sys.argv[2], "plot.png"), "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00" * 32)
    """)
    )
    return f"{sys.executable} {script} {{input}} {{output_dir}}"


def assert_no_green_run_holds_a_failure(runs: list[dict[str, Any]], outcome: dict[str, str]) -> None:
    """The invariant, through the API: the items Completed task runs carry are exactly the items that
    succeeded (a group
    names its items in its message, a single item is its run's name), and every item that did not
    succeed but ran has a red task run of its own."""
    carried: set[str] = set()
    for tr in runs:
        if tr["state"]["type"] != "COMPLETED":
            continue
        message = tr["state"].get("message") or ""
        ids = message.split(": ", 1)[1].split(", ") if " items succeeded: " in message else [tr["name"]]
        carried |= set(ids)
    ok = {i for i, s in outcome.items() if s in ("success", "skipped")}
    assert carried == ok, (sorted(carried - ok), sorted(ok - carried))  # exactly the items that succeeded
    red = {tr["name"] for tr in runs if tr["state"]["type"] in ("FAILED", "CRASHED")}
    ran_and_failed = {i for i, s in outcome.items() if s not in ("success", "skipped", "not_run")}
    assert ran_and_failed <= red, sorted(ran_and_failed - red)
