"""Copy a NetCDF file's layout exactly: dims, variables, dtypes, fill values, compression, attributes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from salvo.errors import UsageError
from salvo.ncfile import cut_short

#: Compression filters we can recreate on a new variable (netCDF4 ``compression=`` names).
_CODECS = ("zlib", "zstd", "bzip2")


def open_raw(path: str | os.PathLike[str], mode: str = "r") -> netCDF4.Dataset:
    """Open a NetCDF file so that values are read and written raw (no masking, scaling, chars).

    A file opened for reading is first checked to be whole (`salvo.ncfile`, the header only): a file
    cut short is a one-line `UsageError` (``bad input: <file> is cut short: N of M bytes``).
    """
    if mode == "r":
        check_whole_files([path])
    try:
        ds = netCDF4.Dataset(os.fspath(path), mode)
    except OSError as exc:
        raise UsageError(f"Cannot open NetCDF file {path}: {exc}") from exc
    ds.set_auto_maskandscale(False)
    ds.set_auto_chartostring(False)
    return ds


def check_whole_files(paths) -> None:
    """Raise one `UsageError` naming every NetCDF file among ``paths`` that is cut short (headers read only)."""
    cut = cut_short(paths)
    if cut:
        raise UsageError("bad input: " + "; ".join(str(exc) for exc in cut))


def variable_options(var: netCDF4.Variable, *, data_model: str) -> dict[str, Any]:
    """The ``createVariable`` keyword options that recreate ``var``'s storage (fill, filters, chunks)."""
    opts: dict[str, Any] = {}
    attrs = var.ncattrs()
    opts["fill_value"] = var.getncattr("_FillValue") if "_FillValue" in attrs else None
    if not data_model.startswith("NETCDF4"):
        return opts
    filters = var.filters() or {}
    codec = next((c for c in _CODECS if filters.get(c)), None)
    if codec is None and (filters.get("szip") or filters.get("blosc")):
        raise UsageError(f"Variable {var.name}: szip/blosc compression is not supported")
    if codec is not None:
        opts.update(compression=codec, complevel=filters.get("complevel", 4))
    opts["shuffle"] = bool(filters.get("shuffle", False))
    opts["fletcher32"] = bool(filters.get("fletcher32", False))
    chunking = var.chunking()
    if chunking == "contiguous":
        opts["contiguous"] = True
    elif chunking is not None:
        opts["chunksizes"] = list(chunking)
    opts["endian"] = var.endian()
    return opts


def create_like(
    src: netCDF4.Dataset, path: str | os.PathLike[str], *, skip_data: set[str] = frozenset()
) -> netCDF4.Dataset:
    """Create ``path`` with ``src``'s layout; copy every variable's data except those in ``skip_data``.

    The caller must write every value of the variables in ``skip_data`` (the file is not prefilled).
    """
    if src.groups:
        raise UsageError(f"{src.filepath()}: NetCDF groups are not supported")
    dst = netCDF4.Dataset(os.fspath(path), "w", format=src.data_model)
    dst.set_auto_maskandscale(False)
    dst.set_auto_chartostring(False)
    dst.set_fill_off()  # every value is written below or by the caller: no prefill pass over the file
    try:
        for name, dim in src.dimensions.items():
            dst.createDimension(name, None if dim.isunlimited() else len(dim))
        dst.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
        for name, var in src.variables.items():
            new = dst.createVariable(
                name, var.datatype, var.dimensions, **variable_options(var, data_model=src.data_model)
            )
            new.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
            if name not in skip_data:
                copy_values(var, new)
    except BaseException:
        dst.close()
        raise
    return dst


def copy_values(src: netCDF4.Variable, dst: netCDF4.Variable, *, max_bytes: int = 64 << 20) -> None:
    """Copy ``src``'s values into ``dst`` slab by slab along the first dimension, bounded in memory."""
    if not src.dimensions:
        dst.assignValue(src.getValue())
        return
    shape = src.shape
    if 0 in shape:
        return
    itemsize = src.dtype.itemsize if isinstance(src.dtype, np.dtype) else 64
    row = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    step = max(1, max_bytes // row)
    for start in range(0, shape[0], step):
        sl = slice(start, min(start + step, shape[0]))
        dst[sl] = src[sl]


def describe_netcdf(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a NetCDF file (what ``ncdump -hs`` shows) as a comparable dict."""
    with open_raw(path) as ds:
        out: dict[str, Any] = {
            "format": ds.data_model,
            "dims": {n: (len(d), d.isunlimited()) for n, d in ds.dimensions.items()},
            "attrs": {k: _plain(ds.getncattr(k)) for k in ds.ncattrs()},
            "vars": {},
        }
        for name, var in ds.variables.items():
            out["vars"][name] = {
                "dtype": str(var.dtype),
                "dims": var.dimensions,
                "attrs": {k: _plain(var.getncattr(k)) for k in var.ncattrs()},
                "filters": var.filters() if ds.data_model.startswith("NETCDF4") else None,
                "chunking": var.chunking() if ds.data_model.startswith("NETCDF4") else None,
                "endian": var.endian(),
            }
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.tolist())
    if isinstance(value, np.generic):
        return (str(value.dtype), value.item())
    return value


def netcdf_under(folder: str | os.PathLike[str]) -> list[Path]:
    """Every NetCDF file under ``folder``, sub-folders included (links not followed), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [Path(dirpath) / n for n in sorted(filenames) if n.endswith(".nc") and not n.startswith(".")]
    return found


def nc_files(folder: Path) -> list[Path]:
    """The NetCDF files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".nc" and not p.name.startswith("."))
