"""A merge is complete or it fails (issue 22.3): missing files, fail logs, sub-folders, the files it lists."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

from cli.main import main as salvo_main
from salvo.errors import UsageError
from salvo.gridded import merge_outputs, read_mask, read_merge_source, read_status, write_run_mask

from .conftest import tree_digest

pytestmark = pytest.mark.pure
QUIET = {"log": lambda _: None}


def _recovered(runs, **model):
    mask = runs.mask()
    status = runs.run(mask, "salvaged", **model)
    rerun_mask = write_run_mask(runs.root / "failed.nc", run=((read_mask(mask) == 1) & (status != 100)).astype("i4"))
    runs.run(rerun_mask, "rerun", **model)
    return runs.root / "salvaged", runs.root / "rerun"


def _values(path, var):
    with xr.open_dataset(path, decode_cf=False) as ds:
        return ds[var].values


def test_missing_file_through_the_command_is_one_line_exit_2_and_nothing_written(runs, capsys):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    (rerun / "VEGC_yearly_tr.nc").unlink()
    (rerun / "LAI_yearly_tr.nc").unlink()
    before = tree_digest(salv), tree_digest(rerun)
    code = salvo_main(["merge", str(salv), str(rerun), str(runs.root / "merged")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "File not found in rerun: LAI_yearly_tr.nc, VEGC_yearly_tr.nc" in err
    assert not (runs.root / "merged").exists() and (tree_digest(salv), tree_digest(rerun)) == before


def test_allow_missing_marks_the_reruns_cells_failed_never_100(runs, capsys):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1), (4, 5)])
    salvaged_status = read_status(salv / "run_status.nc")
    assert read_status(rerun / "run_status.nc")[1, 1] == 100 and salvaged_status[1, 1] != 100
    (rerun / "VEGC_yearly_tr.nc").unlink()
    out = runs.root / "merged"
    code = salvo_main(["merge", str(salv), str(rerun), str(out), "--allow-missing", "VEGC_yearly_tr.nc"])
    printed = capsys.readouterr().out
    assert code == 0 and "File not found in rerun: VEGC_yearly_tr.nc (allowed" in printed
    status, source = read_status(out / "run_status.nc"), read_merge_source(out / "run_status.nc")
    for y, x in ((1, 1), (4, 5)):
        assert status[y, x] == salvaged_status[y, x] != 100 and source[y, x] == -1
        # nothing of the incomplete re-run is taken: every file holds the salvaged values in those cells
        assert np.array_equal(
            _values(out / "GPP_monthly_tr.nc", "GPP")[..., y, x], _values(salv / "GPP_monthly_tr.nc", "GPP")[..., y, x]
        )
    assert int((source == 0).sum()) == source.size - 2
    assert tree_digest(out)["VEGC_yearly_tr.nc"] == tree_digest(salv)["VEGC_yearly_tr.nc"]
    # the recovery counts those cells as still to re-run
    assert int(((read_mask(runs.root / "run-mask.nc") == 1) & (status != 100)).sum()) == 2


def test_fail_logs_are_concatenated_as_batch_merge_does(runs):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    (salv / "fail_log.txt").write_text("cell 1,1 failed: run -100\ncell 2,2 failed: timeout")
    (rerun / "fail_log.txt").write_text("cell 2,2 failed: timeout\n")
    report = merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    assert (runs.root / "merged" / "fail_log.txt").read_text() == (
        "cell 1,1 failed: run -100\ncell 2,2 failed: timeout\ncell 2,2 failed: timeout\n"
    )
    assert report.concatenated == ["fail_log.txt"]


def test_subfolders_are_carried_byte_for_byte_and_nested_netcdf_merged(runs):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    for folder in (salv, rerun):
        (folder / "calibration").mkdir()
        (folder / "extra" / "deep").mkdir(parents=True)
        os.link(folder / "GPP_monthly_tr.nc", folder / "extra" / "deep" / "GPP_monthly_tr.nc")
    (salv / "calibration" / "cal.json").write_bytes(b'{"cmt": 4, "\xc3\xa9": [1, 2]}')
    (salv / "calibration" / "empty").mkdir()
    out = runs.root / "merged"
    report = merge_outputs(salv, rerun_dir=rerun, output_dir=out, **QUIET)
    assert (out / "calibration" / "cal.json").read_bytes() == (salv / "calibration" / "cal.json").read_bytes()
    assert (out / "calibration" / "empty").is_dir()
    nested = _values(out / "extra" / "deep" / "GPP_monthly_tr.nc", "GPP")
    assert np.array_equal(nested, _values(out / "GPP_monthly_tr.nc", "GPP"))
    assert np.array_equal(nested[..., 1, 1], _values(rerun / "GPP_monthly_tr.nc", "GPP")[..., 1, 1])
    assert "extra/deep/GPP_monthly_tr.nc" in report.merged and "calibration/cal.json" in report.carried_over
    # The report lists every file of the merged folder: merged, carried over or concatenated.
    listed = set(report.merged) | set(report.carried_over) | set(report.concatenated) | {"run_status.nc"}
    assert listed == set(tree_digest(out))


def test_a_link_or_special_file_is_refused_by_name_before_anything_is_written(runs):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    (salv / "calibration").mkdir()
    (salv / "calibration" / "latest").symlink_to(salv / "GPP_monthly_tr.nc")
    os.mkfifo(salv / "pipe")
    with pytest.raises(UsageError, match=r"pipe: not a regular file; calibration/latest: a symbolic link"):
        merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", **QUIET)
    assert not (runs.root / "merged").exists()


def test_files_only_in_the_rerun_are_listed_as_not_merged(runs):
    salv, rerun = _recovered(runs, fail_cells=[(1, 1)])
    (rerun / "model.log").write_text("rerun log\n")
    lines: list[str] = []
    report = merge_outputs(salv, rerun_dir=rerun, output_dir=runs.root / "merged", log=lines.append)
    assert report.refused == ["model.log"] and "  Warning: File only in rerun, not merged: model.log" in lines
