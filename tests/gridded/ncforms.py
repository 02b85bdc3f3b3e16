"""Helpers of the cut-short tests: NetCDF files in each format, written by netCDF4-python, and cut copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np

CLASSIC_FORMATS = ("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA")


def convert(src: Path, dst: Path, fmt: str) -> Path:
    """Write ``src``'s dims, attributes and variables into ``dst`` in ``fmt``.

    CDF-1 and CDF-2 have no 64-bit integers: the public files' ``int64`` coordinates are stored as
    ``int32`` there (their values fit); CDF-5 and NETCDF4 keep them.
    """
    with netCDF4.Dataset(src) as s, netCDF4.Dataset(dst, "w", format=fmt) as d:
        s.set_auto_maskandscale(False)
        d.set_auto_maskandscale(False)
        for name, dim in s.dimensions.items():
            d.createDimension(name, None if dim.isunlimited() else len(dim))
        d.setncatts({k: s.getncattr(k) for k in s.ncattrs()})
        for name, var in s.variables.items():
            dtype = var.dtype
            if fmt in CLASSIC_FORMATS[:2] and dtype == np.int64:
                dtype = np.dtype("i4")
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            fill = attrs.pop("_FillValue", None)
            new = d.createVariable(name, dtype, var.dimensions, fill_value=fill)
            new.setncatts(attrs)
            new[...] = np.asarray(var[...]).astype(dtype)
    return dst


def cut(src: Path, dst: Path, size: int) -> Path:
    """A copy of ``src``'s first ``size`` bytes (an interrupted copy or download)."""
    with open(src, "rb") as fh:
        dst.write_bytes(fh.read(size))
    return dst


def copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst
