"""The netcdf-extract flow, called from Python against a real Prefect API: outcomes and resume."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flows.batch import BatchFailed
from flows.netcdf_extract import netcdf_extract
from salvo.options import RunOptions
from salvo.samples.netcdf import write_series_file
from tests.extract.scripts import command, write_script
from tests.helpers import alive, markers, wait_until


def _by_id(doc: dict) -> dict[str, dict]:
    return {i["item_id"]: i for i in doc["items"]}


def test_external_worker_outcomes(tmp_path: Path) -> None:
    data, counter = tmp_path / "data", tmp_path / "calls"
    data.mkdir()
    for name in ["ok_1.nc", "silent_1.nc", "hang_1.nc", "segv_1.nc"]:
        (data / name).write_bytes(name.encode())
    t0 = time.monotonic()
    with pytest.raises(BatchFailed) as info:
        netcdf_extract(
            directory=str(data),
            worker_command=command(write_script(tmp_path), str(counter)),
            run=RunOptions(timeout_s=2, retries=1, workers=2),
        )
    elapsed = time.monotonic() - t0
    items = _by_id(info.value.summary)
    assert items["ok_1.nc"]["status"] == "success"
    assert items["silent_1.nc"]["status"] == "silent_failure" and items["silent_1.nc"]["attempt"] == 1
    assert items["hang_1.nc"]["status"] == "timeout" and items["hang_1.nc"]["attempt"] == 1
    assert items["hang_1.nc"]["duration_s"] < 2 + 5
    assert items["segv_1.nc"]["status"] == "crashed" and items["segv_1.nc"]["signal"] == 11
    assert items["segv_1.nc"]["attempt"] == 2  # crashes may pass: retried once
    assert len(markers(counter, "segv_1.nc")) == 2 and len(markers(counter, "ok_1.nc")) == 1
    hang_pid = int(markers(counter, "hang_1.nc")[0].suffix[1:])
    assert wait_until(lambda: not alive(hang_pid), timeout=5)
    assert elapsed < 60
    # Only the successful item published an output folder; failed ones left nothing half-written.
    folders = [p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(folders) == ["ok_1_results", "runs"]  # runs/: the run's own report, kept
    assert not list(data.glob(".salvo-tmp*"))
    assert info.value.summary["summary"]["failed"] == 3


def test_builtin_worker_statuses_resume_edit_and_force(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_series_file(data / "good_a.nc", steps=4, seed=1)
    write_series_file(data / "good_b.nc", steps=5, seed=2)
    write_series_file(data / "single.nc", steps=1)
    (data / "corrupt.nc").write_bytes(b"CDF\x01" + os.urandom(512))
    out = tmp_path / "plots"
    first = netcdf_extract(directory=str(data), output_dir=str(out), fail_on_error=False, run=RunOptions(retries=0))
    items = _by_id(first)
    assert {k: v["status"] for k, v in items.items()} == {
        "corrupt.nc": "error",
        "good_a.nc": "success",
        "good_b.nc": "success",
        "single.nc": "skipped",
    }
    assert items["single.nc"]["reason"] == "only 1 time step"
    assert "cannot read" in items["corrupt.nc"]["reason"]
    assert (out / "good_a").is_dir() and not (out / "corrupt").exists()
    assert Path(first["reports"]["text"]).read_text().count("good_") >= 2
    mtime = (out / "good_a" / "GPP_timeseries.png").stat().st_mtime_ns

    second = netcdf_extract(directory=str(data), output_dir=str(out), fail_on_error=False, run=RunOptions(retries=0))
    again = _by_id(second)
    assert [k for k, v in again.items() if v["cached"]] == ["good_a.nc", "good_b.nc", "single.nc"]
    assert again["corrupt.nc"]["status"] == "error" and not again["corrupt.nc"]["cached"]
    assert (out / "good_a" / "GPP_timeseries.png").stat().st_mtime_ns == mtime

    write_series_file(data / "good_b.nc", steps=9, seed=3)  # edited content: processed again
    third = _by_id(
        netcdf_extract(directory=str(data), output_dir=str(out), fail_on_error=False, run=RunOptions(retries=0))
    )
    assert third["good_b.nc"]["status"] == "success" and not third["good_b.nc"]["cached"]
    assert third["good_b.nc"]["metrics"]["time_steps"] == 9
    assert third["good_a.nc"]["cached"]

    forced = _by_id(
        netcdf_extract(
            directory=str(data), output_dir=str(out), fail_on_error=False, run=RunOptions(retries=0, force=True)
        )
    )
    assert not any(v["cached"] for v in forced.values())
    assert (out / "good_a" / "GPP_timeseries.png").stat().st_mtime_ns != mtime


def test_deleted_outputs_are_produced_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_series_file(data / "a.nc", steps=3)
    netcdf_extract(directory=str(data))
    import shutil

    shutil.rmtree(data / "a_results")
    doc = netcdf_extract(directory=str(data))
    assert not doc["items"][0]["cached"] and (data / "a_results").is_dir()


def test_skip_existing_does_not_run_the_worker(tmp_path: Path) -> None:
    data, counter = tmp_path / "data", tmp_path / "calls"
    data.mkdir()
    for name in ["ok_1.nc", "ok_2.nc"]:
        (data / name).write_bytes(name.encode())
    (data / "ok_1_results").mkdir()
    (data / "ok_1_results" / "old.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"1" * 32)
    doc = netcdf_extract(
        directory=str(data), worker_command=command(write_script(tmp_path), str(counter)), skip_existing=True
    )
    items = _by_id(doc)
    assert items["ok_1.nc"]["status"] == "skipped" and "output exists" in items["ok_1.nc"]["reason"]
    assert items["ok_2.nc"]["status"] == "success"
    assert [m.name.split(".nc")[0] for m in markers(counter)] == ["ok_2"]
    assert (data / "ok_1_results" / "old.png").exists()  # never overwritten
