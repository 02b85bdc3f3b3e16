"""The built-in plotter on the files climate users really have: every CF calendar, CF time axes not
named `time`, NetCDF4 groups, extra dimensions, a real dvmdostem input, and missing libraries.

The figures are inspected in-process (tick labels, lines, legends), not only the PNG files.
"""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from salvo.errors import InputError
from salvo.extract import png_files
from salvo.extract.plot import (
    DEFAULT_DPI,
    extract_plots,
    find_time,
    open_groups,
    reduction_for,
    time_axis,
    timeseries_figure,
)
from salvo.samples.netcdf import CF_CALENDARS, write_cf_file

pytestmark = pytest.mark.pure

FIXTURE = Path(__file__).with_name("data") / "projected-climate.nc"
YEAR = re.compile(r"^\d{4}$")
YEAR_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    return struct.unpack(">II", head[16:24])


def _tick_labels(fig) -> list[str]:
    fig.canvas.draw()
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def _figure(path: Path, name: str, group: str = "/"):
    for g, ds in open_groups(str(path)):
        if g == group:
            dim, var = find_time(ds)
            return timeseries_figure(ds, name, dim, time_axis(ds, dim, var)), ds
    raise AssertionError(f"no group {group}")


@pytest.mark.slow  # seconds on an idle machine: make test runs it, make test-fast does not
@pytest.mark.parametrize("calendar", CF_CALENDARS)
def test_every_cf_calendar_is_plotted_with_date_ticks(tmp_path: Path, calendar: str) -> None:
    import matplotlib.pyplot as plt

    f = write_cf_file(tmp_path / f"{calendar}.nc", calendar=calendar, steps=24, start_year=2000)
    out = tmp_path / "out"
    got = extract_plots(input=str(f), output_dir=str(out))
    names = sorted(p.name for p in png_files(out))
    assert names == ["co2_timeseries.png", "tas_last_step_map.png", "tas_timeseries.png"]
    assert got["metrics"] == {"plots": 3, "time_steps": 24, "variables": 2}
    for p in png_files(out):
        assert p.stat().st_size > 10_000, f"{p.name} is too small to hold a plot"
    assert _png_size(out / "tas_timeseries.png") == (10 * DEFAULT_DPI, 4 * DEFAULT_DPI)  # the readable default

    fig, ds = _figure(f, "tas")
    try:
        labels = _tick_labels(fig)
        # Two years of monthly data: ticks on first days of months, labelled YYYY-MM, in that range.
        assert len(labels) >= 3 and all(YEAR_MONTH.match(t) for t in labels), labels
        assert labels[0] >= "2000-01" and labels[-1] <= "2001-12", labels
        assert labels == sorted(labels)
        assert calendar in fig.axes[0].get_xlabel() or calendar in ("standard", "gregorian", "proleptic_gregorian")
        line = fig.axes[0].get_lines()[0]
        assert (
            len(line.get_xdata()) == 24 and np.isfinite(line.get_ydata()).all()
        )  # the fill value is masked, not drawn
    finally:
        plt.close(fig)
        ds.close()


@pytest.mark.slow  # seconds on an idle machine: make test runs it, make test-fast does not
def test_the_real_dvmdostem_365_day_file(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    out = tmp_path / "pc"
    got = extract_plots(input=str(FIXTURE), output_dir=str(out), dpi=50)
    assert got["metrics"]["time_steps"] == 1020 and got["metrics"]["variables"] == 4
    assert sorted(p.name for p in png_files(out)) == sorted(
        f"{v}_{kind}.png" for v in ("tair", "precip", "nirr", "vapor_press") for kind in ("timeseries", "last_step_map")
    )
    assert _png_size(out / "tair_timeseries.png") == (500, 200)  # --dpi 50
    fig, ds = _figure(FIXTURE, "tair")
    try:
        labels = _tick_labels(fig)
        # 85 years of a 365_day calendar from 2016: whole years as ticks.
        assert len(labels) >= 4 and all(YEAR.match(t) for t in labels), labels
        assert "2016" <= labels[0] and labels[-1] <= "2100"
        assert "365_day" in fig.axes[0].get_xlabel()
        assert "mean over Y, X" in fig.axes[0].get_title()
    finally:
        plt.close(fig)
        ds.close()


@pytest.mark.parametrize(
    "time_name, attrs",
    [
        ("t", {"axis": "T"}),
        ("valid", {"standard_name": "time"}),
        ("step", {"units": "hours since 2000-01-01 00:00:00"}),
    ],
)
def test_time_axis_found_by_cf_rules_not_by_name(tmp_path: Path, time_name: str, attrs: dict[str, str]) -> None:
    import matplotlib.pyplot as plt

    if "units" not in attrs:
        attrs = {**attrs, "units": "days since 2000-01-01"}
    if attrs["units"].startswith("hours"):
        f = write_cf_file(
            tmp_path / "a.nc", calendar="noleap", time_name=time_name, time_attrs={"units": "days since 2000-01-01"}
        )
        with xr.open_dataset(f, decode_times=False) as ds:  # re-express in hours: only the units say it is time
            ds = ds.load()
        ds[time_name] = ds[time_name] * 24
        ds[time_name].attrs.update({"units": attrs["units"], "calendar": "noleap"})
        f = tmp_path / "b.nc"
        ds.to_netcdf(f)
    else:
        f = write_cf_file(tmp_path / "a.nc", calendar="noleap", time_name=time_name, time_attrs=attrs)
    with xr.open_dataset(f, decode_times=False) as ds:
        assert find_time(ds) == (time_name, time_name)
    fig, ds = _figure(f, "tas")
    try:
        assert all(YEAR_MONTH.match(t) for t in _tick_labels(fig))
    finally:
        plt.close(fig)
        ds.close()


def test_a_time_variable_on_another_dimension_and_coordinate_wins() -> None:
    ds = xr.Dataset(
        {"v": ("n", [1.0, 2.0, 3.0]), "age": ("n", [5.0, 6.0, 7.0], {"units": "days since 1990-01-01"})},
        coords={"when": ("n", [0.0, 31.0, 59.0], {"standard_name": "time", "units": "days since 2000-01-01"})},
    )
    assert find_time(ds) == ("n", "when")  # standard_name beats units alone


def test_variables_in_groups_are_plotted_with_the_parent_time(tmp_path: Path) -> None:
    f = write_cf_file(tmp_path / "g.nc", calendar="360_day", group="model/atmos")
    out = tmp_path / "out"
    got = extract_plots(input=str(f), output_dir=str(out))
    assert sorted(p.name for p in png_files(out)) == [
        "model.atmos.co2_timeseries.png",
        "model.atmos.tas_last_step_map.png",
        "model.atmos.tas_timeseries.png",
    ]
    assert got["metrics"]["variables"] == 2


def test_an_extra_dimension_gives_one_line_per_level_never_a_heatmap(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    f = write_cf_file(tmp_path / "lev.nc", calendar="noleap", levels=4, steps=36)
    fig, ds = _figure(f, "ta")
    try:
        ax = fig.axes[0]
        assert len(ax.get_lines()) == 4 and not ax.collections and not ax.images  # lines, no mesh
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            "level=1000",
            "level=833.333",
            "level=666.667",
            "level=500",
        ]
        assert "one line per level" in ax.get_title()
        assert all(YEAR_MONTH.match(t) for t in _tick_labels(fig))
    finally:
        plt.close(fig)
        ds.close()
    out = tmp_path / "out"
    extract_plots(input=str(f), output_dir=str(out))
    assert sorted(p.name for p in png_files(out)) == [
        "co2_timeseries.png",
        "ta_timeseries.png",
    ]  # no map of a 4-D variable


def test_many_values_along_an_extra_dimension_are_averaged_with_a_note() -> None:
    ds = xr.Dataset(
        {"v": (("time", "station"), np.ones((3, 40)))},
        coords={"time": ("time", [0, 1, 2], {"units": "days since 2000-01-01"})},
    )
    red = reduction_for(ds, ds["v"], "time")
    assert red.lines is None and red.averaged_extra == ["station"]
    assert "averaged over station" in red.note()
    ds2 = xr.Dataset({"v": (("time", "pftpart", "pft", "y", "x"), np.ones((3, 3, 10, 2, 2)))})
    red2 = reduction_for(ds2, ds2["v"], "time")
    assert red2.spatial == ["y", "x"] and red2.lines == "pftpart" and red2.averaged_extra == ["pft"]


def test_undecodable_units_fall_back_to_a_labelled_numeric_axis(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {"v": ("time", np.arange(5.0))},
        coords={"time": ("time", np.arange(5.0), {"units": "months since 2000-01-01", "calendar": "noleap"})},
    )
    f = tmp_path / "m.nc"
    ds.to_netcdf(f)
    out = tmp_path / "out"
    extract_plots(input=str(f), output_dir=str(out))
    assert [p.name for p in png_files(out)] == ["v_timeseries.png"]
    with xr.open_dataset(f, decode_times=False) as d:
        axis = time_axis(d, "time", "time")
    assert not axis.is_dates and axis.label == "months since 2000-01-01"


def test_a_missing_plotting_library_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write_cf_file(tmp_path / "a.nc", calendar="noleap")
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # `import matplotlib.pyplot` now raises ImportError
    with pytest.raises(InputError, match="matplotlib"):
        extract_plots(input=str(f), output_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_dvmdostem_output_on_lowercase_y_x_with_pfts_and_fill_values(tmp_path: Path) -> None:
    """dvmdostem's own outputs: (time, pft, y, x), int or float with _FillValue -9999, 365_day."""
    import matplotlib.pyplot as plt
    import netCDF4

    f = tmp_path / "GPP_monthly_tr.nc"
    with netCDF4.Dataset(f, "w") as nc:
        for name, size in (("time", 24), ("pft", 10), ("y", 3), ("x", 4)):
            nc.createDimension(name, size)
        t = nc.createVariable("time", "i4", ("time",))
        t.setncatts({"units": "days since 1901-1-1 0:0:0", "calendar": "365_day", "long_name": "time"})
        t[:] = np.arange(24) * 30
        v = nc.createVariable("GPP", "f4", ("time", "pft", "y", "x"), fill_value=-9999.0)
        v.setncatts({"units": "g/m2/month", "long_name": "GPP"})
        data = np.ones((24, 10, 3, 4), dtype="f4") * np.arange(10)[None, :, None, None]
        data[:, :, 0, 0] = -9999.0  # a cell that did not run
        v[:] = data
    out = tmp_path / "out"
    extract_plots(input=str(f), output_dir=str(out))
    assert [p.name for p in png_files(out)] == ["GPP_timeseries.png"]
    fig, ds = _figure(f, "GPP")
    try:
        ax = fig.axes[0]
        assert len(ax.get_lines()) == 10 and "one line per pft" in ax.get_title()
        assert [float(v) for v in (line.get_ydata()[0] for line in ax.get_lines())] == [
            float(i) for i in range(10)
        ]  # fill values not averaged in
        assert all(YEAR_MONTH.match(t) for t in _tick_labels(fig)) and _tick_labels(fig)[0].startswith("1901")
    finally:
        plt.close(fig)
        ds.close()


def test_a_year_dimension_without_units_is_a_labelled_numeric_axis(tmp_path: Path) -> None:
    """Like dvmdostem's co2.nc: `co2(year)` with plain year numbers."""
    import matplotlib.pyplot as plt

    f = tmp_path / "co2.nc"
    xr.Dataset({"co2": ("year", np.linspace(300, 400, 20))}, coords={"year": np.arange(1901, 1921)}).to_netcdf(f)
    fig, ds = _figure(f, "co2")
    try:
        assert fig.axes[0].get_xlabel() == "year"
        assert fig.axes[0].get_lines()[0].get_xdata()[0] == 1901
    finally:
        plt.close(fig)
        ds.close()
