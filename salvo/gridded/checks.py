"""Up-front checks of `salvo salvage` / `merge` / `recover` (and `pyddt-*`): one-line `UsageError`, nothing touched.

Built on `salvo.validate`; each function checks every argument of one command before any file is
read for work, moved or written, and before Prefect starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from salvo import validate
from salvo.errors import UsageError
from salvo.gridded.formats import STATUS_FILE, read_mask, read_status
from salvo.gridded.ncschema import check_whole_files, netcdf_under


def _inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    a, b = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return a == b or b in a.parents


def new_file(path: str | os.PathLike[str], what: str) -> Path:
    """A file about to be written: not a folder or special file, in an existing writable folder."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} is a folder, not a file: {path}")
    if p.exists() and not p.is_file():
        raise UsageError(f"{what} is not a regular file: {path}")
    parent = p.parent if str(p.parent) else Path(".")
    validate.existing_dir(parent, f"folder of {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} cannot be written (permission denied): {parent}")
    return p


def check_salvage(
    output_dir: str,
    backup_dir: str,
    *,
    original_mask: str,
    new_mask: str,
    run_status: str | None = None,
    copy: bool = False,
) -> None:
    """Arguments of `salvo salvage` / `pyddt-salvage`."""
    validate.existing_dir(output_dir, "Output directory")
    if Path(backup_dir).exists() or Path(backup_dir).is_symlink():
        raise UsageError(f"Backup directory already exists: {backup_dir}")
    validate.output_dir(backup_dir, "Backup directory")
    if _inside(backup_dir, output_dir):
        raise UsageError(f"Backup directory {backup_dir} must not be inside the output directory {output_dir}")
    validate.regular_file(original_mask, "--original-mask")
    status = validate.regular_file(
        run_status or Path(output_dir) / STATUS_FILE, "--run-status" if run_status else STATUS_FILE
    )
    check_whole_files([original_mask, status, *netcdf_under(output_dir)])  # every cut file named, in one line
    read_mask(original_mask)
    read_status(status)
    new_file(new_mask, "--new-mask")
    if os.path.realpath(new_mask) == os.path.realpath(original_mask):
        raise UsageError(f"--new-mask {new_mask} must differ from --original-mask (the original is never overwritten)")
    for flag, path in (("--new-mask", new_mask), *(() if copy else (("--original-mask", original_mask),))):
        if _inside(path, output_dir):
            raise UsageError(
                f"{flag} {path} must not be inside the output directory {output_dir} "
                f"(the backup moves that folder away{'' if copy else '; or use --copy'})"
            )


def check_merge(salvaged_dir: str, rerun_dir: str, output_dir: str) -> None:
    """Arguments of `salvo merge` / `pyddt-merge`."""
    for label, folder in (("Salvaged directory", salvaged_dir), ("Rerun directory", rerun_dir)):
        validate.existing_dir(folder, label)
        validate.regular_file(Path(folder) / STATUS_FILE, f"{label}'s {STATUS_FILE}")
    validate.output_dir(output_dir, "Output directory")
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"Output directory {output_dir} must not exist or must be empty")
    validate.check_layout({"OUTPUT_DIR": output_dir}, inputs=[salvaged_dir, rerun_dir])


def check_recover(
    *, model_command: str, mask: str, output: str, work_dir: str | None, max_rounds: object, timeout: object
) -> float | None:
    """Arguments of `salvo recover`; returns the timeout in seconds (None: no limit)."""
    validate.command_argv(model_command, "--model-command")
    validate.number(max_rounds, "--max-rounds", minimum=1, integer=True)
    seconds = None if timeout is None else validate.duration(timeout, "--timeout")
    validate.regular_file(mask, "Run-mask")
    read_mask(mask)
    validate.output_dir(output, "--output")
    if _inside(mask, output):
        raise UsageError(
            f"--mask {mask} must not be inside --output {output}: the output folder is moved "
            f"away and emptied between rounds"
        )
    if work_dir is not None:
        validate.output_dir(work_dir, "--work-dir")
        if _inside(work_dir, output):
            raise UsageError(f"--work-dir {work_dir} must be outside the output folder {output}")
        if _inside(mask, work_dir):
            raise UsageError(f"--mask {mask} must not be inside --work-dir {work_dir}")
    return seconds
