"""dvmdostem's gridded files: run-mask.nc, run_status.nc, and the grid they share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salvo.errors import UsageError
from salvo.fsutil import atomic_path
from salvo.gridded.ncschema import create_like, open_raw

#: run_status values written by dvmdostem.
SUCCESS = 100
NOT_RUN = 0
TIMED_OUT = -5
FAILED = -100
#: ``_FillValue`` of run_status: the cell was never written (the model died before it got there).
STATUS_FILL = -9999

STATUS_FILE = "run_status.nc"
MASK_VAR = "run"
STATUS_VAR = "run_status"
SOURCE_VAR = "merge_source"
RUNTIME_VAR = "total_runtime"
GRID_MAPPING = "albers_conical_equal_area"
Y, X = "Y", "X"


@dataclass(frozen=True)
class Grid:
    """The Y x X grid of a dvmdostem run, on an Albers equal-area projection."""

    ny: int
    nx: int
    x0: float = -1_500_000.0
    y0: float = 1_800_000.0
    step: float = 1000.0

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Projected coordinates ``y(Y)`` and ``x(X)`` in metres."""
        return self.y0 - self.step * np.arange(self.ny), self.x0 + self.step * np.arange(self.nx)

    def latlon(self) -> tuple[np.ndarray, np.ndarray]:
        """Plausible ``lat(Y, X)`` and ``lon(Y, X)`` in degrees (for the simulated model)."""
        y, x = self.xy()
        lat = 65.0 + (y[:, None] - self.y0) / 111_000.0 + 0.0 * x[None, :]
        lon = -150.0 + (x[None, :] - self.x0) / 50_000.0 + 0.0 * y[:, None]
        return lat.astype("f8"), lon.astype("f8")


def define_grid(ds, grid: Grid) -> None:
    """Add dims Y/X, ``y``, ``x``, ``lat``, ``lon`` and the grid mapping to an open netCDF4 dataset."""
    ds.createDimension(Y, grid.ny)
    ds.createDimension(X, grid.nx)
    gm = ds.createVariable(GRID_MAPPING, "c")
    gm.setncatts(
        {
            "grid_mapping_name": "albers_conical_equal_area",
            "false_easting": 0.0,
            "false_northing": 0.0,
            "latitude_of_projection_origin": 50.0,
            "longitude_of_central_meridian": -154.0,
            "standard_parallel": np.array([55.0, 65.0]),
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257222101,
        }
    )
    y, x = grid.xy()
    lat, lon = grid.latlon()
    for name, dims, values, attrs in (
        ("y", (Y,), y, {"standard_name": "projection_y_coordinate", "units": "m"}),
        ("x", (X,), x, {"standard_name": "projection_x_coordinate", "units": "m"}),
        ("lat", (Y, X), lat, {"standard_name": "latitude", "units": "degree_north"}),
        ("lon", (Y, X), lon, {"standard_name": "longitude", "units": "degree_east"}),
    ):
        v = ds.createVariable(name, "f8", dims)
        v.setncatts(attrs)
        v[:] = values


def write_run_mask(path: str | os.PathLike[str], *, run: np.ndarray) -> Path:
    """Write a new dvmdostem run-mask (``run(Y, X)`` plus grid variables) atomically."""
    run = np.asarray(run)
    with atomic_path(path) as tmp:
        with _create(tmp) as ds:
            define_grid(ds, Grid(*run.shape))
            v = ds.createVariable(MASK_VAR, "i4", (Y, X))
            v.setncatts({"grid_mapping": GRID_MAPPING, "long_name": "run mask: 1 run the cell, 0 skip it"})
            v[:] = run.astype("i4")
    return Path(path)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``run(Y, X)`` values of a run-mask, raw (1 means run, 0 means skip)."""
    return _read_2d(path, MASK_VAR)


def read_status(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``run_status(Y, X)`` values, raw: 100 success, 0 not run, negative failed, -9999 never written."""
    return _read_2d(path, STATUS_VAR)


def read_merge_source(path: str | os.PathLike[str]) -> np.ndarray | None:
    """The ``merge_source(Y, X)`` of a merged run_status.nc, or None for a model's own file."""
    with open_raw(path) as ds:
        return np.asarray(ds.variables[SOURCE_VAR][:]) if SOURCE_VAR in ds.variables else None


def _read_2d(path: str | os.PathLike[str], name: str) -> np.ndarray:
    if not Path(path).is_file():
        raise UsageError(f"File not found: {path}")
    with open_raw(path) as ds:
        if name not in ds.variables:
            raise UsageError(f"{path} has no variable '{name}'")
        var = ds.variables[name]
        if len(var.dimensions) != 2:
            raise UsageError(f"{path}: variable '{name}' must be 2-D (Y, X), it has dims {var.dimensions}")
        return np.asarray(var[:])


def rewrite_mask(original: str | os.PathLike[str], new: str | os.PathLike[str], *, run: np.ndarray) -> Path:
    """Write ``new`` as a copy of the mask ``original`` (every variable, attribute, encoding) with
    only ``run`` changed."""
    with open_raw(original) as src:
        var = src.variables[MASK_VAR]
        if tuple(var.shape) != tuple(np.shape(run)):
            raise UsageError(f"New run values have shape {np.shape(run)}, mask {original} has {var.shape}")
        with atomic_path(new) as tmp:
            with create_like(src, tmp, skip_data={MASK_VAR}) as dst:
                dst.variables[MASK_VAR][:] = np.asarray(run).astype(var.dtype)
    return Path(new)


def write_run_status(path: str | os.PathLike[str], *, status: np.ndarray, runtime: np.ndarray | None = None) -> Path:
    """Write a run_status.nc as dvmdostem does (NETCDF3_CLASSIC on Y, X; see `salvo.gridded.dvmdostem`), atomically."""
    from salvo.gridded.dvmdostem import write_status

    with atomic_path(path) as tmp:
        write_status(tmp, status=status, runtime=runtime)
    return Path(path)


def _create(path: Path):
    import netCDF4

    ds = netCDF4.Dataset(os.fspath(path), "w", format="NETCDF4")
    ds.set_auto_maskandscale(False)
    ds.set_auto_chartostring(False)
    return ds
