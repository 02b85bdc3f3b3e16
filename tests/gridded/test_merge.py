"""The merge: re-run values where the re-run succeeded, salvaged values elsewhere, format kept."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salvo.errors import UsageError
from salvo.gridded import STATUS_FILL, merge_outputs, read_mask, read_merge_source, read_status, write_run_mask
from salvo.gridded import merge as merge_mod
from salvo.gridded.dvmdostem import site_mask, write_status
from salvo.gridded.merge import MergeVerificationError, plan_chunks
from salvo.gridded.ncschema import describe_netcdf

from tests.helpers import PUBLIC_FIXTURES

from .conftest import ENABLED, tree_digest

QUIET = {"log": lambda _: None}


def _open(path: Path) -> xr.Dataset:
    return xr.open_dataset(path, decode_cf=False).load()


def _recovered(runs, **model):
    """Original run with failures, salvaged by hand, re-run of the failed cells: (salvaged, rerun) folders."""
    mask = runs.mask()
    status = runs.run(mask, "salvaged", **model)
    rerun_mask = write_run_mask(runs.root / "failed.nc", run=((read_mask(mask) == 1) & (status != 100)).astype("i4"))
    runs.run(rerun_mask, "rerun", **model)
    return runs.root / "salvaged", runs.root / "rerun"


def test_recovered_run_equals_a_run_that_never_failed(runs):
    salv, rerun = _recovered(runs, seed=5, fail_fraction=0.4)
    before = {**tree_digest(salv), **{f"r/{k}": v for k, v in tree_digest(rerun).items()}}
    lines: list[str] = []
    report = merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", verbose=True, log=lines.append)
    runs.run(runs.mask("clean-mask.nc"), "clean", state=runs.root / "clean-state.json")
    for f in sorted((runs.root / "clean").glob("*.nc")):
        merged = _open(runs.root / "merged" / f.name)
        if f.name == "run_status.nc":
            merged = merged.drop_vars("merge_source")
        xr.testing.assert_identical(merged, _open(f))
        header = describe_netcdf(runs.root / "merged" / f.name)
        header["vars"].pop("merge_source", None)
        assert header == describe_netcdf(salv / f.name), f.name
    assert report.total_success == ENABLED and report.rerun_success == ENABLED - report.salvaged_success > 0
    assert lines[:3] == [
        f"Salvaged run - successful cells: {report.salvaged_success}",
        f"Rerun - successful cells: {report.rerun_success}",
        "Found 6 files to merge",
    ]
    assert "  Merging: restart-tr.nc" in lines and "  Merging: GPP_monthly_tr.nc" in lines
    assert lines[-3:] == ["✓ Merge complete", "  Merged: 6 files", f"  Total successful cells: {ENABLED}"]
    assert report.verified["GPP_monthly_tr.nc"] == ["GPP"] and "vegc" in report.verified["restart-tr.nc"]
    assert {**tree_digest(salv), **{f"r/{k}": v for k, v in tree_digest(rerun).items()}} == before


def test_restart_files_are_merged_across_their_own_dim_order(runs):
    salv, rerun = _recovered(runs, fail_cells=[(2, 3)])
    merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    merged, old, new = (_open(d / "restart-tr.nc") for d in (runs.root / "merged", salv, rerun))
    assert merged["vegcov"].dims == ("Y", "X", "pft")
    assert (
        old["vegcov"][2, 3].values.tolist() == [-7777.0] * 10 or old["vegcov"][2, 3].values.tolist() == [-9999.0] * 10
    )
    xr.testing.assert_identical(merged["vegcov"][2, 3], new["vegcov"][2, 3])
    xr.testing.assert_identical(merged["TSsoil"][1, 1], old["TSsoil"][1, 1])


def test_cells_the_rerun_did_not_run_or_never_wrote_keep_salvaged_values(runs):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1), (1, 2)], fail_runs=2)
    status = read_status(rerun / "run_status.nc")
    assert status[1, 1] < 0 and status[1, 2] < 0 and status[3, 3] == 0
    with netCDF4.Dataset(rerun / "run_status.nc", "a") as ds:  # the re-run died before writing (1, 2)
        ds.variables["run_status"][1, 2] = STATUS_FILL
    merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    merged, old = _open(runs.root / "merged" / "GPP_monthly_tr.nc"), _open(salv / "GPP_monthly_tr.nc")
    xr.testing.assert_identical(merged, old)
    assert read_status(runs.root / "merged" / "run_status.nc").tolist() == read_status(salv / "run_status.nc").tolist()
    assert read_merge_source(runs.root / "merged" / "run_status.nc").max() == 0


def test_merge_source_counts_rerun_rounds(runs):
    mask = runs.mask()
    runs.run(mask, "salvaged", fail_cells=[(1, 1), (2, 2)])
    first = site_mask(runs.root / "m1.nc", run=(np.arange(100).reshape(10, 10) == 11).astype("i8"))  # (1, 1) only
    runs.run(first, "rerun1")
    merge_outputs(runs.root / "salvaged", rerun_dir=runs.root / "rerun1", output_dir=runs.root / "merged1", **QUIET)
    second = site_mask(runs.root / "m2.nc", run=(np.arange(100).reshape(10, 10) == 22).astype("i8"))
    runs.run(second, "rerun2")
    report = merge_outputs(
        runs.root / "merged1", rerun_dir=runs.root / "rerun2", output_dir=runs.root / "merged2", **QUIET
    )
    source = read_merge_source(runs.root / "merged2" / "run_status.nc")
    assert report.rerun_index == 2
    assert source[1, 1] == 1 and source[2, 2] == 2 and int(source.sum()) == 3
    assert read_status(runs.root / "merged2" / "run_status.nc")[read_mask(mask) == 1].tolist() == [100] * ENABLED


def test_file_missing_from_rerun_is_an_error_before_anything_is_written(runs):
    """Issue 22.3: a missing file was a warning and the merged run_status said 100 for cells it did not have."""
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    (rerun / "VEGC_yearly_tr.nc").unlink()
    before = tree_digest(salv), tree_digest(rerun)
    with pytest.raises(UsageError, match=r"File not found in rerun: VEGC_yearly_tr.nc .*--allow-missing"):
        merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    assert not (runs.root / "merged").exists() and (tree_digest(salv), tree_digest(rerun)) == before


def test_different_time_dimension_is_an_error_naming_file_and_dimension(runs):
    mask = runs.mask()
    runs.run(mask, "salvaged", fail_cells=[(1, 1)])
    runs.spec = type(runs.spec)(years=3, layers=3)
    runs.run(mask, "rerun")
    with pytest.raises(UsageError, match=r"in CMTNUM_yearly_tr.nc: dimension 'time' has size 2 .* and 3 in the re-run"):
        merge_outputs(runs.root / "salvaged", rerun_dir=runs.root / "rerun", output_dir=runs.root / "merged", **QUIET)
    assert not (runs.root / "merged").exists()


def test_different_grid_is_an_error_naming_the_dimension(runs):
    runs.run(runs.mask(shape=(4, 5)), "salvaged")
    runs.run(runs.mask("wide.nc", shape=(4, 6)), "rerun")
    with pytest.raises(UsageError, match=r"in run_status.nc: dimension 'X' has size 5 .* and 6 in the re-run"):
        merge_outputs(runs.root / "salvaged", rerun_dir=runs.root / "rerun", output_dir=runs.root / "merged", **QUIET)


def test_different_coordinates_are_an_error_naming_the_dimension(runs):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    with netCDF4.Dataset(rerun / "GPP_monthly_tr.nc", "a") as ds:
        ds.variables["time"][0] = -1.0
    with pytest.raises(
        UsageError, match=r"Coordinates don't match in GPP_monthly_tr.nc: 'time' along dimension 'time'"
    ):
        merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)


def test_output_dir_must_be_new_or_empty(runs):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    (runs.root / "merged").mkdir()
    (runs.root / "merged" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="must not exist or must be empty"):
        merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    assert [p.name for p in (runs.root / "merged").iterdir()] == ["keep.txt"]
    (runs.root / "empty").mkdir()
    assert merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "empty", **QUIET).total_success == ENABLED


def test_chunks_stay_within_budget_and_follow_disk_chunks():
    assert plan_chunks((100, 10, 50, 60), itemsize=4, disk=[1, 10, 50, 60], budget=1_000_000) == [8, 10, 50, 60]
    assert plan_chunks((5, 2000, 3000), itemsize=8, disk=None, budget=1_000_000) == [1, 41, 3000]
    assert plan_chunks((3, 4), itemsize=8, disk="contiguous", budget=1_000_000) == [3, 4]


# ---------------------------------------------------------------- property-based test of the merge

EXTRA = {"time": 3, "pft": 2, "layer": 2}


def _write(path: Path, dims: tuple[str, ...], sizes: dict[str, int], values: np.ndarray, *, note: float) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        for d in dims:
            ds.createDimension(d, sizes[d])
        ds.createVariable("note", "f8").assignValue(note)  # no Y/X: always from the salvaged file
        v = ds.createVariable("v", values.dtype, dims, fill_value=values.dtype.type(-99), zlib=True)
        v.units = "kg"
        v[:] = values


def _status(path: Path, status: np.ndarray) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("Y", status.shape[0])
        ds.createDimension("X", status.shape[1])
        ds.createVariable("run_status", "i4", ("Y", "X"), fill_value=STATUS_FILL)[:] = status


@st.composite
def cases(draw):
    ny, nx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    extras = draw(st.lists(st.sampled_from(sorted(EXTRA)), unique=True, max_size=2))
    salv_dims = tuple(draw(st.permutations(["Y", "X", *extras])))
    rerun_dims = tuple(draw(st.permutations(list(salv_dims))))
    dtype = draw(st.sampled_from(["i2", "i4", "f4", "f8"]))
    statuses = draw(st.lists(st.sampled_from([100, 0, -5, -100, STATUS_FILL]), min_size=ny * nx, max_size=ny * nx))
    return (
        ny,
        nx,
        salv_dims,
        rerun_dims,
        np.dtype(dtype),
        np.array(statuses).reshape(ny, nx),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.sampled_from([8, 64, 1 << 20])),
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_merged_is_rerun_where_it_succeeded_and_salvaged_elsewhere(case):
    ny, nx, salv_dims, rerun_dims, dtype, rerun_status, seed, chunk_bytes = case
    sizes = {"Y": ny, "X": nx, **EXTRA}
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        salv, rerun = root / "salv", root / "rerun"
        salv.mkdir(), rerun.mkdir()
        _status(salv / "run_status.nc", rng.choice([100, -100, 0], size=(ny, nx)))
        _status(rerun / "run_status.nc", rerun_status)
        for folder, dims, note in ((salv, salv_dims, 1.0), (rerun, rerun_dims, 2.0)):
            values = (rng.random([sizes[d] for d in dims]) * 1000).astype(dtype)
            _write(folder / "out.nc", dims, sizes, values, note=note)
        merge_outputs(salv, rerun_dir=rerun, output_dir=root / "merged", chunk_bytes=chunk_bytes, **QUIET)
        s, r = _open(salv / "out.nc"), _open(rerun / "out.nc")
        took = xr.DataArray(rerun_status == 100, dims=("Y", "X"))
        expected = s.assign(
            v=xr.where(took, r["v"], s["v"]).transpose(*salv_dims).astype(dtype).assign_attrs(s["v"].attrs)
        )
        xr.testing.assert_identical(_open(root / "merged" / "out.nc"), expected)
        assert describe_netcdf(root / "merged" / "out.nc") == describe_netcdf(salv / "out.nc")
        shutil.rmtree(root / "merged")


def test_netcdf3_files_merge_and_keep_their_format(tmp_path):
    for folder, status, value in (("salv", [[100, -100]], 1.0), ("rerun", [[0, 100]], 2.0)):
        (tmp_path / folder).mkdir()
        with netCDF4.Dataset(tmp_path / folder / "run_status.nc", "w", format="NETCDF3_64BIT_OFFSET") as ds:
            ds.createDimension("Y", 1), ds.createDimension("X", 2)
            ds.createVariable("run_status", "i4", ("Y", "X"), fill_value=STATUS_FILL)[:] = np.array(status)
        with netCDF4.Dataset(tmp_path / folder / "o.nc", "w", format="NETCDF3_64BIT_OFFSET") as ds:
            ds.createDimension("time", None), ds.createDimension("Y", 1), ds.createDimension("X", 2)
            ds.createVariable("v", "f4", ("time", "Y", "X"), fill_value=-1.0)[:] = np.full((3, 1, 2), value)
    merge_outputs(tmp_path / "salv", rerun_dir=tmp_path / "rerun", output_dir=tmp_path / "m", **QUIET)
    assert _open(tmp_path / "m" / "o.nc")["v"].values.tolist() == [[[1.0, 2.0]]] * 3
    assert describe_netcdf(tmp_path / "m" / "o.nc") == describe_netcdf(tmp_path / "salv" / "o.nc")
    assert describe_netcdf(tmp_path / "m" / "run_status.nc")["format"] == "NETCDF3_64BIT_OFFSET"
    assert read_merge_source(tmp_path / "m" / "run_status.nc").tolist() == [[0, 1]]


# ---------------------------------------------------------------- the check catches what the merge got wrong


def _after_write(monkeypatch, filename: str, change) -> None:
    """Run ``change(ds)`` on the merged ``filename`` once it is written and closed, before the check reads it."""
    write = merge_mod._write_merged

    def write_then_change(s, r, tmp, **kwargs):
        write(s, r, tmp, **kwargs)
        if Path(s.filepath()).name == filename:
            with netCDF4.Dataset(tmp, "a") as ds:
                ds.set_auto_maskandscale(False)
                change(ds)

    monkeypatch.setattr(merge_mod, "_write_merged", write_then_change)


def _bump(name: str, index: tuple) -> object:
    def change(ds):
        var = ds.variables[name]
        var[index] = var[index] + 1

    return change


@pytest.mark.pure
@pytest.mark.parametrize(
    ("filename", "change", "message"),
    [
        (
            "GPP_monthly_tr.nc",
            _bump("GPP", (1, 0, 5, 6)),
            r"in GPP_monthly_tr.nc: variable 'GPP' at cell \(y=5, x=6\) does not hold the salvaged values",
        ),
        (
            "GPP_monthly_tr.nc",
            _bump("GPP", (13, 1, 3, 4)),
            r"in GPP_monthly_tr.nc: variable 'GPP' at cell \(y=3, x=4\) does not hold the re-run's values",
        ),
        (
            "restart-tr.nc",
            _bump("vegc", (3, 4, 0, 2)),
            r"in restart-tr.nc: variable 'vegc' at cell \(y=3, x=4\) does not hold the re-run's values",
        ),
        (
            "GPP_monthly_tr.nc",
            _bump("time", (2,)),
            r"in GPP_monthly_tr.nc: variable 'time' differs from the salvaged file",
        ),
        (
            "run_status.nc",
            _bump("merge_source", (3, 4)),
            r"in run_status.nc: 'merge_source' is wrong at cell \(y=3, x=4\)",
        ),
        (
            "CMTNUM_yearly_tr.nc",
            lambda ds: ds.renameVariable("CMTNUM", "other"),
            r"in CMTNUM_yearly_tr.nc: variable 'CMTNUM' is missing from the merged file",
        ),
    ],
    ids=["salvaged-cell", "rerun-cell", "restart-on-Y-X", "off-grid", "merge-source", "missing-variable"],
)
def test_a_merged_file_changed_after_the_write_is_caught(runs, monkeypatch, filename, change, message):
    salv, rerun = _recovered(runs, fail_cells=[(3, 4)])
    _after_write(monkeypatch, filename, change)
    with pytest.raises(MergeVerificationError, match=message):
        merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    assert not (runs.root / "merged").exists()


@pytest.mark.pure
def test_a_rerun_left_in_its_own_dim_order_is_caught(tmp_path, monkeypatch):
    """A merge bug: the re-run stored as (time, X, Y) is taken as if it were (time, Y, X), on a square grid."""
    rng = np.random.default_rng(3)
    for folder, dims, status in (
        ("s", ("time", "Y", "X"), [[100, -100, 100]] * 3),
        ("r", ("time", "X", "Y"), [[0, 100, 0]] * 3),
    ):
        (tmp_path / folder).mkdir()
        _status(tmp_path / folder / "run_status.nc", np.array(status))
        _write(
            tmp_path / folder / "o.nc", dims, {"time": 2, "Y": 3, "X": 3}, rng.random((2, 3, 3)).astype("f4"), note=1.0
        )
    merge_outputs(
        tmp_path / "s", rerun_dir=tmp_path / "r", output_dir=tmp_path / "good", **QUIET
    )  # the real merge passes
    monkeypatch.setattr(merge_mod, "_read_as", lambda var, sl, dims: var[sl])
    with pytest.raises(
        MergeVerificationError, match=r"in o.nc: variable 'v' at cell \(y=0, x=1\) does not hold the re-run's"
    ):
        merge_outputs(tmp_path / "s", rerun_dir=tmp_path / "r", output_dir=tmp_path / "m", **QUIET)
    assert not (tmp_path / "m").exists()


@pytest.mark.pure
def test_a_rerun_that_succeeded_nowhere_gives_the_salvaged_files_byte_for_byte(runs):
    salv, rerun = _recovered(runs, fail_cells=[(3, 4)])
    write_status(rerun / "run_status.nc", status=np.zeros((10, 10)))
    report = merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    digests = tree_digest(runs.root / "merged")
    assert report.rerun_success == 0 and digests.pop("run_status.nc") != tree_digest(salv)["run_status.nc"]
    assert digests == {k: v for k, v in tree_digest(salv).items() if k != "run_status.nc"}


# ---------------------------------------------------------------- dvmdostem's own input files
# (tests/data, copied with their provenance)

FIXTURES = PUBLIC_FIXTURES / "dvmdostem-imnaviat"


@pytest.mark.pure
@pytest.mark.slow  # seconds on an idle machine: make test runs it, make test-fast does not
@pytest.mark.parametrize("chunk_bytes", [1 << 20, 2000])
def test_real_dvmdostem_files_merge_and_verify(tmp_path, monkeypatch, chunk_bytes):
    """Chunked (1, 10, 10) NETCDF4 climate, int64 coordinates, a scalar grid mapping: merged, checked, kept."""
    names = ["projected-climate.nc", "vegetation.nc", "run-mask.nc"]
    take = np.zeros((10, 10), dtype=bool)
    take[[1, 4, 9], [2, 7, 0]] = True
    for folder in ("s", "r"):
        (tmp_path / folder).mkdir()
        for name in names:
            shutil.copyfile(FIXTURES / name, tmp_path / folder / name)
    write_status(tmp_path / "s" / "run_status.nc", status=np.where(take, -100, 100))
    write_status(tmp_path / "r" / "run_status.nc", status=np.where(take, 100, 0))
    with netCDF4.Dataset(tmp_path / "r" / "projected-climate.nc", "a") as ds:
        ds.variables["tair"][:] = ds.variables["tair"][:] + 100.0
    with netCDF4.Dataset(tmp_path / "r" / "vegetation.nc", "a") as ds:
        ds.variables["veg_class"][:] = 99
    merge_outputs(tmp_path / "s", rerun_dir=tmp_path / "r", output_dir=tmp_path / "m", chunk_bytes=chunk_bytes, **QUIET)
    for name in names:
        merged, old, new = (_open(tmp_path / d / name) for d in ("m", "s", "r"))
        cells = xr.DataArray(take, dims=("Y", "X"))
        for vname in merged.data_vars:
            var = merged[vname]
            if {"Y", "X"} <= set(var.dims):
                xr.testing.assert_identical(
                    var, xr.where(cells, new[vname], old[vname], keep_attrs=True).transpose(*var.dims).rename(vname)
                )
            else:
                xr.testing.assert_identical(var, old[vname])
        assert describe_netcdf(tmp_path / "m" / name) == describe_netcdf(FIXTURES / name)
    assert _open(tmp_path / "m" / "vegetation.nc")["veg_class"].values[take].tolist() == [99, 99, 99]
    _after_write(monkeypatch, "projected-climate.nc", _bump("precip", (700, 4, 7)))
    with pytest.raises(
        MergeVerificationError, match=r"'precip' at cell \(y=4, x=7\) does not hold the re-run's values"
    ):
        merge_outputs(
            tmp_path / "s", rerun_dir=tmp_path / "r", output_dir=tmp_path / "m2", chunk_bytes=chunk_bytes, **QUIET
        )


@pytest.mark.pure
def test_slabs_hold_whole_disk_chunks_when_one_fits_the_budget():
    """Chunks of (12, 5, 75, 93): a slab that cut one would read and decompress it once per slab."""
    shape, disk = (24, 10, 150, 185), [12, 5, 75, 93]
    assert plan_chunks(shape, itemsize=4, disk=disk, budget=3 << 20) == [12, 5, 75, 93]
    assert plan_chunks(shape, itemsize=4, disk=disk, budget=8 << 20) == [12, 5, 150, 185]
    assert plan_chunks(shape, itemsize=4, disk=disk, budget=1 << 20) == [12, 5, 75, 93]  # over budget: still whole
    assert plan_chunks((1020, 10, 10), itemsize=4, disk=[1, 10, 10], budget=2000) == [5, 10, 10]
