"""dvmdostem's real layouts: outputs on y/x, run_status and restarts on Y/X, NC_CLOBBER in place, checked merges."""

from __future__ import annotations

import os

import netCDF4
import numpy as np
import pytest
import xarray as xr

from cli.main import main as salvo_main
from cli.salvage import merge_main
from salvo.errors import UsageError
from salvo.gridded import merge as merge_mod
from salvo.gridded import merge_outputs, read_mask, read_status, salvage_run
from salvo.gridded.dvmdostem import DEFAULT_OUTPUTS, FILL, SITE_MASK, site_mask, write_status
from salvo.gridded.merge import MergeVerificationError

from .conftest import ENABLED, tree_digest

pytestmark = pytest.mark.pure


def _open(path):
    with xr.open_dataset(path, decode_cf=False) as ds:
        return ds.load()


def _rerun_of(runs, status, mask, *, out="rerun", **model):
    failed = site_mask(runs.root / f"failed-{out}.nc", run=((read_mask(mask) == 1) & (status != 100)).astype("i8"))
    return runs.run(failed, out, **model)


def test_generated_files_have_the_layouts_dvmdostem_writes(runs):
    runs.run(runs.mask(), "output", fail_cells=[(1, 1)])
    out = runs.root / "output"
    for spec in DEFAULT_OUTPUTS:
        with netCDF4.Dataset(out / spec.filename) as ds:
            v = ds.variables[spec.var]
            assert ds.data_model == "NETCDF4" and v.dimensions == spec.dims() and v.dimensions[-2:] == ("y", "x")
            assert v.dtype == np.dtype(spec.dtype) and v._FillValue == FILL and v._FillValue.dtype == v.dtype
            assert {"units", "long_name"} <= set(v.ncattrs())
            assert ds.variables["time"].calendar == "365_day" and "since" in ds.variables["time"].units
            assert not ds.dimensions["time"].isunlimited()
    with netCDF4.Dataset(out / "run_status.nc") as ds:
        rs = ds.variables["run_status"]
        assert ds.data_model == "NETCDF3_CLASSIC" and rs.dimensions == ("Y", "X") and rs.dtype == np.int32
        assert (rs.success, rs.masked, rs.timeout, rs.fail, rs._FillValue) == (100, 0, -5, -100, -9999)
        assert ds.variables["total_runtime"].dimensions == ("Y", "X")
    with netCDF4.Dataset(out / "restart-tr.nc") as ds:
        assert ds.data_model == "NETCDF3_CLASSIC"
        assert ds.variables["vegc"].dimensions == ("Y", "X", "pftpart", "pft")
        assert all(v.dimensions[:2] == ("Y", "X") for v in ds.variables.values())
    assert read_mask(runs.root / "run-mask.nc").shape == read_mask(SITE_MASK).shape == (10, 10)


def test_lowercase_outputs_get_the_rerun_cells_not_the_salvaged_fill(runs):
    """Issue 10.1: outputs on y/x were copied from the salvaged run (-9999) while run_status said 100."""
    mask = runs.mask()
    status = runs.run(mask, "salvaged", fail_cells=[(4, 7), (9, 9)])
    _rerun_of(runs, status, mask)
    merge_outputs(runs.root / "salvaged", rerun_dir=runs.root / "rerun", output_dir=runs.root / "merged", log=print)
    for spec in DEFAULT_OUTPUTS:
        merged, new = _open(runs.root / "merged" / spec.filename), _open(runs.root / "rerun" / spec.filename)
        for y, x in ((4, 7), (9, 9)):
            cell = merged[spec.var].isel(y=y, x=x)
            assert (cell.values != FILL).all() and (cell.values != -7777).all(), spec.filename
            xr.testing.assert_identical(cell, new[spec.var].isel(y=y, x=x))
    assert (read_status(runs.root / "merged" / "run_status.nc")[read_mask(mask) == 1] == 100).all()


def _grid_file(path, dims, sizes, values, coords=None, fmt="NETCDF4"):
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        for d in dims:
            ds.createDimension(d, sizes[d])
        for d, c in (coords or {}).items():
            ds.createVariable(d, "f8", (d,))[:] = c
        ds.createVariable("v", "f4", dims, fill_value=np.float32(-9999))[:] = values


def test_grid_is_found_by_coordinate_values_when_names_differ(tmp_path):
    ys, xs = np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0])
    for folder, status, val in (
        ("s", [[100, -100], [100, 100], [0, 100]], 1.0),
        ("r", [[0, 100], [0, 0], [0, 0]], 2.0),
    ):
        (tmp_path / folder).mkdir()
        with netCDF4.Dataset(tmp_path / folder / "run_status.nc", "w") as ds:
            ds.createDimension("Y", 3), ds.createDimension("X", 2)
            ds.createVariable("y", "f8", ("Y",))[:] = ys
            ds.createVariable("x", "f8", ("X",))[:] = xs
            ds.createVariable("run_status", "i4", ("Y", "X"), fill_value=FILL)[:] = np.array(status)
        _grid_file(
            tmp_path / folder / "o.nc",
            ("time", "easting", "northing"),
            {"time": 2, "easting": 2, "northing": 3},
            np.full((2, 2, 3), val),
            coords={"northing": ys, "easting": xs},
        )
    report = merge_outputs(tmp_path / "s", rerun_dir=tmp_path / "r", output_dir=tmp_path / "m", log=print)
    got = _open(tmp_path / "m" / "o.nc")["v"].values
    assert got[:, 1, 0].tolist() == [2.0, 2.0]  # cell (y=0, x=1) from the re-run
    assert (np.delete(got.reshape(2, -1), 3, axis=1) == 1.0).all()
    assert report.verified["o.nc"] == ["v"]


@pytest.mark.parametrize("dims", [("time", "lat", "lon"), ("time", "rows", "cols"), ("time", "y", "lon")])
def test_grid_sized_dims_that_cannot_be_matched_are_an_error_naming_file_and_variable(tmp_path, dims):
    for folder in ("s", "r"):
        (tmp_path / folder).mkdir()
        write_status(tmp_path / folder / "run_status.nc", status=np.array([[100, -100, 100], [0, 100, 100]]))
        _grid_file(tmp_path / folder / "GPP_monthly_tr.nc", dims, dict(zip(dims, (4, 2, 3))), np.zeros((4, 2, 3)))
    with pytest.raises(UsageError, match=r"GPP_monthly_tr.nc: variable 'v' has dims .* cannot be matched"):
        merge_outputs(tmp_path / "s", rerun_dir=tmp_path / "r", output_dir=tmp_path / "m", log=print)
    assert not (tmp_path / "m").exists()


def test_a_merge_that_did_not_merge_fails_loudly_and_writes_nothing(runs, capsys, monkeypatch):
    mask = runs.mask()
    status = runs.run(mask, "salvaged", fail_cells=[(3, 3)])
    _rerun_of(runs, status, mask)
    # A merge bug: the re-run's values are never used (what the y/x mismatch did).
    monkeypatch.setattr(
        merge_mod, "_read_as", lambda var, sl, dims: np.full([s.stop - s.start for s in sl], -9999, dtype=var.dtype)
    )
    with pytest.raises(MergeVerificationError, match=r"in run_status.nc: variable 'run_status' at cell \(y=3, x=3\)"):
        merge_outputs(runs.root / "salvaged", rerun_dir=runs.root / "rerun", output_dir=runs.root / "merged", log=print)
    assert not (runs.root / "merged").exists()
    code = merge_main([str(runs.root / "salvaged"), str(runs.root / "rerun"), str(runs.root / "merged")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Merge check failed" in err and "(y=3, x=3)" in err
    assert salvo_main(["merge", str(runs.root / "salvaged"), str(runs.root / "rerun"), str(runs.root / "merged")]) == 1
    assert not (runs.root / "merged").exists()


def _clobber_in_place(folder, names):
    """What dvmdostem does to a file it writes again: NC_CLOBBER truncates the existing inode."""
    for name in names:
        path = folder / name
        if path.exists():
            with open(path, "r+b") as f:
                f.truncate()
        with netCDF4.Dataset(path, "w", clobber=True, format="NETCDF3_CLASSIC") as ds:
            ds.createDimension("Y", 1)


def test_nc_clobber_really_truncates_a_hard_linked_backup(runs):
    """The threat is real: the old hard-link backup is rewritten by the model's next run."""
    runs.run(runs.mask(), "output")
    (runs.root / "linked").mkdir()
    for p in (runs.root / "output").iterdir():
        os.link(p, runs.root / "linked" / p.name)
    before = tree_digest(runs.root / "linked")
    _clobber_in_place(runs.root / "output", ["GPP_monthly_tr.nc"])
    assert tree_digest(runs.root / "linked")["GPP_monthly_tr.nc"] != before["GPP_monthly_tr.nc"]


@pytest.mark.parametrize("copy", [False, True], ids=["move", "copy"])
def test_backup_survives_the_model_clobbering_the_old_output_paths(runs, copy):
    mask = runs.mask()
    status = runs.run(mask, "output", fail_cells=[(2, 5), (6, 1)])
    first = {n: _open(runs.root / "output" / n) for n in (s.filename for s in DEFAULT_OUTPUTS)}
    names = sorted(p.name for p in (runs.root / "output").iterdir())
    before = tree_digest(runs.root / "output")
    salvage_run(
        runs.root / "output",
        backup_dir=runs.root / "backup",
        original_mask=mask,
        new_mask=runs.root / "failed.nc",
        copy=copy,
        log=print,
    )
    assert tree_digest(runs.root / "backup") == before
    _clobber_in_place(runs.root / "output", names)  # the model starts its re-run in the same output/
    assert tree_digest(runs.root / "backup") == before
    runs.run(runs.root / "failed.nc", "output")  # ... and writes every file again, in place, with clobber
    assert tree_digest(runs.root / "backup") == before
    merge_outputs(runs.root / "backup", rerun_dir=runs.root / "output", output_dir=runs.root / "merged", log=print)
    ok = (status == 100) & (read_mask(mask) == 1)
    for name, old in first.items():
        merged = _open(runs.root / "merged" / name)
        var = name.split("_")[0]
        keep = xr.DataArray(ok, dims=("y", "x"))
        xr.testing.assert_identical(merged[var].where(keep, 0), old[var].where(keep, 0))
    assert (read_status(runs.root / "merged" / "run_status.nc")[read_mask(mask) == 1] == 100).sum() == ENABLED
