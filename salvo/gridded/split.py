"""A gridded run split into batches of cells, as dvmdostem's own cluster scripts split it, and merged back.

dvmdostem's ``scripts/chinook/batch_split_for_chinook.py`` cuts the run-mask into batches of N
enabled cells (``IDEAL_CELLS_PER_BATCH = 25``), each with a run-mask of the full grid where only
its cells are on and an output folder of its own; ``batch_merge.sh`` then joins the batches'
outputs. Here each batch is recovered on its own (salvage, re-run, merge, round after round) and
:func:`merge_batches` joins them into one full-domain output, complete or not at all: every batch
must have every file, each cell is taken from the batch that owns it (checked cell by cell by
:func:`salvo.gridded.merge.merge_file`), ``run_status.nc`` says which batch (``merge_batch``) and
which round (``merge_source``) produced each cell, and the batches' ``fail_log.txt`` are concatenated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from salvo.errors import UsageError
from salvo.fsutil import atomic_dir, atomic_path, atomic_write_text
from salvo.gridded.formats import RUNTIME_VAR, SOURCE_VAR, STATUS_FILE, STATUS_VAR, read_mask, rewrite_mask
from salvo.gridded.ncschema import create_like, open_raw

#: dvmdostem's own default batch size (scripts/chinook/batch_split_for_chinook.py).
IDEAL_CELLS_PER_BATCH = 25
#: The variable of the merged run_status.nc that names the batch of each cell (0: no batch ran it).
BATCH_VAR = "merge_batch"
FAIL_LOG = "fail_log.txt"
PLAN_FILE = "batches.json"


@dataclass(frozen=True)
class Batch:
    """One batch: its number (1-based), its cells, its run-mask, output and work folders."""

    number: int
    cells: tuple[tuple[int, int], ...]
    mask: str
    output: str
    work: str

    @property
    def name(self) -> str:
        return f"batch-{self.number:03d}"


def split_mask(mask: str | os.PathLike[str], *, cells_per_batch: int, root: str | os.PathLike[str]) -> list[Batch]:
    """Write ``root/batch-NNN/run-mask.nc`` for each batch of ``cells_per_batch`` enabled cells (row-major order).

    A second call with the same mask and size finds the same plan and keeps the batches' folders
    (a resumed run); another size or mask in the same ``root`` is refused in one line.
    """
    if cells_per_batch < 1:
        raise UsageError(f"--cells-per-batch must be at least 1, not {cells_per_batch}")
    run = read_mask(mask)
    ys, xs = np.nonzero(run == 1)
    if ys.size == 0:
        raise UsageError(f"Run-mask {mask} enables no cell: nothing to split")
    root_p = Path(root).absolute()
    digest = hashlib.blake2b(np.ascontiguousarray(run).tobytes() + str(run.shape).encode(), digest_size=16).hexdigest()
    plan = {"mask_digest": digest, "cells_per_batch": cells_per_batch, "shape": list(run.shape)}
    plan_file = root_p / PLAN_FILE
    if plan_file.exists():
        old = json.loads(plan_file.read_text())
        if {k: old.get(k) for k in plan} != plan:
            raise UsageError(
                f"{root_p} holds batches of another split (cells per batch {old.get('cells_per_batch')}, "
                f"or another run-mask): give another --work-dir, or remove it"
            )
    cells = list(zip(ys.tolist(), xs.tolist()))
    batches = []
    for i in range(0, len(cells), cells_per_batch):
        number = i // cells_per_batch + 1
        folder = root_p / f"batch-{number:03d}"
        own = tuple(cells[i : i + cells_per_batch])
        batch = Batch(number, own, str(folder / "run-mask.nc"), str(folder / "output"), str(folder / "work"))
        if not Path(batch.mask).exists():
            folder.mkdir(parents=True, exist_ok=True)
            rewrite_mask(mask, batch.mask, run=cell_mask(run.shape, own).astype(run.dtype))
        batches.append(batch)
    plan["batches"] = [asdict(b) for b in batches]
    atomic_write_text(plan_file, json.dumps(plan, indent=1))
    return batches


def cell_mask(shape: tuple[int, ...], cells: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> np.ndarray:
    """A boolean (Y, X) grid, true at ``cells``."""
    out = np.zeros(shape, dtype=bool)
    if cells:
        ys, xs = zip(*cells)
        out[list(ys), list(xs)] = True
    return out


def batch_outputs(batch: Batch) -> list[str]:
    """The NetCDF files a batch's output folder holds."""
    folder = Path(batch.output)
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix == ".nc") if folder.is_dir() else []


def verify_batch(item, result) -> str | None:
    """A batch's output contract: its recovery left ``run_status.nc`` in its output folder."""
    folder = Path(item.outputs[0]) if item.outputs else None
    if folder is None or not (folder / STATUS_FILE).is_file():
        return f"the batch's recovery exited 0 but left no {STATUS_FILE} in {folder}"
    return None


def check_complete(batches: list[Batch]) -> list[str]:
    """The file names every batch has; one line naming the batch and file when one lacks any."""
    names: dict[int, set[str]] = {b.number: set(batch_outputs(b)) for b in batches}
    for b in batches:
        if STATUS_FILE not in names[b.number]:
            raise UsageError(f"{b.name} has no {STATUS_FILE} in {b.output}: its model never finished; nothing merged")
        for sub in sorted(p.name for p in Path(b.output).iterdir() if p.is_dir()):
            raise UsageError(f"{b.name}: sub-folder {sub}/ in {b.output} is not merged by batch; nothing merged")
    every = set().union(*names.values())
    for b in batches:
        missing = sorted(every - names[b.number])
        if missing:
            raise UsageError(
                f"{b.name} lacks {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + " that other batches wrote: nothing merged"
            )
    return sorted(every)


def merge_batches(
    batches: list[Batch], output: str | os.PathLike[str], *, log: Callable[[str], None] = lambda _: None
) -> dict:
    """Join the batches' outputs into ``output`` (replaced only once the whole merge checks)."""
    from salvo.gridded.merge import merge_file, status_grid

    names = check_complete(batches)
    first = Path(batches[0].output)
    grid = status_grid(first / STATUS_FILE)
    owned = [cell_mask((grid.ny, grid.nx), b.cells) for b in batches]
    out = Path(output)
    with atomic_dir(out) as tmp:
        status = _merge_status(batches, owned, tmp / STATUS_FILE)
        for name in names:
            if name == STATUS_FILE:
                continue
            current = first / name
            for b, take in zip(batches[1:], owned[1:]):
                step = tmp / f".{name}.{b.number}"
                merge_file(current, rerun=Path(b.output) / name, output=step, take=take, grid=grid)
                if current.parent == tmp:
                    current.unlink()
                current = step
            if current.parent == tmp:
                os.replace(current, tmp / name)
            else:
                with atomic_path(tmp / name) as part:
                    shutil.copyfile(current, part)
            log(f"merged {name} from {len(batches)} batches")
        logs = _concat_fail_logs(batches, tmp / FAIL_LOG)
    return {
        "batches": len(batches),
        "files": names,
        "fail_logs": logs,
        "success_cells": int((status == 100).sum()),
        "enabled_cells": int(sum(len(b.cells) for b in batches)),
        "output": str(out),
    }


def _merge_status(batches: list[Batch], owned: list[np.ndarray], path: Path) -> np.ndarray:
    """run_status.nc of the whole domain: each cell's status, runtime and round from the batch that owns
    it, and ``merge_batch`` naming that batch."""
    first = Path(batches[0].output) / STATUS_FILE
    with open_raw(first) as src:
        status = np.array(src.variables[STATUS_VAR][:])
        runtime = np.array(src.variables[RUNTIME_VAR][:]) if RUNTIME_VAR in src.variables else None
        source = np.zeros(status.shape, dtype="i2")
        which = np.zeros(status.shape, dtype="i2")
        for b, take in zip(batches, owned):
            with open_raw(Path(b.output) / STATUS_FILE) as ds:
                if ds.variables[STATUS_VAR].shape != status.shape:
                    raise UsageError(
                        f"{b.name}: {STATUS_FILE} has shape {ds.variables[STATUS_VAR].shape}, "
                        f"{batches[0].name} has {status.shape}: nothing merged"
                    )
                status[take] = np.asarray(ds.variables[STATUS_VAR][:])[take]
                if runtime is not None and RUNTIME_VAR in ds.variables:
                    runtime[take] = np.asarray(ds.variables[RUNTIME_VAR][:])[take]
                if SOURCE_VAR in ds.variables:
                    source[take] = np.asarray(ds.variables[SOURCE_VAR][:])[take]
            which[take] = b.number
        skip = {STATUS_VAR, RUNTIME_VAR, SOURCE_VAR} & set(src.variables)
        dims = src.variables[STATUS_VAR].dimensions
        with atomic_path(path) as tmp:
            with create_like(src, tmp, skip_data=skip) as dst:
                dst.variables[STATUS_VAR][:] = status
                if runtime is not None:
                    dst.variables[RUNTIME_VAR][:] = runtime
                if SOURCE_VAR not in dst.variables:
                    dst.createVariable(SOURCE_VAR, "i2", dims)
                dst.variables[SOURCE_VAR].setncatts(
                    {
                        "long_name": "round that produced the cell, in its batch",
                        "comment": "0: the batch's first model run; k: its k-th re-run",
                    }
                )
                dst.variables[SOURCE_VAR][:] = source
                var = dst.createVariable(BATCH_VAR, "i2", dims)
                var.setncatts(
                    {"long_name": "batch that produced the cell", "comment": "k: batch-k; 0: no batch ran it"}
                )
                var[:] = which
            with open_raw(tmp) as check:  # read back what was written, cell for cell
                if not (
                    np.array_equal(check.variables[STATUS_VAR][:], status)
                    and np.array_equal(check.variables[BATCH_VAR][:], which)
                    and np.array_equal(check.variables[SOURCE_VAR][:], source)
                ):
                    raise OSError(f"{path.name}: the merged status did not read back as written")
    return status


def _concat_fail_logs(batches: list[Batch], path: Path) -> list[str]:
    """Every batch's fail_log.txt, one after another under a line naming the batch (as batch_merge.sh
    concatenates them); no file when no batch wrote one."""
    parts, used = [], []
    for b in batches:
        log = Path(b.output) / FAIL_LOG
        if log.is_file():
            text = log.read_text(errors="replace")
            parts.append(f"# {b.name}\n{text}" + ("" if text.endswith("\n") or not text else "\n"))
            used.append(str(log))
    if parts:
        atomic_write_text(path, "".join(parts))
    return used
