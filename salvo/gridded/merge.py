"""Merge a salvaged run with a re-run of its failed cells, lazily, keeping every file's format."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import netCDF4
import numpy as np

from salvo.errors import UsageError
from salvo.fsutil import atomic_path
from salvo.gridded.formats import SOURCE_VAR, STATUS_FILE, STATUS_VAR, SUCCESS, X, Y
from salvo.gridded.ncschema import create_like, nc_files, open_raw

Log = Callable[[str], None]
#: Bytes of one variable's chunk held in memory at a time (per input; the merge holds about three).
CHUNK_BYTES = 16 << 20
#: HDF5 chunk cache per variable. Whole disk chunks are read and written, so a cache only costs
#: memory (netCDF's default is up to 64 MiB per open variable, three per merged variable).
_CACHE_BYTES = 1 << 20


@dataclass
class MergeReport:
    """What a merge did: files merged or carried over, warnings, and cell counts."""

    salvaged_dir: str
    rerun_dir: str
    output_dir: str
    rerun_index: int
    salvaged_success: int = 0
    rerun_success: int = 0
    total_success: int = 0
    total_cells: int = 0
    merged: list[str] = field(default_factory=list)
    carried_over: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def merge_outputs(salvaged_dir: str | os.PathLike[str], *, rerun_dir: str | os.PathLike[str],
                  output_dir: str | os.PathLike[str], rerun_index: int | None = None,
                  verbose: bool = False, log: Log = print, chunk_bytes: int = CHUNK_BYTES) -> MergeReport:
    """Write into ``output_dir`` every file of ``salvaged_dir`` with the cells the re-run got right replaced.

    In each variable with dims Y and X the value comes from ``rerun_dir`` where the re-run's
    run_status is 100, else from ``salvaged_dir``; everything else is copied from the salvaged
    file. ``run_status.nc`` gains ``merge_source(Y, X)``: 0 for the original run, ``rerun_index``
    (default: one more than the salvaged file's highest) for cells this re-run produced.
    """
    salv, rerun, out = Path(salvaged_dir), Path(rerun_dir), Path(output_dir)
    for label, folder in (("Salvaged", salv), ("Rerun", rerun)):
        if not (folder / STATUS_FILE).is_file():
            raise UsageError(f"{label} directory {folder} has no {STATUS_FILE}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"Output directory {out} must not exist or must be empty")
    if out.resolve() in (salv.resolve(), rerun.resolve()):
        raise UsageError(f"Output directory {out} must differ from the input directories")

    names = [p.name for p in nc_files(salv) if p.name != STATUS_FILE]
    present = [n for n in names if (rerun / n).is_file()]
    for name in [STATUS_FILE, *present]:  # check everything before writing anything
        check_compatible(salv / name, rerun=rerun / name)

    with open_raw(salv / STATUS_FILE) as s_ds, open_raw(rerun / STATUS_FILE) as r_ds:
        s_status = np.asarray(s_ds.variables[STATUS_VAR][:])
        take = np.asarray(r_ds.variables[STATUS_VAR][:]) == SUCCESS
        old_source = np.asarray(s_ds.variables[SOURCE_VAR][:]) if SOURCE_VAR in s_ds.variables else None
    k = rerun_index if rerun_index is not None else (int(old_source.max()) + 1 if old_source is not None and old_source.size else 1)
    source = np.where(take, k, 0 if old_source is None else old_source).astype("i2")
    merged_status = np.where(take, SUCCESS, s_status)
    report = MergeReport(str(salv), str(rerun), str(out), k,
                         salvaged_success=int((s_status == SUCCESS).sum()), rerun_success=int(take.sum()),
                         total_success=int((merged_status == SUCCESS).sum()), total_cells=int(take.size))
    if verbose:
        log(f"Salvaged run - successful cells: {report.salvaged_success}")
        log(f"Rerun - successful cells: {report.rerun_success}")
        log(f"Found {len(names)} files to merge")

    out.mkdir(parents=True, exist_ok=True)
    merge_file(salv / STATUS_FILE, rerun=rerun / STATUS_FILE, output=out / STATUS_FILE, take=take,
               source=source, chunk_bytes=chunk_bytes)
    for name in names:
        if name not in present:
            msg = f"File not found in rerun: {name} (carried over from the salvaged run)"
            report.warnings.append(msg)
            log(f"  Warning: {msg}")
            _copy(salv / name, out / name)
            report.carried_over.append(name)
            continue
        if verbose:
            log(f"  Merging: {name}")
        merge_file(salv / name, rerun=rerun / name, output=out / name, take=take, chunk_bytes=chunk_bytes)
        report.merged.append(name)
    for p in sorted(salv.iterdir()):
        if p.is_file() and p.suffix != ".nc" and not p.name.startswith("."):
            _copy(p, out / p.name)  # logs, configs: kept with the outputs they describe
            report.carried_over.append(p.name)
    for p in nc_files(rerun):
        if not (salv / p.name).exists():
            msg = f"File only in rerun, not merged: {p.name}"
            report.warnings.append(msg)
            log(f"  Warning: {msg}")
    if verbose:
        log("✓ Merge complete")
        log(f"  Merged: {len(report.merged)} files")
        log(f"  Total successful cells: {report.total_success}")
    return report


def check_compatible(salvaged: Path, *, rerun: Path) -> None:
    """Raise a one-line error naming the file and dimension if the two files' dims or coordinates differ."""
    name = salvaged.name
    with open_raw(salvaged) as s, open_raw(rerun) as r:
        for dim in sorted(set(s.dimensions) | set(r.dimensions)):
            if dim not in s.dimensions or dim not in r.dimensions:
                where = "re-run" if dim not in r.dimensions else "salvaged run"
                raise UsageError(f"Dimensions don't match in {name}: dimension '{dim}' is missing from the {where}")
            a, b = len(s.dimensions[dim]), len(r.dimensions[dim])
            if a != b:
                raise UsageError(f"Dimensions don't match in {name}: dimension '{dim}' has size {a} in the "
                                 f"salvaged run and {b} in the re-run")
        for vname, var in s.variables.items():
            if _is_coordinate(vname, var):
                other = r.variables.get(vname)
                if other is None or other.dimensions != var.dimensions or not _same(var[:], other[:]):
                    raise UsageError(f"Coordinates don't match in {name}: '{vname}' along dimension "
                                     f"'{', '.join(var.dimensions)}' differs between the salvaged run and the re-run")
            elif _has_grid(var) and vname != SOURCE_VAR:
                other = r.variables.get(vname)
                if other is None:
                    raise UsageError(f"Variable '{vname}' of {name} is missing from the re-run")
                if set(other.dimensions) != set(var.dimensions) or other.dtype != var.dtype:
                    raise UsageError(f"Dimensions don't match in {name}: variable '{vname}' has dims {var.dimensions} "
                                     f"({var.dtype}) in the salvaged run and {other.dimensions} ({other.dtype}) in the re-run")


def merge_file(salvaged: Path, *, rerun: Path, output: Path, take: np.ndarray,
               source: np.ndarray | None = None, chunk_bytes: int = CHUNK_BYTES) -> None:
    """Write ``output``: ``salvaged``'s layout, re-run values where ``take`` (Y, X) is true, chunk by chunk."""
    with open_raw(salvaged) as s, open_raw(rerun) as r, atomic_path(output) as tmp:
        grid_vars = [n for n, v in s.variables.items() if _has_grid(v) and n != SOURCE_VAR]
        with create_like(s, tmp, skip_data={*grid_vars, SOURCE_VAR}) as dst:
            import dask.array as da  # here, not at import: the simulated model imports this package

            sources, targets = [], []
            for name in grid_vars:
                sv, rv = s.variables[name], r.variables[name]
                for ds, var in ((s, sv), (r, rv), (dst, dst.variables[name])):
                    if ds.data_model.startswith("NETCDF4"):
                        var.set_var_chunk_cache(size=_CACHE_BYTES)
                chunks = plan_chunks(sv.shape, itemsize=sv.dtype.itemsize, disk=sv.chunking(), budget=chunk_bytes)
                s_arr = _lazy(sv, chunks)
                r_arr = _lazy(rv, [chunks[sv.dimensions.index(d)] for d in rv.dimensions])
                r_arr = r_arr.transpose([rv.dimensions.index(d) for d in sv.dimensions])
                sources.append(da.where(broadcast_cells(take, dims=sv.dimensions), r_arr, s_arr))
                targets.append(dst.variables[name])
            if sources:
                da.store(sources, targets, lock=False, scheduler="synchronous")
            if source is not None:
                if SOURCE_VAR not in dst.variables:
                    _add_source_var(dst, s.variables.get(STATUS_VAR))
                dst.variables[SOURCE_VAR][:] = source.astype(dst.variables[SOURCE_VAR].dtype)


def broadcast_cells(take: np.ndarray, *, dims: tuple[str, ...]) -> np.ndarray:
    """Reshape the (Y, X) array ``take`` so it broadcasts against a variable with ``dims`` in any order."""
    iy, ix = dims.index(Y), dims.index(X)
    shape = [1] * len(dims)
    shape[iy], shape[ix] = take.shape
    return (take if iy < ix else take.T).reshape(shape)


def plan_chunks(shape: tuple[int, ...], *, itemsize: int, disk: object, budget: int) -> list[int]:
    """Chunk sizes of about ``budget`` bytes: whole trailing dims, cut along the leading ones on disk-chunk bounds."""
    disk_chunks = list(disk) if isinstance(disk, (list, tuple)) else [1] * len(shape)
    chunks = list(shape)
    for i in range(len(shape)):
        rest = int(np.prod(shape[i + 1:], dtype=np.int64)) * itemsize
        if rest * shape[i] <= budget:
            break
        n = max(1, budget // max(rest, 1))  # slabs of dim i that fit
        step = max(1, min(disk_chunks[i], shape[i]))
        chunks[i] = (n // step) * step if n >= step else n  # whole disk chunks when they fit
        if rest <= budget:
            break
    return [max(1, c) for c in chunks]


def _lazy(var: netCDF4.Variable, chunks: list[int]) -> "da.Array":
    import dask.array as da

    meta = np.empty((0,) * len(var.shape), dtype=var.dtype)
    return da.from_array(var, chunks=tuple(chunks), lock=False, asarray=True, fancy=False, meta=meta)


def _add_source_var(dst: netCDF4.Dataset, status_var: netCDF4.Variable | None) -> None:
    var = dst.createVariable(SOURCE_VAR, "i2", (Y, X))
    attrs = {"long_name": "run that produced the cell", "comment": "0: original run; k: k-th re-run"}
    if status_var is not None and "grid_mapping" in status_var.ncattrs():
        attrs["grid_mapping"] = status_var.getncattr("grid_mapping")
    var.setncatts(attrs)


def _has_grid(var: netCDF4.Variable) -> bool:
    return Y in var.dimensions and X in var.dimensions


def _is_coordinate(name: str, var: netCDF4.Variable) -> bool:
    dims = var.dimensions
    return (len(dims) == 1 and name.lower() == dims[0].lower()) or (name in ("lat", "lon") and _has_grid(var))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)
