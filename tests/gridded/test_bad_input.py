"""Bad input to `salvo recover` / `salvage` / `merge` and `pyddt-salvage` / `pyddt-merge`: refused up front.

Every case: exit 2, one line on stderr, no traceback, and every file already there (outputs,
backups, masks) byte for byte unchanged.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from cli.salvage import merge_main, salvage_main
from salvo.gridded.dvmdostem import site_mask, write_run
from tests.badinput import assert_refused

pytestmark = pytest.mark.pure

MODEL = f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}}"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A run-mask, a partly failed output/, an earlier backup/, a rerun/ and a used merged/ folder."""
    status = np.full((10, 10), 100)
    status[2, 3], status[5, 5] = -100, -9999
    site_mask(tmp_path / "run-mask.nc")
    write_run(tmp_path / "output", status=status, years=1)
    site_mask(tmp_path / "output" / "run-mask.nc")  # a mask kept with the outputs (refused as --mask of recover)
    write_run(tmp_path / "backup", status=status, years=1)
    write_run(tmp_path / "rerun", status=np.where(status == 100, 0, 100), years=1)
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "keep.txt").write_text("earlier merge\n")
    (tmp_path / "afile").write_text("not a folder\n")
    os.mkfifo(tmp_path / "fifo.nc")
    (tmp_path / "folder.nc").mkdir()
    return tmp_path


def _recover(
    site: Path, *, model: str = MODEL, mask: str = "run-mask.nc", output: str = "output", extra=()
) -> list[str]:
    return ["recover", "--model-command", model, "--mask", str(site / mask), "--output", str(site / output), *extra]


# (name, argv builder, text the one-line error must contain, entry point)
CASES = [
    ("recover-unbalanced-quote", lambda s: _recover(s, model="python -c 'print(1)"), "cannot be parsed", None),
    (
        "recover-missing-program",
        lambda s: _recover(s, model="no-such-dvmdostem -p 10 -l monitor"),
        "program not found",
        None,
    ),
    (
        "recover-mask-inside-output",
        lambda s: _recover(s, mask="output/run-mask.nc"),
        "must not be inside --output",
        None,
    ),
    ("recover-timeout-negative", lambda s: _recover(s, extra=("--timeout", "-1")), "--timeout", None),
    ("recover-timeout-nan", lambda s: _recover(s, extra=("--timeout", "nan")), "--timeout", None),
    ("recover-timeout-inf", lambda s: _recover(s, extra=("--timeout", "inf")), "--timeout", None),
    ("recover-timeout-zero", lambda s: _recover(s, extra=("--timeout", "0")), "--timeout", None),
    ("recover-mask-missing", lambda s: _recover(s, mask="nope.nc"), "Run-mask not found", None),
    ("recover-mask-fifo", lambda s: _recover(s, mask="fifo.nc"), "not a regular file", None),
    ("recover-mask-folder", lambda s: _recover(s, mask="folder.nc"), "is a folder", None),
    ("recover-output-is-a-file", lambda s: _recover(s, output="afile"), "is a file", None),
    ("recover-max-rounds-zero", lambda s: _recover(s, extra=("--max-rounds", "0")), "--max-rounds", None),
    ("recover-max-rounds-text", lambda s: _recover(s, extra=("--max-rounds", "many")), "--max-rounds", None),
    (
        "recover-work-dir-inside-output",
        lambda s: _recover(s, extra=("--work-dir", str(s / "output" / "w"))),
        "must be outside the output folder",
        None,
    ),
    (
        "salvage-backup-exists",
        lambda s: [
            "salvage",
            str(s / "output"),
            str(s / "backup"),
            "--original-mask",
            str(s / "run-mask.nc"),
            "--new-mask",
            str(s / "failed.nc"),
        ],
        "Backup directory already exists",
        None,
    ),
    (
        "salvage-output-is-a-file",
        lambda s: [
            "salvage",
            str(s / "afile"),
            str(s / "b2"),
            "--original-mask",
            str(s / "run-mask.nc"),
            "--new-mask",
            str(s / "failed.nc"),
        ],
        "is not a folder",
        None,
    ),
    (
        "salvage-mask-fifo",
        lambda s: [
            str(s / "output"),
            str(s / "b2"),
            "--original-mask",
            str(s / "fifo.nc"),
            "--new-mask",
            str(s / "failed.nc"),
        ],
        "not a regular file",
        salvage_main,
    ),
    (
        "salvage-new-mask-is-a-folder",
        lambda s: [
            str(s / "output"),
            str(s / "b2"),
            "--original-mask",
            str(s / "run-mask.nc"),
            "--new-mask",
            str(s / "folder.nc"),
        ],
        "is a folder",
        salvage_main,
    ),
    (
        "salvage-new-mask-inside-output",
        lambda s: [
            str(s / "output"),
            str(s / "b2"),
            "--original-mask",
            str(s / "run-mask.nc"),
            "--new-mask",
            str(s / "output" / "f.nc"),
        ],
        "must not be inside the output directory",
        salvage_main,
    ),
    (
        "salvage-backup-inside-output",
        lambda s: [
            str(s / "output"),
            str(s / "output" / "bk"),
            "--original-mask",
            str(s / "run-mask.nc"),
            "--new-mask",
            str(s / "failed.nc"),
        ],
        "must not be inside the output directory",
        salvage_main,
    ),
    (
        "salvage-new-mask-is-the-original",
        lambda s: [
            str(s / "output"),
            str(s / "b2"),
            "--original-mask",
            str(s / "run-mask.nc"),
            "--new-mask",
            str(s / "run-mask.nc"),
        ],
        "must differ from --original-mask",
        salvage_main,
    ),
    (
        "salvage-run-status-missing",
        lambda s: [
            str(s / "output"),
            str(s / "b2"),
            "--original-mask",
            str(s / "run-mask.nc"),
            "--new-mask",
            str(s / "failed.nc"),
            "--run-status",
            str(s / "no.nc"),
        ],
        "not found",
        salvage_main,
    ),
    ("salvage-missing-required-flag", lambda s: [str(s / "output"), str(s / "b2")], "--original-mask", salvage_main),
    (
        "merge-output-not-empty",
        lambda s: ["merge", str(s / "backup"), str(s / "rerun"), str(s / "merged")],
        "must not exist or must be empty",
        None,
    ),
    (
        "merge-output-is-the-salvaged",
        lambda s: [str(s / "backup"), str(s / "rerun"), str(s / "backup")],
        "must not exist or must be empty",
        merge_main,
    ),
    (
        "merge-output-inside-rerun",
        lambda s: [str(s / "backup"), str(s / "rerun"), str(s / "rerun" / "m")],
        "inside",
        merge_main,
    ),
    ("merge-salvaged-missing", lambda s: [str(s / "nope"), str(s / "rerun"), str(s / "m2")], "not found", merge_main),
    (
        "merge-rerun-without-status",
        lambda s: ["merge", str(s / "backup"), str(s / "merged"), str(s / "m2")],
        "run_status.nc not found",
        None,
    ),
    (
        "merge-output-is-a-file",
        lambda s: ["merge", str(s / "backup"), str(s / "rerun"), str(s / "afile")],
        "is a file",
        None,
    ),
]


@pytest.mark.parametrize(("name", "argv", "mentions", "entry"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_nothing_changes(site, capsys, name, argv, mentions, entry):
    err = assert_refused(argv(site), capsys, keep=[site], mentions=mentions, main=entry)
    assert str(site / "fifo.nc") not in err or "fifo" in name


def test_a_grid_that_cannot_be_matched_is_refused_before_anything_is_written(site, capsys):
    import netCDF4

    for folder in ("backup", "rerun"):
        with netCDF4.Dataset(site / folder / "ALD_yearly_tr.nc", "w") as ds:
            ds.createDimension("time", 1), ds.createDimension("lat", 10), ds.createDimension("lon", 10)
            ds.createVariable("ALD", "f4", ("time", "lat", "lon"))[:] = 1.0
    assert_refused(
        [str(site / "backup"), str(site / "rerun"), str(site / "m3")],
        capsys,
        keep=[site],
        mentions="ALD_yearly_tr.nc: variable 'ALD'",
        main=merge_main,
    )
    assert not (site / "m3").exists()
