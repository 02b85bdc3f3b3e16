"""Sample NetCDF files like a model's outputs: varied lengths, axes and a few bad apples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


def write_series_file(path: str | os.PathLike[str], *, steps: int, seed: int = 0, ny: int = 6, nx: int = 8, time_name: str = "time") -> Path:
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
            "GPP": ((time_name, "lat", "lon"), (5 + trend + rng.normal(0, 1, (steps, ny, nx))).astype("float32"), {"units": "g m-2"}),
            "TAIR": ((time_name, "lat", "lon"), (rng.normal(-5, 10, (steps, ny, nx))).astype("float32"), {"units": "degC"}),
            "CO2": ((time_name,), np.linspace(370, 410, steps), {"units": "ppm"}),
        },
        coords={time_name: t, "lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})},
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out, engine="netcdf4")
    return out


def make_netcdf_samples(folder: str | os.PathLike[str], *, count: int = 36, seed: int = 0, max_steps: int = 120) -> list[Path]:
    """``count`` files with 1 to ``max_steps`` steps, plus one corrupt and one single-step file."""
    rng = np.random.default_rng(seed)
    root = Path(folder)
    files = []
    for i in range(count):
        steps = int(rng.integers(2, max_steps + 1))
        kind = "S4" if i % 3 == 0 else "S3"
        time_name = "month" if i % 7 == 3 else "time"
        files.append(write_series_file(root / f"exp_{kind}_{i:03d}.nc", steps=steps, seed=seed + i, time_name=time_name))
    files.append(write_series_file(root / "exp_S3_single_step.nc", steps=1, seed=seed))
    corrupt = root / "exp_S3_corrupt.nc"
    corrupt.write_bytes(b"CDF\x01" + rng.bytes(2048))
    files.append(corrupt)
    return files
