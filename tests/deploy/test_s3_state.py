"""Resume records on S3 (a real moto endpoint): what lets workers on different machines share them."""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo.extract import extract_worker, plan_items
from salvo.fingerprint import item_key
from salvo.options import RunOptions
from salvo.samples.netcdf import write_series_file
from tests.deploy.conftest import MARKER_WORKER
from tests.helpers import markers


def test_netcdf_extract_resumes_from_records_on_s3(
    s3_endpoint: str, s3_url: str, s3_fs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    import sys

    from flows.netcdf_extract import netcdf_extract

    # The standard AWS chain gives s3fs the endpoint, as it would give real credentials on a cluster.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    files = [write_series_file(tmp_path / "in" / f"s3_{i}.nc", steps=3 + i, seed=i, ny=2, nx=3) for i in range(3)]
    marks = tmp_path / "markers"
    params = {
        "directory": str(tmp_path / "in"),
        "state": s3_url,
        "run": RunOptions(retries=0),
        "worker_command": f"{sys.executable} {MARKER_WORKER} {{input}} {{output_dir}} {marks}",
    }

    first = netcdf_extract(**params)
    second = netcdf_extract(**params)

    assert first["summary"]["total"] == 3 and first["summary"]["failed"] == 0
    assert [i["cached"] for i in first["items"]] == [False, False, False]
    assert [i["cached"] for i in second["items"]] == [True, True, True]
    assert second["summary"]["resumed"] == 3
    assert all(len(markers(marks, f.stem)) == 1 for f in files)  # run once, by the first batch only
    bucket_path = s3_url.removeprefix("s3://")
    # One record object per item directly under records/ (records/index/ and records/claims/ are not records).
    records = [p for p in s3_fs.find(bucket_path) if not p.endswith("/") and p.rsplit("/", 2)[-2] == "records"]
    items = plan_items(files, directory=tmp_path / "in", worker_command=params["worker_command"])
    keys = {
        item_key(it, worker=extract_worker(params["worker_command"]), settings={"pipeline": "netcdf-extract"})
        for it in items
    }
    assert {r.rsplit("/", 1)[1] for r in records} == keys  # one record per item, named by its content key
    assert not list((tmp_path / "in").glob(".salvo/records/*"))  # nothing fell back to the local folder
