"""Pipeline flows on an existing Dask cluster: items run on the cluster's worker processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from salvo.options import RunOptions
from salvo.samples.netcdf import write_series_file
from tests.cluster.conftest import Cluster
from tests.deploy.conftest import MARKER_WORKER
from tests.helpers import alive, markers, wait_until


def _ran_on(marks: Path, cluster: Cluster) -> dict[str, int]:
    """For each marker (one per run of an item), the Dask worker process it ran under."""
    by_pid = {pid: addr for addr, pid in cluster.worker_pids.items()}
    out = {}
    for m in markers(marks):
        doc = json.loads(m.read_text())
        hits = [p for p in doc["ancestors"] if p in by_pid]
        assert len(hits) == 1, f"{m.name} ran outside the cluster: ancestors {doc['ancestors']}, workers {by_pid}"
        out[m.name.split(".")[0]] = hits[0]
    return out


def test_netcdf_extract_runs_its_items_on_the_cluster_workers(dask_cluster: Cluster, tmp_path: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.netcdf_extract import netcdf_extract

    files = [write_series_file(tmp_path / "in" / f"c{i}.nc", steps=3, seed=i, ny=2, nx=2) for i in range(4)]
    marks = tmp_path / "markers"
    state = netcdf_extract(
        directory=str(tmp_path / "in"),
        run=RunOptions(dask_address=dask_cluster.address, retries=0),
        return_state=True,
        worker_command=f"{sys.executable} {MARKER_WORKER} {{input}} {{output_dir}} {marks} 0.5",
    )
    doc = state.result()
    assert doc["summary"]["total"] == 4 and doc["summary"]["failed"] == 0
    ran_on = _ran_on(marks, dask_cluster)
    assert len(markers(marks)) == len(files) and sorted(ran_on) == sorted(
        f.stem for f in files
    )  # once each, on the cluster
    assert all((f.parent / f"{f.stem}_results" / f"{f.stem}.png").is_file() for f in files)
    # The Dask workers reported their task runs to the flow's API (not to an API of their own).
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    assert sorted(t.name for t in tasks) == sorted(f.name for f in files)
    assert all(t.state.is_completed() for t in tasks)


def test_subject_batch_runs_its_subjects_on_the_cluster_workers(dask_cluster: Cluster, tmp_path: Path) -> None:
    from flows.subject_batch import subject_batch
    from salvo.subjects.samples import make_manifest_study

    manifest = make_manifest_study(tmp_path / "study", subjects=3, shape=(4, 4, 3))
    marks = tmp_path / "markers"
    doc = subject_batch(
        out=str(tmp_path / "out"),
        manifest=str(manifest),
        run=RunOptions(dask_address=dask_cluster.address, retries=0),
        pipeline_command=f"{sys.executable} {MARKER_WORKER} {{id}} {{work_dir}} {marks}",
    )
    assert doc["summary"]["total"] == 3 and doc["summary"]["failed"] == 0
    assert len(markers(marks)) == 3 and sorted(_ran_on(marks, dask_cluster)) == ["sub-001", "sub-002", "sub-003"]


def test_stopping_the_cluster_leaves_no_process(dask_cluster: Cluster) -> None:
    pids = dask_cluster.processes.descendants()
    assert set(dask_cluster.worker_pids.values()) <= pids
    left = dask_cluster.processes.stop()
    assert left == []
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout=10)
