"""What the Prefect UI shows for a netcdf-extract run, read back through the real API."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from flows.netcdf_extract import netcdf_extract
from salvo.options import RunOptions
from salvo.samples.netcdf import write_series_file


async def _read(flow_run_id):
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        tasks = await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
        keys = ["netcdf-extract-items", "netcdf-extract-summary", "netcdf-extract-progress"]
        arts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
        return run, tasks, arts


def test_run_name_tags_task_names_and_artifacts(tmp_path: Path) -> None:
    data = tmp_path / "ui-data"
    write_series_file(data / "a.nc", steps=3)
    write_series_file(data / "b.nc", steps=1)
    state = netcdf_extract(directory=str(data), return_state=True)
    assert state.is_completed()
    run, tasks, arts = asyncio.run(_read(state.state_details.flow_run_id))
    assert run.name.startswith("netcdf-extract-ui-data-")
    assert "netcdf-extract" in run.tags
    assert sorted(t.name for t in tasks) == ["a.nc", "b.nc"]
    by_key = {a.key: a for a in arts}
    assert set(by_key) == {"netcdf-extract-items", "netcdf-extract-summary", "netcdf-extract-progress"}
    assert "batch_processing_summary.txt" in by_key["netcdf-extract-summary"].data
    assert float(by_key["netcdf-extract-progress"].data) == 100.0
    assert '"item": "b.nc"' in by_key["netcdf-extract-items"].data and "skipped" in by_key["netcdf-extract-items"].data


def test_failed_batch_ends_the_flow_run_failed_with_a_count(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_series_file(data / "a.nc", steps=3)
    (data / "bad.nc").write_bytes(b"not netcdf")
    state = netcdf_extract(directory=str(data), run=RunOptions(retries=0), return_state=True)
    assert state.is_failed()
    assert "1 of 2 items failed: bad.nc" in state.message
    assert (data / "batch_processing_summary.txt").exists()  # reports are written before failing
