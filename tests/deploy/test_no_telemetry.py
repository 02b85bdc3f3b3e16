"""Calling a flow from plain Python, on a closed network, with none of the telemetry settings: no telemetry attempt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from salvo.samples.netcdf import write_series_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from flows.netcdf_extract import netcdf_extract
state = netcdf_extract(directory=sys.argv[1], return_state=True)
print("STATE", state.type.value)
"""


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None, reason="needs unshare and ip")
def test_a_flow_called_from_python_without_network_sends_no_telemetry(tmp_path: Path) -> None:
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    write_series_file(tmp_path / "d" / "a.nc", steps=4, seed=0)
    (tmp_path / "run.py").write_text(SCRIPT)
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "SALVO_")) and k not in ("DO_NOT_TRACK", "PYTEST_CURRENT_TEST")
    }
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    # A network namespace with only loopback (up): no DNS, no route out, as on a closed network.
    shell = f"ip link set lo up && exec {sys.executable} {tmp_path / 'run.py'} {tmp_path / 'd'}"
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", shell], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "STATE COMPLETED" in out, out[-3000:]
    assert "telemetry" not in out.lower(), out[-3000:]
