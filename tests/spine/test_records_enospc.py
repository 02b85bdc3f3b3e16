"""A full disk under the records: a clear error, the finished outputs kept, recorded by the next run.

The state location is a real, tiny tmpfs (mounted by the test, as root); the worker itself fills
it after finishing its item, so the record of that item is the write that meets ENOSPC.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from salvo.options import RunOptions
from salvo.samples.netcdf import write_series_file
from tests.helpers import markers

FILL_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    src, out, marks, fill_dir, fill_stem = sys.argv[1:6]
    Path(marks).mkdir(parents=True, exist_ok=True)
    (Path(marks) / f"{Path(src).stem}.{os.getpid()}.{time.monotonic_ns()}").touch()
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / (Path(src).stem + ".png")).write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + Path(src).read_bytes()[:32])
    if Path(src).stem == fill_stem and not (Path(fill_dir) / "filler").exists():
        fd = os.open(Path(fill_dir) / "filler", os.O_WRONLY | os.O_CREAT)  # fill the state's disk to the last byte
        try:
            while True:
                os.write(fd, b"\\0" * 4096)
        except OSError:
            os.close(fd)
    """
)


@pytest.fixture
def tiny_disk(tmp_path: Path):  # noqa: ANN201
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_while_recording_keeps_outputs_and_the_next_run_records_them(
    tiny_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.netcdf_extract import netcdf_extract

    monkeypatch.setenv("SALVO_SPOOL_DIR", str(tmp_path / "spool"))
    files = [write_series_file(tmp_path / "in" / f"e{i}.nc", steps=3, seed=i, ny=2, nx=3) for i in range(3)]
    script = tmp_path / "fill_worker.py"
    script.write_text(FILL_WORKER)
    marks, state = tmp_path / "markers", tiny_disk / "state"
    command = f"{sys.executable} {script} {{input}} {{output_dir}} {marks} {tiny_disk} e0"
    params = {
        "directory": str(tmp_path / "in"),
        "output_dir": str(tmp_path / "out"),
        "state": str(state),
        "run": RunOptions(retries=0),
        "worker_command": command,
        "fail_on_error": False,
    }

    first = netcdf_extract(**params)

    by_id = {i["item_id"]: i for i in first["items"]}
    assert by_id["e0.nc"]["status"] != "success"
    assert "no space left" in by_id["e0.nc"]["reason"].lower()
    assert "outputs are kept" in by_id["e0.nc"]["reason"]
    assert (tmp_path / "out" / "e0" / "e0.png").exists() or list((tmp_path / "out").rglob("e0.png"))  # kept
    assert len(markers(marks, "e0")) == 1

    os.unlink(tiny_disk / "filler")  # the user frees space, and runs the batch again
    second = netcdf_extract(**params)

    by_id = {i["item_id"]: i for i in second["items"]}
    assert second["summary"]["failed"] == 0
    assert by_id["e0.nc"]["cached"] is True  # recorded from the spool, not run again
    assert len(markers(marks, "e0")) == 1
    assert all(len(markers(marks, f.stem)) == 1 for f in files)
    assert not list((tmp_path / "spool").rglob("*.json"))
