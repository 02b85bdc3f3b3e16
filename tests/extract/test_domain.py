"""The extraction domain, called directly: discovery, time axis, plotting, output checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from salvo.errors import InputError, SkipItem, UsageError
from salvo.extract import discover_inputs, extract_plots, extract_worker, find_time_dim, output_dir_for, png_files
from salvo.samples.netcdf import write_series_file


@pytest.mark.parametrize(
    "ds, expected",
    [
        (xr.Dataset({"v": ("time", [1.0, 2.0])}), "time"),
        (xr.Dataset({"v": ("t2", [1.0, 2.0])}, coords={"t2": ("t2", [0, 1], {"axis": "T"})}), "t2"),
        (xr.Dataset({"v": ("when", [1.0, 2.0])}, coords={"when": pd.date_range("2000", periods=2)}), "when"),
        (
            xr.Dataset(
                {"v": ("step", [1.0, 2.0])}, coords={"step": ("step", [0, 1], {"units": "days since 2000-01-01"})}
            ),
            "step",
        ),
        (xr.Dataset({"v": ("month", [1.0, 2.0])}), "month"),
        (xr.Dataset({"v": (("y", "x"), np.zeros((2, 2)))}), None),
    ],
)
def test_find_time_dim(ds: xr.Dataset, expected: str | None) -> None:
    assert find_time_dim(ds) == expected


def test_discover_inputs_pattern_recursion_and_hidden(tmp_path: Path) -> None:
    for rel in ["a_S4_1.nc", "b_S3_1.nc", "notes.txt", "sub/c_S4_2.nc", ".hidden/d_S4.nc"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [p.name for p in discover_inputs(tmp_path)] == ["a_S4_1.nc", "b_S3_1.nc"]
    assert [p.name for p in discover_inputs(tmp_path, pattern="*_S4_*")] == ["a_S4_1.nc"]
    assert [
        p.relative_to(tmp_path).as_posix() for p in discover_inputs(tmp_path, pattern="*_S4_*", recursive=True)
    ] == ["a_S4_1.nc", "sub/c_S4_2.nc"]
    with pytest.raises(UsageError, match="does not exist"):
        discover_inputs(tmp_path / "nope")


def test_output_dir_beside_or_mirrored(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "run1.nc"
    assert output_dir_for(f, directory=tmp_path) == tmp_path / "sub" / "run1_results"
    assert output_dir_for(f, directory=tmp_path, output_dir=tmp_path / "out") == tmp_path / "out" / "sub" / "run1"


def test_extract_plots_writes_series_and_maps(tmp_path: Path) -> None:
    f = write_series_file(tmp_path / "a.nc", steps=12)
    out = tmp_path / "a_results"
    got = extract_plots(input=str(f), output_dir=str(out))
    names = sorted(p.name for p in png_files(out))
    assert names == [
        "CO2_timeseries.png",
        "GPP_last_step_map.png",
        "GPP_timeseries.png",
        "TAIR_last_step_map.png",
        "TAIR_timeseries.png",
    ]
    assert got["metrics"] == {"plots": 5, "time_steps": 12, "variables": 3}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".salvo-tmp")]


def test_single_step_and_no_time_axis_are_skipped(tmp_path: Path) -> None:
    f = write_series_file(tmp_path / "one.nc", steps=1)
    with pytest.raises(SkipItem, match="only 1 time step"):
        extract_plots(input=str(f), output_dir=str(tmp_path / "o1"))
    g = tmp_path / "static.nc"
    xr.Dataset({"h": (("y", "x"), np.ones((3, 3)))}).to_netcdf(g)
    with pytest.raises(SkipItem, match="no time-like dimension"):
        extract_plots(input=str(g), output_dir=str(tmp_path / "o2"))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("content", [b"CDF\x01garbage" * 50, b"just some text\n"])
def test_corrupt_or_non_netcdf_is_an_input_error(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "bad.nc"
    f.write_bytes(content)
    with pytest.raises(InputError, match="cannot read .*bad.nc as NetCDF"):
        extract_plots(input=str(f), output_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_worker_command_is_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="worker command not found: no-such-program"):
        extract_worker("no-such-program {input} {output_dir}")
    with pytest.raises(UsageError, match=r"unknown placeholder \{outdir\}"):
        extract_worker("python3 x.py {input} {outdir}")
    assert extract_worker("python3 x.py {input} {output_dir}").target == "salvo.staged:run_staged_command"
