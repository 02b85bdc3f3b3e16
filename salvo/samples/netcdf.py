"""Sample NetCDF files like a model's outputs: varied lengths, axes and a few bad apples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


def write_series_file(
    path: str | os.PathLike[str], *, steps: int, seed: int = 0, ny: int = 6, nx: int = 8, time_name: str = "time"
) -> Path:
    """One file with ``steps`` steps of a few (time, lat, lon) and (time,) variables."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    if time_name == "time":
        t = xr.DataArray(pd.date_range("2000-01-01", periods=steps, freq="MS"), dims="time", attrs={"axis": "T"})
    else:
        t = xr.DataArray(np.arange(1, steps + 1), dims=time_name)
    lat = np.linspace(60, 70, ny)
    lon = np.linspace(-150, -140, nx)
    trend = np.linspace(0, 2, steps)[:, None, None]
    ds = xr.Dataset(
        {
            "GPP": (
                (time_name, "lat", "lon"),
                (5 + trend + rng.normal(0, 1, (steps, ny, nx))).astype("float32"),
                {"units": "g m-2"},
            ),
            "TAIR": (
                (time_name, "lat", "lon"),
                (rng.normal(-5, 10, (steps, ny, nx))).astype("float32"),
                {"units": "degC"},
            ),
            "CO2": ((time_name,), np.linspace(370, 410, steps), {"units": "ppm"}),
        },
        coords={
            time_name: t,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out, engine="netcdf4")
    return out


#: Every calendar CF defines (CF 1.11, section 4.4.1).
CF_CALENDARS = (
    "standard",
    "gregorian",
    "proleptic_gregorian",
    "noleap",
    "365_day",
    "360_day",
    "all_leap",
    "366_day",
    "julian",
)


def write_cf_file(
    path: str | os.PathLike[str],
    *,
    calendar: str = "standard",
    steps: int = 24,
    start_year: int = 2000,
    time_name: str = "time",
    time_attrs: dict[str, str] | None = None,
    levels: int = 0,
    group: str | None = None,
    ny: int = 4,
    nx: int = 5,
    seed: int = 0,
) -> Path:
    """A CF file like climate model output: monthly steps in ``calendar``, a ``(time, lat, lon)``
    variable (``(time, level, lat, lon)`` with ``levels``) and a ``(time,)`` series.

    ``time_attrs`` replaces the time variable's identifying attributes (default: ``axis: T`` and
    ``standard_name: time``), to test the CF rules one at a time; ``time_name`` renames it. With
    ``group``, the data variables live in that NetCDF4 group (``/`` keeps only coordinates).
    """
    import cftime
    import netCDF4

    rng = np.random.default_rng(seed)
    units = f"days since {start_year}-01-01 00:00:00"
    dates = [cftime.datetime(start_year + m // 12, m % 12 + 1, 15, calendar=calendar) for m in range(steps)]
    times = np.asarray(cftime.date2num(dates, units, calendar), dtype="float64")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(out, "w", format="NETCDF4") as nc:
        nc.Conventions = "CF-1.11"
        nc.createDimension(time_name, None)
        nc.createDimension("lat", ny)
        nc.createDimension("lon", nx)
        t = nc.createVariable(time_name, "f8", (time_name,))
        attrs = {"axis": "T", "standard_name": "time"} if time_attrs is None else dict(time_attrs)
        t.setncatts(
            {"units": units, "calendar": calendar, **attrs} if "units" not in attrs else {"calendar": calendar, **attrs}
        )
        t[:] = times
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.setncatts({"units": "degrees_north", "standard_name": "latitude"})
        lat[:] = np.linspace(60, 70, ny)
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon.setncatts({"units": "degrees_east", "standard_name": "longitude"})
        lon[:] = np.linspace(-150, -140, nx)
        where = nc.createGroup(group) if group and group != "/" else nc
        season = np.sin(2 * np.pi * np.arange(steps) / 12)
        if levels:
            nc.createDimension("level", levels)
            lev = nc.createVariable("level", "f4", ("level",))
            lev.setncatts({"units": "hPa", "positive": "down", "axis": "Z"})
            lev[:] = np.linspace(1000, 500, levels)
            v = where.createVariable("ta", "f4", (time_name, "level", "lat", "lon"), fill_value=-9999.0)
            v.setncatts({"units": "K", "long_name": "air temperature"})
            v[:] = (
                270
                + 10 * season[:, None, None, None]
                - 5 * np.arange(levels)[None, :, None, None]
                + rng.normal(0, 1, (steps, levels, ny, nx))
            )
        else:
            v = where.createVariable("tas", "f4", (time_name, "lat", "lon"), fill_value=-9999.0)
            v.setncatts({"units": "K", "long_name": "near-surface air temperature"})
            data = 270 + 10 * season[:, None, None] + rng.normal(0, 1, (steps, ny, nx))
            data[0, 0, 0] = -9999.0  # a fill value, as models write for masked cells
            v[:] = data
        co2 = where.createVariable("co2", "f8", (time_name,))
        co2.units = "ppm"
        co2[:] = np.linspace(370, 410, steps)
    return out


def make_netcdf_samples(
    folder: str | os.PathLike[str], *, count: int = 36, seed: int = 0, max_steps: int = 120
) -> list[Path]:
    """``count`` files with 1 to ``max_steps`` steps, plus a ``noleap`` calendar file, one corrupt
    and one single-step file."""
    rng = np.random.default_rng(seed)
    root = Path(folder)
    files = []
    for i in range(count):
        steps = int(rng.integers(2, max_steps + 1))
        kind = "S4" if i % 3 == 0 else "S3"
        time_name = "month" if i % 7 == 3 else "time"
        files.append(
            write_series_file(root / f"exp_{kind}_{i:03d}.nc", steps=steps, seed=seed + i, time_name=time_name)
        )
    files.append(write_series_file(root / "exp_S3_single_step.nc", steps=1, seed=seed))
    # Climate model output: a non-standard calendar (xarray decodes it to cftime dates).
    files.append(write_cf_file(root / "exp_S3_noleap.nc", calendar="noleap", steps=36, seed=seed))
    corrupt = root / "exp_S3_corrupt.nc"
    corrupt.write_bytes(b"CDF\x01" + rng.bytes(2048))
    files.append(corrupt)
    return files
