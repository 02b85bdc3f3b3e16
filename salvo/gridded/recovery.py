"""The file moves of a recovering run: where each round's files live, and keeping the user's mask safe.

The model reads a fixed run-mask path and writes a fixed output folder (dvmdostem takes both from
its config). A round therefore installs the failed-cells mask at the user's mask path, and the
original is kept in the work folder and put back afterwards, also after a crash of an earlier
recovery (a marker file says a swapped mask is in place).
"""

from __future__ import annotations

import filecmp
import json
from datetime import datetime, timezone
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from salvo.errors import UsageError
from salvo.fsutil import atomic_path, atomic_write_text
from salvo.gridded.backup import mirror_files
from salvo.gridded.formats import STATUS_FILE, read_mask

_ROUND = re.compile(r"round-(\d+)$")
JOURNAL = "journal.json"
#: A round's steps, in order; ``rerun-failed`` and ``merge-failed`` end a round whose output folder was put back.
STEPS = ("salvaged", "rerun", "rerun-done", "merging", "merge-done", "merged", "rerun-failed", "merge-failed")


@dataclass(frozen=True)
class RecoveryLayout:
    """The user's mask and output folder, and the work folder holding every round's files."""

    mask: Path
    output: Path
    work: Path

    @property
    def original_mask(self) -> Path:
        """The kept copy of the user's run-mask."""
        return self.work / "original-run-mask.nc"

    @property
    def marker(self) -> Path:
        """Present while a failed-cells mask sits at the user's mask path."""
        return self.work / "mask-swapped.json"

    @property
    def journal(self) -> Path:
        """Each round's steps (salvaged, rerun, rerun-done, merging, merge-done, merged), written atomically."""
        return self.work / JOURNAL

    def round_dir(self, k: int) -> Path:
        """Folder of round ``k``: salvaged/, run-mask-failed.nc, rerun/, merged/."""
        return self.work / f"round-{k}"

    def next_round(self) -> int:
        """The number of the next round (rounds of an earlier recovery keep their folders)."""
        done = [int(m.group(1)) for p in self.work.glob("round-*") if (m := _ROUND.match(p.name))]
        return max(done, default=0) + 1

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready dict."""
        return {"mask": str(self.mask), "output": str(self.output), "work": str(self.work)}


def plan_layout(
    mask: str | os.PathLike[str], *, output: str | os.PathLike[str], work: str | os.PathLike[str] | None = None
) -> RecoveryLayout:
    """Check the inputs and name the folders; the work folder defaults to ``<output>.recovery`` beside it."""
    mask_p, out_p = Path(mask).absolute(), Path(output).absolute()
    if not mask_p.is_file():
        raise UsageError(f"Run-mask not found: {mask}")
    read_mask(mask_p)  # a clear error now if it is not a run-mask
    if out_p.exists() and not out_p.is_dir():
        raise UsageError(f"Output path is not a folder: {output}")
    work_p = Path(work).absolute() if work else out_p.with_name(out_p.name + ".recovery")
    if work_p == out_p or work_p.is_relative_to(out_p):
        raise UsageError(f"Work folder {work_p} must be outside the output folder {out_p}")
    return RecoveryLayout(mask=mask_p, output=out_p, work=work_p)


def keep_original_mask(layout: RecoveryLayout) -> Path:
    """Keep a copy of the user's mask; if an earlier recovery died with a swapped mask, put it back first."""
    layout.work.mkdir(parents=True, exist_ok=True)
    if layout.marker.exists() and layout.original_mask.exists():
        restore_mask(layout)
    with atomic_path(layout.original_mask) as tmp:
        shutil.copy2(layout.mask, tmp)
    return layout.original_mask


def install_mask(layout: RecoveryLayout, failed_mask: Path) -> None:
    """Put the failed-cells mask at the user's mask path (the original stays in the work folder)."""
    if not layout.original_mask.exists():
        raise RuntimeError("the original run-mask must be kept before another is installed")
    atomic_write_text(layout.marker, json.dumps({"installed": str(failed_mask)}))
    with atomic_path(layout.mask) as tmp:
        shutil.copy2(failed_mask, tmp)


def restore_mask(layout: RecoveryLayout) -> bool:
    """Put the user's original mask back if another one is installed; return whether it had to."""
    if not layout.original_mask.exists():
        return False
    swapped = layout.marker.exists() or not filecmp.cmp(layout.original_mask, layout.mask, shallow=False)
    if swapped:
        with atomic_path(layout.mask) as tmp:
            shutil.copy2(layout.original_mask, tmp)
        if not filecmp.cmp(layout.original_mask, layout.mask, shallow=False):
            raise OSError(f"could not put the original run-mask back at {layout.mask}")
    layout.marker.unlink(missing_ok=True)
    return swapped


def mask_is_original(layout: RecoveryLayout) -> bool:
    """Whether the user's mask path holds exactly the kept original."""
    return layout.original_mask.exists() and filecmp.cmp(layout.original_mask, layout.mask, shallow=False)


def has_status(folder: Path) -> bool:
    """Whether a model run left a run_status.nc in ``folder``."""
    return (folder / STATUS_FILE).is_file()


def empty_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (only after its content is backed up and verified)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def move_contents(src: Path, dst: Path) -> None:
    """Move everything inside ``src`` into the new folder ``dst`` (same filesystem: renames)."""
    dst.mkdir(parents=True, exist_ok=False)
    for p in sorted(src.iterdir()):
        shutil.move(p, dst / p.name)


def replace_contents(folder: Path, *, source: Path) -> None:
    """Make ``folder`` hold exactly ``source``'s files, as independent copies (reflinks where possible).

    Never hard links: the model truncates its files in place, which would rewrite ``source`` too.
    """
    empty_folder(folder)
    mirror_files(source, folder)


def move_into(folder: Path, *, source: Path) -> None:
    """Make ``folder`` hold exactly ``source``'s files by moving them (renames); ``source`` is removed."""
    empty_folder(folder)
    for p in sorted(source.iterdir()):
        os.rename(p, folder / p.name)
    source.rmdir()


# ---------------------------------------------------------------- the journal: where a recovery stopped


def read_journal(layout: RecoveryLayout) -> dict:
    """The journal (``{"rounds": {"k": {"step": ..., "steps": [...], ...}}}``); empty if there is none yet."""
    try:
        doc = json.loads(layout.journal.read_text())
    except FileNotFoundError:
        return {"rounds": {}}
    except (OSError, ValueError) as exc:
        raise UsageError(f"The recovery journal {layout.journal} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rounds"), dict):
        raise UsageError(f"The recovery journal {layout.journal} is not a salvo journal")
    return doc


def record_step(layout: RecoveryLayout, k: int, step: str, **info: object) -> None:
    """Write that round ``k`` reached ``step`` (and any ``info``) atomically: a kill leaves the old or new journal."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}")
    doc = read_journal(layout)
    entry = doc["rounds"].setdefault(str(k), {"steps": []})
    entry.update(info)
    entry["step"] = step
    entry["steps"].append({"step": step, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    layout.work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.journal, json.dumps(doc, indent=2, default=str))


def note(layout: RecoveryLayout, k: int, **info: object) -> None:
    """Add ``info`` to round ``k``'s journal entry without changing its step (atomically)."""
    doc = read_journal(layout)
    doc["rounds"].setdefault(str(k), {"steps": []}).update(info)
    atomic_write_text(layout.journal, json.dumps(doc, indent=2, default=str))


def round_step(layout: RecoveryLayout, k: int) -> str | None:
    """The last step round ``k`` reached (None: not in the journal)."""
    return (read_journal(layout)["rounds"].get(str(k)) or {}).get("step")


def round_info(layout: RecoveryLayout, k: int) -> dict:
    """What the journal holds about round ``k``."""
    return dict(read_journal(layout)["rounds"].get(str(k)) or {})


def finish_move(folder: Path, *, source: Path) -> None:
    """Move what is left of ``source`` into ``folder`` (renames), after a move that was cut short; remove ``source``.

    The files already moved stay; those still in ``source`` replace any of the same name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted(source.iterdir()):
        target = folder / p.name
        if p.is_dir() and not p.is_symlink() and target.is_dir():
            finish_move(target, source=p)
        else:
            os.replace(p, target)
    source.rmdir()
