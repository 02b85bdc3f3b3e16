"""A seed-era `batch_resume.txt` is honoured by `--resume` (issue 16): the files it lists whose plots
exist are imported as finished, not processed again, and their plots are not replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.netcdf_extract import netcdf_extract
from salvo.options import RunOptions
from tests.extract.scripts import command, write_script
from tests.helpers import markers

OLD_PLOT = b"\x89PNG\r\n\x1a\n" + b"made by the seed" * 8


def _seed_era(tmp_path: Path) -> Path:
    """What the seed left: four inputs, plots for two, and its resume list in its working directory."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(1, 5):
        (data / f"ok_{i}.nc").write_bytes(f"input {i}".encode())
    for i in (1, 2):
        (data / f"ok_{i}_results").mkdir()
        (data / f"ok_{i}_results" / "plot.png").write_bytes(OLD_PLOT)
    # The seed wrote each file as its glob found it; ok_3 was processed but left no plot (it failed).
    (tmp_path / "batch_resume.txt").write_text(f"data/ok_1.nc\n{data / 'ok_2.nc'}\n./data/ok_3.nc\n")
    return data


def _tools(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir(exist_ok=True)
    return tmp_path / "tools"


def _by_id(doc: dict) -> dict[str, dict]:
    return {i["item_id"]: i for i in doc["items"]}


def test_seed_batch_resume_is_imported_with_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _seed_era(tmp_path)
    monkeypatch.chdir(tmp_path)  # where the seed ran
    calls = tmp_path / "calls"
    cmd = command(write_script(_tools(tmp_path)), str(calls))
    mtimes = {i: (data / f"ok_{i}_results" / "plot.png").stat().st_mtime_ns for i in (1, 2)}

    doc = netcdf_extract(directory="data", worker_command=cmd, resume=True, run=RunOptions(retries=0))
    items = _by_id(doc)
    assert {k: v["status"] for k, v in items.items()} == {f"ok_{i}.nc": "success" for i in range(1, 5)}
    for i in (1, 2):
        assert items[f"ok_{i}.nc"]["cached"] and "batch_resume.txt" in items[f"ok_{i}.nc"]["reason"]
        assert (data / f"ok_{i}_results" / "plot.png").read_bytes() == OLD_PLOT
        assert (data / f"ok_{i}_results" / "plot.png").stat().st_mtime_ns == mtimes[i]
    assert sorted(m.name.split(".nc")[0] for m in markers(calls)) == [
        "ok_3",
        "ok_4",
    ]  # listed without plots, not listed
    assert doc["summary"]["resumed"] == 2

    # Imported for good: a later run, even without --resume, does not run them either.
    again = _by_id(netcdf_extract(directory="data", worker_command=cmd, run=RunOptions(retries=0)))
    assert all(v["cached"] for v in again.values())
    assert len(markers(calls)) == 2

    # Once imported, the seed's list no longer hides an edit: an edited input is processed again.
    (data / "ok_1.nc").write_bytes(b"input 1, edited")
    third = _by_id(netcdf_extract(directory="data", worker_command=cmd, resume=True, run=RunOptions(retries=0)))
    assert not third["ok_1.nc"]["cached"] and third["ok_1.nc"]["status"] == "success"
    assert third["ok_2.nc"]["cached"]
    assert (data / "ok_1_results" / "plot.png").read_bytes() != OLD_PLOT


def test_without_resume_the_seed_list_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _seed_era(tmp_path)
    monkeypatch.chdir(tmp_path)
    calls = tmp_path / "calls"
    doc = netcdf_extract(
        directory=str(data),
        worker_command=command(write_script(_tools(tmp_path)), str(calls)),
        run=RunOptions(retries=0),
    )
    assert not any(i["cached"] for i in doc["items"])
    assert len(markers(calls)) == 4


def test_salvos_own_resume_list_never_hides_an_edit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok_1.nc").write_bytes(b"one")
    calls = tmp_path / "calls"
    cmd = command(write_script(tmp_path), str(calls))
    netcdf_extract(directory=str(data), worker_command=cmd, resume=True, run=RunOptions(retries=0))
    assert (data / "batch_resume.txt").read_text() == "ok_1.nc\n"  # the seed's format: one finished file per line
    (data / "ok_1.nc").write_bytes(b"one, edited")
    doc = netcdf_extract(directory=str(data), worker_command=cmd, resume=True, run=RunOptions(retries=0))
    assert not doc["items"][0]["cached"]
    assert len(markers(calls)) == 2


def test_batch_resume_txt_is_saved_every_5_files_and_survives_a_kill(tmp_path: Path, child_env: dict) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.helpers import wait_until

    data = tmp_path / "data"
    data.mkdir()
    for i in range(1, 6):
        (data / f"ok_{i}.nc").write_bytes(f"{i}".encode())
    (data / "slow_9.nc").write_bytes(b"9")  # sorts last, and is still running when we kill the batch
    calls = tmp_path / "calls"
    cmd = command(write_script(_tools(tmp_path)), str(calls))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "extract", "--directory", str(data), "--worker-command", cmd],
        env={**child_env, "SLOW_SECONDS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: bool(markers(calls, "slow_9.nc*")), timeout=180), (
            "the batch never reached its 6th file"
        )
        resume = data / "batch_resume.txt"
        assert wait_until(resume.exists, timeout=10)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert resume.read_text().splitlines() == [f"ok_{i}.nc" for i in range(1, 6)]
