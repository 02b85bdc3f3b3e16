"""Merge a salvaged run with a re-run of its failed cells, streaming, keeping every file's format, verified.

The grid of every file is found by matching the ``run_status`` grid (see :func:`find_grid`): the
outputs of dvmdostem use ``y``/``x``, its run_status and restart files ``Y``/``X``. Every variable
on that grid is merged, whatever its other dimensions and their order. Each merged file is read
back before it is renamed into place: a cell taken from the re-run must hold the re-run's values,
every other cell the salvaged ones, or the merge fails naming the file, variable and cell. The
inputs are read once: while writing, the check keeps a digest per slab of what the merged slab must
hold (computed by its own code from the slabs in memory) and compares the read-back file with them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import netCDF4
import numpy as np

from salvo.errors import UsageError
from salvo.fsutil import TMP_PREFIX, atomic_dir, atomic_path
from salvo.gridded.formats import SOURCE_VAR, STATUS_FILE, STATUS_VAR, SUCCESS
from salvo.gridded.ncschema import check_whole_files, create_like, open_raw

Log = Callable[[str], None]
#: Bytes of one variable's slab held in memory at a time (per input; the merge holds about three).
#: Under 4 MiB: numpy asks the kernel for transparent huge pages for arrays of 4 MiB or more, and
#: faulting those in on a busy machine cost the 8 MiB slabs 2 to 3 times the system time.
CHUNK_BYTES = 3 << 20
#: The largest slab taken to keep whole disk chunks together (see ``plan_chunks``).
MAX_SLAB_BYTES = 32 << 20
#: HDF5 chunk cache per variable: slabs follow the disk chunks, so a cache only costs memory.
_CACHE_BYTES = 1 << 20


class MergeVerificationError(RuntimeError):
    """A merged file does not hold what it should: the merge did not merge. Nothing is renamed into place."""


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
    concatenated: list[str] = field(default_factory=list)  # fail_log.txt: the salvaged run's, then the re-run's
    refused: list[str] = field(default_factory=list)  # files only in the re-run: not merged
    missing: list[str] = field(default_factory=list)  # allowed with allow_missing: carried, the re-run's cells failed
    marked_failed: int = 0  # cells the incomplete re-run would have fixed, left failed (merge_source -k)
    warnings: list[str] = field(default_factory=list)
    verified: dict[str, list[str]] = field(default_factory=dict)  # file -> gridded variables checked cell by cell

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dict(self.__dict__)


# ---------------------------------------------------------------- the grid


@dataclass(frozen=True)
class StatusGrid:
    """The grid of ``run_status``: its two dims' names and sizes, and their 1-D coordinates if the file has any."""

    ydim: str
    xdim: str
    ny: int
    nx: int
    ycoord: np.ndarray | None = None
    xcoord: np.ndarray | None = None


def status_grid(path: str | os.PathLike[str]) -> StatusGrid:
    """Read the grid from ``run_status.nc`` (``run_status(Y, X)``)."""
    with open_raw(path) as ds:
        if STATUS_VAR not in ds.variables:
            raise UsageError(f"{path} has no variable '{STATUS_VAR}'")
        dims = ds.variables[STATUS_VAR].dimensions
        if len(dims) != 2:
            raise UsageError(f"{path}: '{STATUS_VAR}' must be 2-D (Y, X), it has dims {dims}")
        coords = [_coordinate(ds, d) for d in dims]
        return StatusGrid(dims[0], dims[1], len(ds.dimensions[dims[0]]), len(ds.dimensions[dims[1]]), *coords)


def _coordinate(ds: netCDF4.Dataset, dim: str) -> np.ndarray | None:
    """The values of the 1-D coordinate variable of ``dim`` (named like it, any case), if there is one."""
    for name, var in ds.variables.items():
        if var.dimensions == (dim,) and name.lower() == dim.lower():
            return np.asarray(var[:])
    return None


@dataclass(frozen=True)
class FileGrid:
    """Which of a file's dims are the grid's rows and columns (None: the file has no grid)."""

    ydim: str | None
    xdim: str | None

    @property
    def found(self) -> bool:
        """Whether the file is on the grid."""
        return self.ydim is not None and self.xdim is not None


def find_grid(ds: netCDF4.Dataset, grid: StatusGrid, *, name: str) -> FileGrid:
    """Match ``ds``'s dims to the status grid: ``Y``/``X`` or ``y``/``x`` (any case), else size and
    coordinate values."""
    found = []
    for axis, size, coord, status_dim in (
        ("y", grid.ny, grid.ycoord, grid.ydim),
        ("x", grid.nx, grid.xcoord, grid.xdim),
    ):
        by_name = [d for d in ds.dimensions if d.lower() in {axis, status_dim.lower()}]
        if len(by_name) > 1:
            raise UsageError(f"{name}: dimensions {', '.join(by_name)} could all be the grid's {axis.upper()} axis")
        if by_name:
            d = by_name[0]
            if len(ds.dimensions[d]) != size:
                raise UsageError(
                    f"Dimensions don't match in {name}: grid dimension '{d}' has size "
                    f"{len(ds.dimensions[d])}, the run_status grid has {size}"
                )
            found.append(d)
            continue
        by_coord = []
        if coord is not None:
            for d, dim in ds.dimensions.items():
                values = _coordinate(ds, d)
                if len(dim) == size and values is not None and _same(values, coord):
                    by_coord.append(d)
        if len(by_coord) > 1:
            raise UsageError(
                f"{name}: dimensions {', '.join(by_coord)} all match the grid's {axis.upper()} coordinates"
            )
        found.append(by_coord[0] if by_coord else None)
    return FileGrid(*found)


def classify(ds: netCDF4.Dataset, fgrid: FileGrid, grid: StatusGrid, *, name: str) -> tuple[list[str], list[str]]:
    """Split ``ds``'s variables into (gridded, other); raise for a variable that looks gridded but is not matched."""
    gridded, other = [], []
    on_grid = {fgrid.ydim, fgrid.xdim} - {None}
    for vname, var in ds.variables.items():
        dims = var.dimensions
        if vname == SOURCE_VAR:
            other.append(vname)
            continue
        if fgrid.found and fgrid.ydim in dims and fgrid.xdim in dims:
            gridded.append(vname)
            continue
        unmatched = [d for d in dims if d not in on_grid]
        sizes = [len(ds.dimensions[d]) for d in unmatched]
        pair = any(
            a != b and ((sizes[i], sizes[j]) == (grid.ny, grid.nx))
            for i, a in enumerate(unmatched)
            for j, b in enumerate(unmatched)
        )
        partial = bool(on_grid & set(dims)) and not (len(dims) == 1 and vname.lower() == dims[0].lower())
        if pair or (partial and len(dims) > 1):
            raise UsageError(
                f"{name}: variable '{vname}' has dims {dims} of the grid's size "
                f"({grid.ny} x {grid.nx}) that cannot be matched to the run_status grid "
                f"({grid.ydim}, {grid.xdim}); rename them y/x or give them the grid's coordinates"
            )
        other.append(vname)
    return gridded, other


# ---------------------------------------------------------------- the merge


#: dvmdostem's list of failed cells, one per run: the merge concatenates them
#: (as ``scripts/chinook/batch_merge.sh`` does).
FAIL_LOG = "fail_log.txt"


@dataclass
class MergePlan:
    """What a merge will do with every entry of the two runs' folders (paths relative to them, ``/``-separated)."""

    netcdf: list[str] = field(default_factory=list)  # in both runs: merged cell by cell (run_status.nc apart)
    missing: list[str] = field(default_factory=list)  # NetCDF in the salvaged run only
    carried: list[str] = field(default_factory=list)  # other files of the salvaged run: copied byte for byte
    concatenated: list[str] = field(default_factory=list)  # fail_log.txt: salvaged then re-run
    folders: list[str] = field(default_factory=list)  # sub-folders of the salvaged run, re-created
    refused: list[str] = field(default_factory=list)  # "name: why", never carried
    rerun_only: list[str] = field(default_factory=list)  # files only the re-run has: not merged, listed


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Every entry under ``root`` (not following links), as (relative path, path); Salvo's own temporaries left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(TMP_PREFIX))
        links = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in sorted([*filenames, *links]):
            if not name.startswith(TMP_PREFIX):
                yield (here / name).relative_to(root).as_posix(), here / name
        for d in dirnames:
            yield (here / d).relative_to(root).as_posix() + "/", here / d


def plan_merge(salvaged_dir: Path, rerun_dir: Path) -> MergePlan:
    """Sort every entry of the salvaged run (and the re-run's extras) into merged, carried, concatenated or refused."""
    plan = MergePlan()
    rerun_files = {rel for rel, p in _walk(rerun_dir) if not rel.endswith("/")}
    for rel, p in _walk(salvaged_dir):
        if rel.endswith("/"):
            plan.folders.append(rel.rstrip("/"))
        elif p.is_symlink():
            plan.refused.append(f"{rel}: a symbolic link")
        elif not p.is_file():
            plan.refused.append(f"{rel}: not a regular file")
        elif rel == FAIL_LOG:
            plan.concatenated.append(rel)
        elif p.suffix == ".nc" and rel != STATUS_FILE:
            (plan.netcdf if rel in rerun_files else plan.missing).append(rel)
        elif rel != STATUS_FILE:
            plan.carried.append(rel)
    known = {rel for rel, _ in _walk(salvaged_dir)}
    for rel in sorted(rerun_files - known):
        if rel == FAIL_LOG:
            plan.concatenated.append(rel)
        else:
            plan.rerun_only.append(rel)
    return plan


def merge_outputs(
    salvaged_dir: str | os.PathLike[str],
    *,
    rerun_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    rerun_index: int | None = None,
    allow_missing: Iterable[str] = (),
    verbose: bool = False,
    log: Log = print,
    chunk_bytes: int = CHUNK_BYTES,
) -> MergeReport:
    """Write into ``output_dir`` every file of ``salvaged_dir`` with the cells the re-run got right replaced.

    In each variable on the run_status grid the value comes from ``rerun_dir`` where the re-run's
    run_status is 100, else from ``salvaged_dir``; everything else is copied from the salvaged
    file. ``run_status.nc`` gains ``merge_source(Y, X)``: 0 for the original run, ``rerun_index``
    (default: one more than the salvaged file's highest) for cells this re-run produced. The
    folder appears only complete and verified. NetCDF files in sub-folders are merged like the
    others, other files (sub-folders included) carried over byte for byte, ``fail_log.txt``
    concatenated; a link or special file is refused by name before anything is written.

    A NetCDF file of the salvaged run that the re-run lacks is an error before anything is written,
    unless its name is in ``allow_missing``: then the re-run is incomplete, nothing is taken from
    it, and its cells are marked failed: they keep the salvaged run's (failed) status and get
    ``merge_source = -k`` (never 100), so the next round re-runs them.
    """
    salv, rerun, out = Path(salvaged_dir), Path(rerun_dir), Path(output_dir)
    for label, folder in (("Salvaged", salv), ("Rerun", rerun)):
        if not (folder / STATUS_FILE).is_file():
            raise UsageError(f"{label} directory {folder} has no {STATUS_FILE}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"Output directory {out} must not exist or must be empty")
    if out.resolve() in (salv.resolve(), rerun.resolve()):
        raise UsageError(f"Output directory {out} must differ from the input directories")

    plan = plan_merge(salv, rerun)
    check_whole_files(
        [
            salv / STATUS_FILE,
            rerun / STATUS_FILE,
            *(salv / n for n in plan.netcdf + plan.missing),
            *(rerun / n for n in plan.netcdf),
        ]
    )
    if plan.refused:
        raise UsageError(
            f"Cannot carry over from the salvaged run {salv}: {'; '.join(plan.refused)} (nothing was written)"
        )
    allowed = set(allow_missing)
    not_allowed = [n for n in plan.missing if n not in allowed and Path(n).name not in allowed]
    if not_allowed:
        raise UsageError(
            f"File not found in rerun: {', '.join(not_allowed)} (the merge would keep the failed "
            f"run's values in the re-run's cells; nothing was written; --allow-missing NAME marks "
            f"those cells failed instead)"
        )
    grid = status_grid(salv / STATUS_FILE)
    check_compatible(salv / STATUS_FILE, rerun=rerun / STATUS_FILE, grid=grid)  # the rest: file by file, below

    with open_raw(salv / STATUS_FILE) as s_ds, open_raw(rerun / STATUS_FILE) as r_ds:
        s_status = np.asarray(s_ds.variables[STATUS_VAR][:])
        take = np.asarray(r_ds.variables[STATUS_VAR][:]) == SUCCESS
        old_source = np.asarray(s_ds.variables[SOURCE_VAR][:]) if SOURCE_VAR in s_ds.variables else None
    k = (
        rerun_index
        if rerun_index is not None
        else (int(old_source.max()) + 1 if old_source is not None and old_source.size else 1)
    )
    rerun_success = int(take.sum())
    marked = np.zeros_like(take)
    if plan.missing:  # an incomplete re-run: none of its cells is taken; those it would have fixed stay failed
        marked, take = take & (s_status != SUCCESS), np.zeros_like(take)
    source = np.where(take, k, np.where(marked, -k, 0 if old_source is None else old_source)).astype("i2")
    merged_status = np.where(take, SUCCESS, s_status)
    report = MergeReport(
        str(salv),
        str(rerun),
        str(out),
        k,
        salvaged_success=int((s_status == SUCCESS).sum()),
        rerun_success=rerun_success,
        total_success=int((merged_status == SUCCESS).sum()),
        total_cells=int(take.size),
    )
    report.missing, report.marked_failed = list(plan.missing), int(marked.sum())
    if verbose:
        log(f"Salvaged run - successful cells: {report.salvaged_success}")
        log(f"Rerun - successful cells: {report.rerun_success}")
        log(f"Found {len(plan.netcdf) + len(plan.missing)} files to merge")

    with atomic_dir(out) as tmp:
        for d in plan.folders:
            (tmp / d).mkdir(parents=True, exist_ok=True)
        report.verified[STATUS_FILE] = merge_file(
            salv / STATUS_FILE,
            rerun=rerun / STATUS_FILE,
            output=tmp / STATUS_FILE,
            take=take,
            grid=grid,
            source=source,
            chunk_bytes=chunk_bytes,
        )
        for name in plan.missing:
            msg = (
                f"File not found in rerun: {name} (allowed: carried over from the salvaged run; the re-run's "
                f"{report.marked_failed} cells are marked failed, merge_source -{k})"
            )
            report.warnings.append(msg)
            log(f"  Warning: {msg}")
            _copy(salv / name, tmp / name)
            report.carried_over.append(name)
        for name in plan.netcdf:
            if verbose:
                log(f"  Merging: {name}")
            report.verified[name] = merge_file(
                salv / name, rerun=rerun / name, output=tmp / name, take=take, grid=grid, chunk_bytes=chunk_bytes
            )
            report.merged.append(name)
        for name in plan.carried:
            _copy(salv / name, tmp / name)  # logs, configs, calibration files: kept with the outputs they describe
            report.carried_over.append(name)
        for name in plan.concatenated:
            _concatenate([salv / name, rerun / name], tmp / name)
            report.concatenated.append(name)
    for name in plan.rerun_only:
        msg = f"File only in rerun, not merged: {name}"
        report.refused.append(name)
        report.warnings.append(msg)
        log(f"  Warning: {msg}")
    if verbose:
        log("✓ Merge complete")
        log(f"  Merged: {len(report.merged)} files")
        if report.carried_over or report.concatenated:
            joined = ", ".join(report.concatenated) or "none"
            log(f"  Carried over: {len(report.carried_over)} files; concatenated: {joined}")
        log(f"  Total successful cells: {report.total_success}")
    return report


def _concatenate(parts: list[Path], dst: Path) -> None:
    """Write the existing ``parts`` one after the other (each ending with a newline) into ``dst``, atomically."""
    with atomic_path(dst) as tmp:
        with open(tmp, "wb") as fh:
            for part in parts:
                if part.is_file():
                    data = part.read_bytes()
                    fh.write(data if not data or data.endswith(b"\n") else data + b"\n")
            fh.flush()
            os.fsync(fh.fileno())


def check_compatible(salvaged: Path, *, rerun: Path, grid: StatusGrid | None = None) -> tuple[FileGrid, list[str]]:
    """Raise a one-line error naming the file and dimension if the two files' dims or coordinates differ.

    Returns the file's grid dims and its gridded variables.
    """
    with open_raw(salvaged) as s, open_raw(rerun) as r:
        return _check_open(s, r, name=salvaged.name, grid=grid)


def _check_open(
    s: netCDF4.Dataset, r: netCDF4.Dataset, *, name: str, grid: StatusGrid | None
) -> tuple[FileGrid, list[str]]:
    for dim in sorted(set(s.dimensions) | set(r.dimensions)):
        if dim not in s.dimensions or dim not in r.dimensions:
            where = "re-run" if dim not in r.dimensions else "salvaged run"
            raise UsageError(f"Dimensions don't match in {name}: dimension '{dim}' is missing from the {where}")
        a, b = len(s.dimensions[dim]), len(r.dimensions[dim])
        if a != b:
            raise UsageError(
                f"Dimensions don't match in {name}: dimension '{dim}' has size {a} in the "
                f"salvaged run and {b} in the re-run"
            )
    if s.groups or r.groups:
        raise UsageError(f"{name}: NetCDF groups are not supported")
    if grid is None:
        return FileGrid(None, None), []
    fgrid = find_grid(s, grid, name=name)
    gridded, other = classify(s, fgrid, grid, name=name)
    for vname in other:
        var = s.variables[vname]
        if vname != SOURCE_VAR and var.dimensions and _is_coordinate(vname, var, fgrid):
            o = r.variables.get(vname)
            if o is None or o.dimensions != var.dimensions or not _same(var[:], o[:]):
                raise UsageError(
                    f"Coordinates don't match in {name}: '{vname}' along dimension "
                    f"'{', '.join(var.dimensions)}' differs between the salvaged run and the re-run"
                )
    for vname in gridded:
        var, o = s.variables[vname], r.variables.get(vname)
        if o is None:
            raise UsageError(f"Variable '{vname}' of {name} is missing from the re-run")
        if set(o.dimensions) != set(var.dimensions) or o.dtype != var.dtype:
            raise UsageError(
                f"Dimensions don't match in {name}: variable '{vname}' has dims {var.dimensions} "
                f"({var.dtype}) in the salvaged run and {o.dimensions} ({o.dtype}) in the re-run"
            )
        if vname.lower() in ("lat", "lon") and not _same(var[:], o[:]):
            raise UsageError(
                f"Coordinates don't match in {name}: '{vname}' differs between the salvaged run and the re-run"
            )
    return fgrid, gridded


def merge_file(
    salvaged: Path,
    *,
    rerun: Path,
    output: Path,
    take: np.ndarray,
    grid: StatusGrid | None = None,
    source: np.ndarray | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[str]:
    """Write ``output``: ``salvaged``'s layout, re-run values where ``take`` is true, slab by slab; verify it.

    Raises `UsageError` if the two files do not match. Returns the gridded variables merged (and
    verified cell by cell).
    """
    grid = grid or status_grid(salvaged.with_name(STATUS_FILE))
    with open_raw(salvaged) as s, open_raw(rerun) as r:
        fgrid, gridded = _check_open(s, r, name=salvaged.name, grid=grid)
        with atomic_path(output) as tmp:
            if source is None and not take.any():
                shutil.copyfile(salvaged, tmp)  # no cell to take: the bytes as they are (reflink/copy_file_range)
                _check_copy(tmp, salvaged, name=salvaged.name)
                return gridded
            expected = ExpectedDigests(take=take, fgrid=fgrid, gridded=gridded)
            _write_merged(
                s,
                r,
                tmp,
                take=take,
                grid=grid,
                fgrid=fgrid,
                gridded=gridded,
                source=source,
                chunk_bytes=chunk_bytes,
                expected=expected,
            )
            verify_merged(
                tmp, salvaged=s, rerun=r, expected=expected, source=source, name=salvaged.name, chunk_bytes=chunk_bytes
            )
    return gridded


def _write_merged(
    s: netCDF4.Dataset,
    r: netCDF4.Dataset,
    tmp: Path,
    *,
    take: np.ndarray,
    grid: StatusGrid,
    fgrid: FileGrid,
    gridded: list[str],
    source: np.ndarray | None,
    chunk_bytes: int,
    expected: ExpectedDigests,
) -> None:
    """Create ``tmp`` with ``s``'s layout, off-grid variables copied raw, grid variables merged slab by slab.

    Each input slab is read from disk once: ``expected`` takes from the same slabs what the check
    needs (see `ExpectedDigests`), before the merge changes the salvaged slab in place.
    """
    with create_like(s, tmp, skip_data=set(s.variables)) as dst:
        for name, sv in s.variables.items():
            ov = dst.variables[name]
            if name == SOURCE_VAR and source is not None:
                continue
            if name not in gridded:  # off the grid: copied raw
                for sl in slabs(sv, budget=chunk_bytes):
                    values = sv[sl]
                    expected.add_copy(name, sl, values)
                    ov[sl] = values
                continue
            rv = _SlabReader(r.variables[name])
            _small_cache(s, sv), _small_cache(r, rv.var), _small_cache(dst, ov)
            iy, ix = sv.dimensions.index(fgrid.ydim), sv.dimensions.index(fgrid.xdim)
            cells = broadcast_cells(take, dims=sv.dimensions, ydim=fgrid.ydim, xdim=fgrid.xdim)
            for sl in slabs(sv, budget=chunk_bytes):
                values = sv[sl]
                expected.add_merged(name, sl, values, dims=sv.dimensions, rerun=rv)
                where = cells[_cell_slice(cells, sl)]
                if where.any():  # a slab with no re-run cell is the salvaged slab as it is
                    _put_cells(values, _read_as(rv, sl, sv.dimensions), where, iy=iy, ix=ix)
                ov[sl] = values
        if source is not None:
            if SOURCE_VAR not in dst.variables:
                _add_source_var(dst, s.variables.get(STATUS_VAR), grid)
            dst.variables[SOURCE_VAR][:] = source.astype(dst.variables[SOURCE_VAR].dtype)


def _put_cells(values: np.ndarray, new: np.ndarray, where: np.ndarray, *, iy: int, ix: int) -> None:
    """Copy ``new`` into ``values`` where the broadcast cell mask ``where`` is true (only those cells are touched)."""
    if ix == iy + 1 and values.flags.c_contiguous:  # y, x side by side (every dvmdostem file): the cells' columns
        shape = (
            int(np.prod(values.shape[:iy], dtype=np.int64)),
            -1,
            int(np.prod(values.shape[ix + 1 :], dtype=np.int64)),
        )
        flat, cols = values.reshape(shape), where.reshape(-1)
        flat[:, cols] = np.reshape(new, flat.shape)[:, cols]
    else:
        np.copyto(values, new, where=where)


class _SlabReader:
    """A variable that keeps the last slab read from it: the merge and its check share one read of each slab.

    The slab is handed out read-only, so neither side can change what the other sees.
    """

    def __init__(self, var: netCDF4.Variable) -> None:
        self.var = var
        self.dimensions = var.dimensions
        self.dtype = var.dtype
        self._key: tuple | None = None
        self._value: np.ndarray | None = None

    def __getitem__(self, sl: tuple[slice, ...]) -> np.ndarray:
        key = _slab_key(sl)
        if key != self._key:
            value = np.asarray(self.var[sl])
            value.flags.writeable = False
            self._key, self._value = key, value
        return self._value


# ---------------------------------------------------------------- the check


class ExpectedDigests:
    """The check's record, made during the write pass: a digest per slab of what the merged file must hold.

    It is computed from the input slabs the write pass holds in memory (no input is read twice), by
    code of the check's own, apart from the merge's helpers: the re-run's slab as read in its own dim
    order, transposed here, its values put on the taken cells of a copy of the salvaged slab here.
    Only digests are kept (20 bytes a slab), so memory does not grow with the file. (Hashing on a
    second thread was tried: on a busy 2-core machine it cost more CPU and wall time than it saved.)
    """

    def __init__(self, *, take: np.ndarray, fgrid: FileGrid, gridded: list[str]) -> None:
        self.take = take
        self.fgrid = fgrid
        self.gridded = set(gridded)
        self.digests: dict[tuple[str, tuple], bytes] = {}

    def add_copy(self, vname: str, sl: tuple[slice, ...], values: np.ndarray) -> None:
        """An off-grid slab: the merged file must hold these values as they are."""
        self.digests[vname, _slab_key(sl)] = _digest(values)

    def add_merged(
        self,
        vname: str,
        sl: tuple[slice, ...],
        salvaged: np.ndarray,
        *,
        dims: tuple[str, ...],
        rerun: _SlabReader | netCDF4.Variable,
    ) -> None:
        """A gridded slab: the salvaged values with the re-run's on the taken cells (``salvaged`` is not changed)."""
        self.digests[vname, _slab_key(sl)] = _digest(self.want(sl, salvaged, dims=dims, rerun=rerun))

    def want(
        self,
        sl: tuple[slice, ...],
        salvaged: np.ndarray,
        *,
        dims: tuple[str, ...],
        rerun: _SlabReader | netCDF4.Variable,
    ) -> np.ndarray:
        """What the merged slab ``sl`` (in ``dims`` order) must hold; the re-run is read only if a cell is taken."""
        iy, ix = dims.index(self.fgrid.ydim), dims.index(self.fgrid.xdim)
        sub = self.take[sl[iy], sl[ix]]  # (y, x) whatever the variable's order
        if not sub.any():
            return salvaged
        raw = np.asarray(rerun[tuple(sl[dims.index(d)] for d in rerun.dimensions)])  # in the re-run's own dim order
        new = np.transpose(raw, [rerun.dimensions.index(d) for d in dims])
        want = np.array(salvaged, copy=True)
        np.moveaxis(want, (iy, ix), (-2, -1))[..., sub] = np.moveaxis(new, (iy, ix), (-2, -1))[..., sub]
        return want


def verify_merged(
    path: Path,
    *,
    salvaged: netCDF4.Dataset,
    rerun: netCDF4.Dataset,
    expected: ExpectedDigests,
    source: np.ndarray | None,
    name: str,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Read the written file once and compare it, slab by slab, with the digests taken while writing; or raise.

    Every variable of the salvaged file must be there, and every slab of it must have a digest that
    matches (a slab the write pass skipped has none). On a mismatch the inputs are read again for
    that slab only, to name the cell: re-run values in taken cells, salvaged values everywhere else.
    """
    with open_raw(path) as m:
        for vname, var in salvaged.variables.items():
            mv = m.variables.get(vname)
            if mv is None:
                raise MergeVerificationError(
                    f"Merge check failed in {name}: variable '{vname}' is missing from the merged file"
                )
            if vname == SOURCE_VAR and source is not None:
                continue
            _small_cache(m, mv)
            for sl in slabs(var, budget=chunk_bytes):
                got = np.asarray(mv[sl])
                want = expected.digests.get((vname, _slab_key(sl)))
                if want is None or _digest(got) != want:
                    raise _mismatch(
                        got,
                        vname=vname,
                        sl=sl,
                        written=want is not None,
                        salvaged=salvaged,
                        rerun=rerun,
                        expected=expected,
                        name=name,
                    )
        if source is not None:
            got = np.asarray(m.variables[SOURCE_VAR][:])
            if not np.array_equal(got, source.astype(got.dtype)):
                y, x = (int(v) for v in np.argwhere(got != source)[0])
                raise MergeVerificationError(
                    f"Merge check failed in {name}: '{SOURCE_VAR}' is wrong at cell (y={y}, x={x})"
                )


def _mismatch(
    got: np.ndarray,
    *,
    vname: str,
    sl: tuple[slice, ...],
    written: bool,
    salvaged: netCDF4.Dataset,
    rerun: netCDF4.Dataset,
    expected: ExpectedDigests,
    name: str,
) -> MergeVerificationError:
    """The error for a merged slab that does not hold what it must: the inputs' slab read again to name a cell."""
    head = f"Merge check failed in {name}: variable '{vname}'"
    tail = "(the merge did not merge; nothing was written to the output)"
    if not written:
        return MergeVerificationError(f"{head} was not written in full {tail}")
    var = salvaged.variables[vname]
    if vname not in expected.gridded:
        return MergeVerificationError(f"{head} differs from the salvaged file")
    dims = var.dimensions
    want = expected.want(sl, np.asarray(var[sl]), dims=dims, rerun=rerun.variables[vname])
    if got.shape != want.shape:
        return MergeVerificationError(f"{head} has a slab of shape {got.shape} where {want.shape} was expected {tail}")
    differ = _bits_differ(got, want)
    if not differ.any():
        return MergeVerificationError(
            f"{head} differs from what was checked while it was written (did an input change during the merge?) {tail}"
        )
    iy, ix = dims.index(expected.fgrid.ydim), dims.index(expected.fgrid.xdim)
    sub = expected.take[sl[iy], sl[ix]]
    bad = np.moveaxis(differ, (iy, ix), (-2, -1)).reshape(-1, *sub.shape).any(axis=0)
    y, x = (int(v) for v in np.argwhere(bad)[0])
    label = "the re-run's" if sub[y, x] else "the salvaged"
    y, x = y + sl[iy].start, x + sl[ix].start
    return MergeVerificationError(f"{head} at cell (y={y}, x={x}) does not hold {label} values {tail}")


def _check_copy(path: Path, source: Path, *, name: str, block: int = CHUNK_BYTES) -> None:
    """A file copied as it is must be the salvaged file byte for byte."""
    with open(path, "rb") as got, open(source, "rb") as want:
        while True:
            a, b = got.read(block), want.read(block)
            if a != b:
                raise MergeVerificationError(f"Merge check failed in {name}: the copy differs from the salvaged file")
            if not a:
                return


def _digest(values: object) -> bytes:
    """SHA-1 of an array's dtype, shape and bytes: what is stored, bit for bit (NaNs included)."""
    a = np.asarray(values)
    h = hashlib.sha1(f"{a.dtype.str}{a.shape}".encode(), usedforsecurity=False)
    if a.dtype.kind != "O":
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        return h.digest()
    for item in a.reshape(-1):  # variable-length values: strings or arrays, each with its length
        b = item.encode() if isinstance(item, str) else np.asarray(item).dtype.str.encode() + np.asarray(item).tobytes()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.digest()


def _slab_key(sl: tuple[slice, ...]) -> tuple:
    return tuple((s.start, s.stop, s.step) for s in sl)


def slabs(var: netCDF4.Variable, *, budget: int) -> Iterator[tuple[slice, ...]]:
    """Slices covering ``var`` in slabs of about ``budget`` bytes, cut along its leading dims on disk-chunk bounds."""
    shape = var.shape
    if not shape:
        yield ()
        return
    if 0 in shape:
        return
    itemsize = var.dtype.itemsize if isinstance(var.dtype, np.dtype) else 64
    disk = var.chunking() if var.group().data_model.startswith("NETCDF4") else None
    chunks = plan_chunks(shape, itemsize=itemsize, disk=disk, budget=budget)
    ranges = [range(0, n, c) for n, c in zip(shape, chunks)]
    for starts in product(*ranges):
        yield tuple(slice(a, min(a + c, n)) for a, c, n in zip(starts, chunks, shape))


def plan_chunks(shape: tuple[int, ...], *, itemsize: int, disk: object, budget: int) -> list[int]:
    """Chunk sizes of about ``budget`` bytes: whole trailing dims, cut along the leading ones on disk-chunk bounds.

    When a disk chunk fits in the budget, every slab is made of whole disk chunks: where even one
    chunk's extent along a dim times the whole trailing dims is over budget, the slab takes that
    extent and is cut along the next dims too. A slab that cut a chunk would make every slab over
    that chunk read (and decompress) it again, and write it in pieces.
    """
    disk_chunks = list(disk) if isinstance(disk, (list, tuple)) else [1] * len(shape)
    steps = [max(1, min(int(c), n)) for c, n in zip(disk_chunks, shape)]
    # A disk chunk over the budget (netCDF's default chunks of a compressed (1200, 150, 185) float32: 7.4 MB) still
    # gets slabs of whole chunks, up to MAX_SLAB_BYTES: cut, each chunk was decompressed once per slab over it.
    chunk_bytes = int(np.prod(steps, dtype=np.int64)) * itemsize
    if budget < chunk_bytes <= MAX_SLAB_BYTES:
        budget = chunk_bytes
    aligned = int(np.prod(steps, dtype=np.int64)) * itemsize <= budget
    chunks = list(shape)
    outer = 1  # elements of the slab in the dims already cut
    for i in range(len(shape)):
        rest = int(np.prod(shape[i + 1 :], dtype=np.int64)) * itemsize * outer
        if rest * shape[i] <= budget:
            break
        n = budget // max(rest, 1)  # slabs of dim i that fit
        step = steps[i]
        if n >= step:
            chunks[i] = (n // step) * step  # whole disk chunks
            break
        if aligned:
            chunks[i], outer = step, outer * step  # one disk chunk along i; cut the next dims too
            continue
        chunks[i] = max(1, n)
        if n >= 1:
            break
    return [max(1, c) for c in chunks]


def broadcast_cells(take: np.ndarray, *, dims: tuple[str, ...], ydim: str = "Y", xdim: str = "X") -> np.ndarray:
    """Reshape the (Y, X) array ``take`` so it broadcasts against a variable with ``dims`` in any order."""
    iy, ix = dims.index(ydim), dims.index(xdim)
    shape = [1] * len(dims)
    shape[iy], shape[ix] = take.shape
    return (take if iy < ix else take.T).reshape(shape)


def _cell_slice(cells: np.ndarray, sl: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(s if n > 1 else slice(None) for s, n in zip(sl, cells.shape))


def _read_as(var: netCDF4.Variable, sl: tuple[slice, ...], dims: tuple[str, ...]) -> np.ndarray:
    """Read the slab ``sl`` (given in ``dims`` order) of ``var``, whose dims may come in another order."""
    if var.dimensions == dims:
        return var[sl]
    order = [dims.index(d) for d in var.dimensions]
    values = var[tuple(sl[i] for i in order)]
    return values.transpose([var.dimensions.index(d) for d in dims])


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind in "fiuc" and a.dtype.itemsize in (1, 2, 4, 8):
        return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind != "c" else a.view("u8")
    return a


def _bits_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _bits(np.ascontiguousarray(a)) != _bits(np.ascontiguousarray(b))


def _small_cache(ds: netCDF4.Dataset, var: netCDF4.Variable) -> None:
    if ds.data_model.startswith("NETCDF4") and var.chunking() != "contiguous":
        var.set_var_chunk_cache(size=_CACHE_BYTES)


def _add_source_var(dst: netCDF4.Dataset, status_var: netCDF4.Variable | None, grid: StatusGrid) -> None:
    var = dst.createVariable(SOURCE_VAR, "i2", (grid.ydim, grid.xdim))
    attrs = {"long_name": "run that produced the cell", "comment": "0: original run; k: k-th re-run"}
    if status_var is not None and "grid_mapping" in status_var.ncattrs():
        attrs["grid_mapping"] = status_var.getncattr("grid_mapping")
    var.setncatts(attrs)


def _is_coordinate(name: str, var: netCDF4.Variable, fgrid: FileGrid) -> bool:
    dims = var.dimensions
    return len(dims) == 1 and name.lower() == dims[0].lower()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _copy(src: Path, dst: Path) -> None:
    """Carry ``src`` over as it is (a log, a file the re-run lacks), checked byte for byte before it
    is renamed into place."""
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)
        _check_copy(tmp, src, name=src.name)
