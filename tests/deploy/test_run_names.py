"""Runs created by a schedule or `prefect deployment run` carry their real name while they wait.

Prefect gives such runs a random name ("marble-dachshund") until the flow starts. The guard of
the local server every `salvo` command shares names them PIPELINE-INPUT-TIME within seconds; a real
`prefect server start`, a run created through its REST API as the scheduler would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.runs import api_call, run_name
from deployments.server import ensure_local_server, stop_local_server
from salvo.procs import free_port
from tests.helpers import wait_until


@pytest.mark.pure
@pytest.mark.parametrize(
    ("pipeline", "params", "label"),
    [
        ("netcdf-extract", {"directory": "/data/netcdf/"}, "netcdf"),
        ("subject-batch", {"manifest": None, "bids_dir": "/studies/ds001"}, "ds001"),
        ("subject-batch", {"manifest": "/studies/m.csv", "bids_dir": "/studies/ds001"}, "m.csv"),
        ("job-batch", {}, ""),
    ],
)
def test_a_run_name_is_pipeline_input_and_time(pipeline: str, params: dict[str, Any], label: str) -> None:
    when = dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.timezone.utc)
    local = when.astimezone().strftime("%Y%m%d-%H%M%S")
    assert run_name(pipeline, params, when) == "-".join(x for x in (pipeline, label, local) if x)


def _api(url: str, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
    return api_call(url, path, body or {}, method=method, timeout_s=30.0)


@pytest.fixture
def local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    home = tmp_path / "home"
    monkeypatch.setenv("PREFECT_UI_ENABLED", "false")
    info, _ = ensure_local_server(home, port=free_port(), startup_timeout_s=300)
    try:
        yield info.url
    finally:
        stop_local_server(home)


def test_the_local_server_names_a_scheduled_salvo_run_before_it_starts(local_server: str) -> None:
    flow = _api(local_server, "/flows/", {"name": "netcdf-extract"})
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=3)
    scheduled = {"type": "SCHEDULED", "state_details": {"scheduled_time": when.isoformat()}}
    ours = _api(
        local_server,
        "/flow_runs/",
        {
            "flow_id": flow["id"],
            "name": "marble-dachshund",
            "tags": ["salvo", "netcdf-extract", "nightly"],
            "parameters": {"directory": "/data/netcdf"},
            "state": scheduled,
        },
    )
    other = _api(
        local_server,
        "/flow_runs/",
        {"flow_id": flow["id"], "name": "crimson-otter", "tags": ["someone-else"], "state": scheduled},
    )

    def name(run_id: str) -> str:
        return _api(local_server, f"/flow_runs/{run_id}", method="GET")["name"]

    assert wait_until(lambda: name(ours["id"]).startswith("netcdf-extract-netcdf-"), timeout=60, interval=0.5), name(
        ours["id"]
    )
    assert name(ours["id"]).endswith(when.astimezone().strftime("%Y%m%d-%H%M%S"))  # named after when it will run
    assert name(other["id"]) == "crimson-otter"  # not a Salvo run: left alone


@pytest.mark.pure
def test_every_pipeline_flow_is_named_from_parameters_it_has() -> None:
    """The flows and the server-side naming share NAME_PARAMS: each names a flow and its real parameters."""
    import inspect

    from flows.assembly import assembly_reassemble, assembly_run
    from flows.job_batch import job_batch
    from flows.netcdf_extract import netcdf_extract
    from flows.recover_batches import recover_batches
    from flows.salvage_merge import salvage_merge
    from flows.subject_batch import subject_batch
    from deployments.runs import NAME_PARAMS

    flows = {
        f.name: f
        for f in (
            assembly_reassemble,
            assembly_run,
            job_batch,
            netcdf_extract,
            recover_batches,
            salvage_merge,
            subject_batch,
        )
    }
    assert set(flows) == set(NAME_PARAMS)
    for name, params in NAME_PARAMS.items():
        assert set(params) <= set(inspect.signature(flows[name].fn).parameters), name
