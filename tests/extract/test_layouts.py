"""Layouts that used to destroy data (issue 15), run for real: each is handled or refused, and the
inputs are intact afterwards. Also: an unreadable input is that item's error, not the batch's."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from flows.netcdf_extract import netcdf_extract
from salvo.errors import UsageError
from salvo.options import RunOptions
from tests.extract.scripts import command, write_script
from tests.helpers import markers


def _inputs(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.blake2b(p.read_bytes()).hexdigest()
        for p in folder.rglob("*.nc")
        if p.is_file()
    }


def _ids(doc: dict) -> list[str]:
    return sorted(i["item_id"] for i in doc["items"])


def _statuses(doc: dict) -> dict[str, str]:
    return {i["item_id"]: i["status"] for i in doc["items"]}


def test_file_beside_a_folder_of_the_same_name_default_layout_keeps_both(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok_a.nc").write_bytes(b"a")
    (data / "ok_a").mkdir()  # a folder named like the file's stem, holding an input
    (data / "ok_a" / "ok_b.nc").write_bytes(b"b")
    before = _inputs(data)
    cmd = command(write_script(tmp_path), str(tmp_path / "calls"))
    doc = netcdf_extract(directory=str(data), recursive=True, worker_command=cmd, run=RunOptions(retries=0))
    assert _statuses(doc) == {"ok_a.nc": "success", "ok_a/ok_b.nc": "success"}
    assert (data / "ok_a_results" / "plot.png").is_file() and (data / "ok_a" / "ok_b_results" / "plot.png").is_file()
    assert _inputs(data) == before


def test_mirrored_layout_that_would_nest_outputs_is_refused_before_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "ok_a").mkdir(parents=True)
    (data / "ok_a.nc").write_bytes(b"a")
    (data / "ok_a" / "ok_b.nc").write_bytes(b"b")
    before = _inputs(data)
    cmd = command(write_script(tmp_path), str(tmp_path / "calls"))
    for out in (tmp_path / "out", data):  # a separate output folder, and the input folder itself
        with pytest.raises(UsageError, match="ok_a"):
            netcdf_extract(
                directory=str(data), recursive=True, output_dir=str(out), worker_command=cmd, run=RunOptions(retries=0)
            )
        assert _inputs(data) == before
    assert not markers(tmp_path / "calls")  # nothing ran
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("recursive", [False, True])
@pytest.mark.parametrize("inside", ["output-dir", "beside"])
def test_outputs_inside_the_input_folder_are_never_inputs_on_the_next_run(
    tmp_path: Path, recursive: bool, inside: str
) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for name in ("ok_1.nc", "ok_2.nc", "sub/ok_3.nc"):
        (data / name).write_bytes(name.encode())
    cmd = command(write_script(tmp_path), str(tmp_path / "calls"))
    out = str(data / "plots") if inside == "output-dir" else None
    first = netcdf_extract(
        directory=str(data),
        pattern="*",
        recursive=recursive,
        output_dir=out,
        worker_command=cmd,
        run=RunOptions(retries=0),
    )
    expected = ["ok_1.nc", "ok_2.nc"] + (["sub/ok_3.nc"] if recursive else [])
    assert _ids(first) == expected
    second = netcdf_extract(
        directory=str(data),
        pattern="*",
        recursive=recursive,
        output_dir=out,
        worker_command=cmd,
        run=RunOptions(retries=0),
    )
    assert _ids(second) == expected  # not plot.png, not the reports, not .salvo/ records
    assert all(i["cached"] for i in second["items"])


@pytest.mark.parametrize("kind", ["dangling-symlink", "fifo", "proc-mem"])
def test_an_unreadable_input_is_its_own_error_and_the_others_succeed(tmp_path: Path, kind: str) -> None:
    # We run as root: chmod 000 would not stop a read, so use inputs that fail for root too.
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok_1.nc").write_bytes(b"1")
    (data / "ok_2.nc").write_bytes(b"2")
    bad = data / "ok_bad.nc"
    if kind == "dangling-symlink":
        bad.symlink_to(tmp_path / "gone.nc")
    elif kind == "fifo":
        os.mkfifo(bad)  # opening it to read would block forever
    else:
        bad.symlink_to("/proc/self/mem")  # a regular file whose first byte cannot be read (EIO)
        with pytest.raises(OSError):
            with open(bad, "rb") as fh:
                fh.read(1)
    cmd = command(write_script(tmp_path), str(tmp_path / "calls"))
    doc = netcdf_extract(directory=str(data), worker_command=cmd, run=RunOptions(retries=2), fail_on_error=False)
    items = {i["item_id"]: i for i in doc["items"]}
    assert {k: v["status"] for k, v in items.items()} == {
        "ok_1.nc": "success",
        "ok_2.nc": "success",
        "ok_bad.nc": "error",
    }
    assert "cannot read" in items["ok_bad.nc"]["reason"] and items["ok_bad.nc"]["attempt"] == 1
    assert not markers(tmp_path / "calls", "ok_bad.nc*")  # never handed to the worker
    assert doc["summary"]["failed"] == 1
