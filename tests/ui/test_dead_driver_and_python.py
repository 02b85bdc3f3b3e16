"""A dead driver's run is marked Crashed by the local server's guard, with no other command; and a
flow called from plain Python (`python -c`) uses Salvo's local server like the CLI.

Real processes: a `salvo extract` killed with SIGKILL (as the out-of-memory killer does), a plain
`python -c` importing a flow as the README shows.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from salvo.procs import free_port, process_alive
from tests.helpers import wait_until
from tests.ui.conftest import ROOT, Local, series, worker


def _running_below(pid: int, needle: str) -> bool:
    try:
        return any(needle in " ".join(c.cmdline()) for c in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return False


def test_a_killed_drivers_run_is_crashed_in_the_api_within_30_s_with_no_other_command(
    tmp_path: Path, local: Local
) -> None:
    data = series(tmp_path / "oom", ["a.nc"])
    cmd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "extract",
            "--directory",
            str(data),
            "--worker-command",
            worker(tmp_path, sleep_s=300),
        ],
        env=local.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: _running_below(cmd.pid, "worker.py"), timeout=240), "the item never started"
        tag = f"salvo-driver:{socket.gethostname()}:{cmd.pid}"  # every run a driver starts carries its tag
        mine = lambda: local.post("/flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}})  # noqa: E731
        assert wait_until(lambda: [r for r in mine() if r["state"]["type"] == "RUNNING"], timeout=60, interval=0.5)
        (run,) = mine()
        cmd.send_signal(signal.SIGKILL)
        cmd.wait()
    finally:
        if cmd.poll() is None:
            cmd.kill()
            cmd.wait()
    assert not process_alive(cmd.pid)
    # No other salvo command runs: the local server's guard checks the drivers of running runs.
    crashed = wait_until(
        lambda: local.get(f"/flow_runs/{run['id']}")["state"]["type"] == "CRASHED", timeout=30, interval=0.5
    )
    state = local.get(f"/flow_runs/{run['id']}")["state"]
    assert crashed, state
    assert "driver" in state["message"] and "guard" in state["message"], state["message"]
    tasks = local.task_runs(run["id"])
    assert all(t["state"]["type"] not in ("RUNNING", "PENDING") for t in tasks), [t["state"] for t in tasks]


PY_CALL = textwrap.dedent("""
    from flows.netcdf_extract import netcdf_extract
    from salvo.options import RunOptions
    doc = netcdf_extract(directory={directory!r}, pattern="*.nc", fail_on_error=False, worker_command={command!r},
                         run=RunOptions(workers=1, timeout_s=120))
    print("COUNTS", doc["summary"]["counts"])
""")


def test_a_plain_python_call_of_a_flow_appears_in_the_running_local_server(tmp_path: Path, local: Local) -> None:
    data = series(tmp_path / "pycall", ["x.nc", "y.nc"])
    code = PY_CALL.format(directory=str(data), command=worker(tmp_path))
    before = {r["id"] for r in local.flow_runs()}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=local.env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "COUNTS {'success': 2}" in proc.stdout
    assert "started a local Prefect server" not in proc.stderr  # the running one was reused
    new = [r for r in local.flow_runs("netcdf-extract-pycall-") if r["id"] not in before]
    assert len(new) == 1 and new[0]["state"]["type"] == "COMPLETED", new
    assert any(t.startswith("salvo-driver:") for t in new[0]["tags"])  # so the guard watches it too


def test_prefect_api_url_still_wins_over_the_local_server_for_a_python_call(tmp_path: Path, local: Local) -> None:
    data = series(tmp_path / "elsewhere", ["x.nc"])
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing answers there
    code = PY_CALL.format(directory=str(data), command=worker(tmp_path))
    before = len(local.flow_runs("netcdf-extract-elsewhere-"))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**local.env, "PREFECT_API_URL": url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and url in proc.stderr, proc.stderr[-3000:]
    assert len(local.flow_runs("netcdf-extract-elsewhere-")) == before
    assert not list(data.parent.glob("elsewhere_results/*/plot.png")), "nothing may run without its API"
