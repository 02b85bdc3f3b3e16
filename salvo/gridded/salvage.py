"""Salvage a partly failed gridded run: back up its outputs and write a run-mask of the cells to re-run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salvo.errors import UsageError
from salvo.gridded.backup import BackupReport, backup_outputs
from salvo.gridded.formats import STATUS_FILE, STATUS_FILL, SUCCESS, read_mask, read_status, rewrite_mask
from salvo.gridded.ncschema import check_whole_files, netcdf_under

Log = Callable[[str], None]


@dataclass
class StatusCounts:
    """How the enabled cells of a run ended."""

    enabled: int = 0
    success: int = 0
    failed: int = 0  # negative status (other than the fill)
    not_run: int = 0  # status 0
    unwritten: int = 0  # the -9999 fill (or any other value)
    values: dict[str, int] = field(default_factory=dict)  # every raw status value -> cell count

    @property
    def to_rerun(self) -> int:
        """Enabled cells that did not succeed."""
        return self.enabled - self.success

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {**self.__dict__, "to_rerun": self.to_rerun}


@dataclass
class SalvageReport:
    """What a salvage did: the backup, the new mask and the counts behind it."""

    output_dir: str
    backup: BackupReport
    new_mask: str
    counts: StatusCounts

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "output_dir": self.output_dir,
            "backup": self.backup.to_dict(),
            "new_mask": self.new_mask,
            "counts": self.counts.to_dict(),
        }


def build_rerun_mask(mask: np.ndarray, *, status: np.ndarray) -> np.ndarray:
    """Cells to re-run: enabled in ``mask`` and not a success (negative, 0, fill) in ``status``; 1/0 ints."""
    mask, status = np.asarray(mask), np.asarray(status)
    if mask.shape != status.shape:
        raise UsageError(f"Run-mask shape {mask.shape} does not match run_status shape {status.shape}")
    return ((mask != 0) & (status != SUCCESS)).astype(mask.dtype)


def count_statuses(mask: np.ndarray, *, status: np.ndarray) -> StatusCounts:
    """Count how the cells enabled in ``mask`` ended in ``status``."""
    mask, status = np.asarray(mask), np.asarray(status)
    if mask.shape != status.shape:
        raise UsageError(f"Run-mask shape {mask.shape} does not match run_status shape {status.shape}")
    s = status[mask != 0]
    values, counts = np.unique(s, return_counts=True)
    success, failed, not_run = int((s == SUCCESS).sum()), int(((s < 0) & (s != STATUS_FILL)).sum()), int((s == 0).sum())
    return StatusCounts(
        enabled=int(s.size),
        success=success,
        failed=failed,
        not_run=not_run,
        unwritten=int(s.size) - success - failed - not_run,
        values={str(int(v)): int(c) for v, c in zip(values, counts)},
    )


def salvage_run(
    output_dir: str | os.PathLike[str],
    *,
    backup_dir: str | os.PathLike[str],
    original_mask: str | os.PathLike[str],
    new_mask: str | os.PathLike[str],
    run_status: str | os.PathLike[str] | None = None,
    copy: bool = False,
    verbose: bool = False,
    log: Log = print,
) -> SalvageReport:
    """Back up ``output_dir`` and write ``new_mask`` enabling only the cells that must be re-run.

    By default the outputs are moved to ``backup_dir`` and ``output_dir`` is left empty for the re-run;
    ``copy=True`` copies them (reflinks where possible) and leaves ``output_dir`` as it was.
    """
    out = Path(output_dir)
    status_path = Path(run_status) if run_status else out / STATUS_FILE
    if Path(backup_dir).exists():
        raise UsageError(f"Backup directory already exists: {backup_dir}")
    if Path(new_mask).resolve() == Path(original_mask).resolve():
        raise UsageError(f"--new-mask {new_mask} must differ from --original-mask (the original is never overwritten)")
    for flag, path in (("--new-mask", new_mask), *(() if copy else (("--original-mask", original_mask),))):
        if out.is_dir() and Path(path).resolve().is_relative_to(out.resolve()):
            raise UsageError(
                f"{flag} {path} must not be inside the output directory {out} "
                f"(the backup moves that folder away{'' if copy else '; or use --copy'})"
            )
    check_whole_files([original_mask, status_path, *netcdf_under(out)])  # a cut file: one line naming every one
    mask = read_mask(original_mask)
    status = read_status(status_path)
    if mask.shape != status.shape:
        raise UsageError(
            f"Run-mask shape {mask.shape} ({original_mask}) does not match "
            f"run_status shape {status.shape} ({status_path})"
        )
    rerun = build_rerun_mask(mask, status=status)
    counts = count_statuses(mask, status=status)
    if verbose:
        log(f"Salvaging run from: {output_dir}")
        log(f"Creating backup at: {backup_dir}")
    backup = backup_outputs(out, backup_dir=backup_dir, copy=copy)
    log(f"✓ Backup created at: {backup_dir}")
    if verbose:
        methods = ", ".join(f"{n} {m}" for m, n in sorted(backup.methods.items()))
        log(f"  {backup.files} files, {backup.bytes} bytes ({methods or 'empty'}), verified")
        if not copy:
            log(f"  {output_dir} is now empty, ready for the re-run (the backup is the only copy: do not edit it)")
    rewrite_mask(original_mask, new_mask, run=rerun)
    log(f"✓ New run-mask created at: {new_mask}")
    log(f"  Number of failed cells to re-run: {int(rerun.astype(bool).sum())}")
    if verbose:
        log(
            f"  Enabled cells: {counts.enabled}, succeeded: {counts.success}, failed: {counts.failed}, "
            f"not run: {counts.not_run}, never written: {counts.unwritten}"
        )
    return SalvageReport(output_dir=str(out), backup=backup, new_mask=str(new_mask), counts=counts)
