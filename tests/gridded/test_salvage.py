"""The salvage: which cells are re-run, the new mask keeps the format, the backup is safe and verified."""

from __future__ import annotations

import os
import shutil

import netCDF4
import numpy as np
import pytest
import xarray as xr

from salvo.errors import UsageError
from salvo.gridded import (
    STATUS_FILL,
    backup_outputs,
    build_rerun_mask,
    count_statuses,
    read_mask,
    read_status,
    rewrite_mask,
    salvage_run,
    verify_backup,
    write_run_status,
)
from salvo.gridded.ncschema import describe_netcdf

from .conftest import ENABLED, tree_digest


@pytest.mark.parametrize(
    ("enabled", "status", "rerun"),
    [
        (1, 100, 0),
        (1, -100, 1),
        (1, -5, 1),
        (1, 0, 1),
        (1, STATUS_FILL, 1),
        (0, -100, 0),
        (0, 0, 0),
        (0, STATUS_FILL, 0),
        (0, 100, 0),
    ],
)
def test_rerun_mask_takes_enabled_cells_that_did_not_succeed(enabled, status, rerun):
    mask = np.array([[enabled, 1]])
    got = build_rerun_mask(mask, status=np.array([[status, 100]]))
    assert got.tolist() == [[rerun, 0]]


def test_rerun_mask_shape_mismatch_is_a_clear_error():
    with pytest.raises(UsageError, match=r"shape \(2, 3\) does not match run_status shape \(3, 2\)"):
        build_rerun_mask(np.ones((2, 3)), status=np.ones((3, 2)))


def test_counts_tell_failed_not_run_and_unwritten_apart():
    mask = np.array([[1, 1, 1, 1, 1, 0]])
    counts = count_statuses(mask, status=np.array([[100, -5, -100, 0, STATUS_FILL, -100]]))
    assert (counts.enabled, counts.success, counts.failed, counts.not_run, counts.unwritten) == (5, 1, 2, 1, 1)
    assert counts.to_rerun == 4


def test_unwritten_cells_read_as_the_fill_value(tmp_path):
    status = np.array([[100, STATUS_FILL], [0, -5]])
    write_run_status(tmp_path / "run_status.nc", status=status)
    assert read_status(tmp_path / "run_status.nc").tolist() == status.tolist()
    with netCDF4.Dataset(tmp_path / "run_status.nc") as ds:
        assert ds.variables["run_status"]._FillValue == STATUS_FILL


def _foreign_mask(path, fmt):
    """A mask written by another tool: other dtype, compression, extra variables and attributes."""
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        ds.setncatts({"history": "made by pyddt-runmask", "Conventions": "CF-1.5"})
        ds.createDimension("Y", 3)
        ds.createDimension("X", 4)
        gm = ds.createVariable("albers_conical_equal_area", "c")
        gm.setncatts({"grid_mapping_name": "albers_conical_equal_area", "standard_parallel": np.array([55.0, 65.0])})
        opts = {"zlib": True, "complevel": 6} if fmt.startswith("NETCDF4") else {}
        for name, dims in (("y", ("Y",)), ("x", ("X",)), ("lat", ("Y", "X")), ("lon", ("Y", "X"))):
            v = ds.createVariable(name, "f8", dims, **opts)
            v.units = "m" if len(dims) == 1 else "degrees"
            v[:] = np.arange(np.prod([3 if d == "Y" else 4 for d in dims])).reshape(
                [3 if d == "Y" else 4 for d in dims]
            )
        run = ds.createVariable("run", "i8" if fmt == "NETCDF4" else "i2", ("Y", "X"), fill_value=-1, **opts)
        run.setncatts({"grid_mapping": "albers_conical_equal_area", "note": "1 = run"})
        run[:] = np.ones((3, 4))


@pytest.mark.parametrize("fmt", ["NETCDF4", "NETCDF4_CLASSIC", "NETCDF3_64BIT_OFFSET"])
def test_new_mask_keeps_every_variable_attribute_and_encoding(tmp_path, fmt):
    original, new = tmp_path / "run-mask.nc", tmp_path / "run-mask-failed.nc"
    _foreign_mask(original, fmt)
    before = tree_digest(tmp_path)
    run = np.zeros((3, 4), dtype=int)
    run[1, 2] = 1
    rewrite_mask(original, new, run=run)
    assert describe_netcdf(new) == describe_netcdf(original)
    assert read_mask(new).tolist() == run.tolist()
    with xr.open_dataset(original) as a, xr.open_dataset(new) as b:
        xr.testing.assert_identical(a.drop_vars("run"), b.drop_vars("run"))
        assert b["run"].attrs == a["run"].attrs and b["run"].dtype == a["run"].dtype
    assert tree_digest(tmp_path)["run-mask.nc"] == before["run-mask.nc"]


def test_salvage_backs_up_and_writes_mask_of_failed_cells(runs):
    mask = runs.mask()
    status = runs.run(mask, "output", seed=3, fail_cells=[(1, 1), (2, 3), (3, 4)])
    before = tree_digest(runs.root / "output")
    lines: list[str] = []
    report = salvage_run(
        runs.root / "output",
        backup_dir=runs.root / "backup",
        original_mask=mask,
        new_mask=runs.root / "failed.nc",
        verbose=True,
        log=lines.append,
    )
    assert tree_digest(runs.root / "backup") == before
    assert (runs.root / "output").is_dir() and not any((runs.root / "output").iterdir())  # empty for the re-run
    assert (
        read_mask(runs.root / "failed.nc").tolist() == ((read_mask(mask) == 1) & (status != 100)).astype(int).tolist()
    )
    assert lines[:3] == [
        f"Salvaging run from: {runs.root / 'output'}",
        f"Creating backup at: {runs.root / 'backup'}",
        f"✓ Backup created at: {runs.root / 'backup'}",
    ]
    assert f"✓ New run-mask created at: {runs.root / 'failed.nc'}" in lines
    assert "  Number of failed cells to re-run: 3" in lines
    assert report.counts.to_rerun == 3 and report.backup.files == 7 and report.backup.methods == {"move": 7}


def test_salvage_refuses_an_existing_backup_and_writes_nothing(runs):
    mask = runs.mask()
    runs.run(mask, "output", fail_cells=[(1, 1)])
    (runs.root / "backup").mkdir()
    with pytest.raises(UsageError, match="Backup directory already exists"):
        salvage_run(
            runs.root / "output",
            backup_dir=runs.root / "backup",
            original_mask=mask,
            new_mask=runs.root / "failed.nc",
            log=lambda _: None,
        )
    assert not (runs.root / "failed.nc").exists() and not any((runs.root / "backup").iterdir())


def test_salvage_rejects_a_mask_of_another_shape_before_backing_up(runs):
    runs.run(runs.mask(), "output")
    other = runs.mask("other.nc", shape=(3, 3))
    with pytest.raises(UsageError, match=r"Run-mask shape \(3, 3\) .* does not match run_status shape \(10, 10\)"):
        salvage_run(
            runs.root / "output",
            backup_dir=runs.root / "backup",
            original_mask=other,
            new_mask=runs.root / "failed.nc",
            log=lambda _: None,
        )
    assert not (runs.root / "backup").exists()


def test_salvage_reads_run_status_from_the_given_path(runs):
    mask = runs.mask()
    runs.run(mask, "output")
    write_run_status(runs.root / "elsewhere.nc", status=np.where(read_mask(mask) == 1, STATUS_FILL, 0))
    report = salvage_run(
        runs.root / "output",
        backup_dir=runs.root / "b",
        original_mask=mask,
        new_mask=runs.root / "failed.nc",
        run_status=runs.root / "elsewhere.nc",
        log=lambda _: None,
    )
    assert report.counts.unwritten == ENABLED and read_mask(runs.root / "failed.nc").sum() == ENABLED


def test_backup_moves_by_default_and_copies_on_request(runs):
    runs.run(runs.mask(), "output")
    before = tree_digest(runs.root / "output")
    copied = backup_outputs(runs.root / "output", backup_dir=runs.root / "copied", copy=True)
    assert set(copied.methods) <= {"reflink", "copy"} and sum(copied.methods.values()) == 7
    src = (runs.root / "output" / "run_status.nc").stat()
    assert (runs.root / "copied" / "run_status.nc").stat().st_ino != src.st_ino
    assert tree_digest(runs.root / "copied") == tree_digest(runs.root / "output") == before
    moved = backup_outputs(runs.root / "output", backup_dir=runs.root / "moved")
    assert moved.methods == {"move": 7}
    assert tree_digest(runs.root / "moved") == before and list((runs.root / "output").iterdir()) == []
    assert (runs.root / "moved" / "run_status.nc").stat().st_ino == src.st_ino  # the same files, now only there


def test_verify_backup_notices_a_damaged_copy(runs):
    runs.run(runs.mask(), "output")
    backup_outputs(runs.root / "output", backup_dir=runs.root / "copied", copy=True)
    target = runs.root / "copied" / "GPP_monthly_tr.nc"
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(OSError, match="GPP_monthly_tr.nc differs"):
        verify_backup(runs.root / "output", backup_dir=runs.root / "copied")
    os.unlink(target)
    with pytest.raises(OSError, match="incomplete; missing: GPP_monthly_tr.nc"):
        verify_backup(runs.root / "output", backup_dir=runs.root / "copied")
    os.link(runs.root / "output" / "GPP_monthly_tr.nc", target)
    with pytest.raises(OSError, match="GPP_monthly_tr.nc is a hard link"):
        verify_backup(runs.root / "output", backup_dir=runs.root / "copied")


def test_backup_keeps_subfolders(runs):
    runs.run(runs.mask(), "output")
    (runs.root / "output" / "logs").mkdir()
    (runs.root / "output" / "logs" / "cell-1-1.log").write_text("done\n")
    backup_outputs(runs.root / "output", backup_dir=runs.root / "b")
    assert (runs.root / "b" / "logs" / "cell-1-1.log").read_text() == "done\n"
    shutil.rmtree(runs.root / "output")  # the seed's workflow: clear outputs before the re-run
    assert (runs.root / "b" / "logs" / "cell-1-1.log").read_text() == "done\n"
