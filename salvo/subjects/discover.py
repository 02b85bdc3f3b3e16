"""Find the units of a BIDS dataset: one per ``sub-*/[ses-*/]dwi/*_dwi.nii[.gz]`` image."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path

from salvo.errors import UsageError
from salvo.subjects.manifest import Subject, unsafe_id_reason

#: Folders at the top of a BIDS dataset that never hold raw subjects.
IGNORED_TOP = ("derivatives", "sourcedata", "code", "stimuli")
_DWI_SUFFIXES = ("_dwi.nii.gz", "_dwi.nii")


def _entities(stem: str) -> dict[str, str]:
    """``sub-01_ses-test_run-1`` -> {'sub': '01', 'ses': 'test', 'run': '1'}."""
    out = {}
    for part in stem.split("_"):
        key, sep, value = part.partition("-")
        if sep and key and value:
            out[key] = value
    return out


def _visible_dirs(folder: Path, prefix: str) -> list[Path]:
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    return [c for c in children if c.name.startswith(prefix) and not c.name.startswith(".") and c.is_dir()]


def _find_sidecar(image: Path, stem: str, ext: str, root: Path) -> str | None:
    """The nearest ``.bval``/``.bvec`` whose entities are a subset of the image's (BIDS inheritance)."""
    wanted = _entities(stem)
    folder = image.parent
    while True:
        exact = folder / f"{stem}_dwi.{ext}"
        if exact.is_file():
            return str(exact)
        candidates = []
        for f in sorted(folder.glob(f"*dwi.{ext}")):
            name = f.name[: -len(f"dwi.{ext}")].rstrip("_")
            ents = _entities(name)
            if all(wanted.get(k) == v for k, v in ents.items()) and f.is_file():
                candidates.append((len(ents), f))
        if candidates:
            return str(max(candidates, key=lambda c: c[0])[1])
        if folder == root or root not in folder.parents:
            return None
        folder = folder.parent


def _unit_id(sub_dir: Path, ses_dir: Path | None, stem: str) -> str:
    parts = [sub_dir.name] + ([ses_dir.name] if ses_dir is not None else [])
    extra = [p for p in stem.split("_") if not p.startswith(("sub-", "ses-"))]
    return "_".join(parts + extra)


def discover_bids(
    root: str | os.PathLike[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Subject]:
    """Every DWI image of a BIDS dataset as a Subject, one per session, filtered by id globs."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UsageError(f"--bids-dir is not a folder: {base}")
    base = base.resolve()
    units: list[Subject] = []
    for sub_dir in _visible_dirs(base, "sub-"):
        if sub_dir.name in IGNORED_TOP:
            continue
        sessions = _visible_dirs(sub_dir, "ses-")
        places = [(ses, ses / "dwi") for ses in sessions] + [(None, sub_dir / "dwi")]
        for ses_dir, dwi_dir in places:
            if not dwi_dir.is_dir():
                continue
            for image in sorted(dwi_dir.iterdir()):
                suffix = next((s for s in _DWI_SUFFIXES if image.name.endswith(s)), None)
                if suffix is None or image.name.startswith(".") or not image.is_file():
                    continue
                stem = image.name[: -len(suffix)]
                unit = _unit_id(sub_dir, ses_dir, stem)
                if unsafe_id_reason(unit) is not None:
                    continue
                units.append(
                    Subject(
                        id=unit,
                        nifti=str(image),
                        bval=_find_sidecar(image, stem, "bval", base),
                        bvec=_find_sidecar(image, stem, "bvec", base),
                    )
                )
    if not units:
        raise UsageError(f"no DWI images under {base} (looked for sub-*/[ses-*/]dwi/*_dwi.nii[.gz])")
    kept = filter_units(units, include=include, exclude=exclude)
    if not kept:
        raise UsageError(f"no subjects left after --include/--exclude (found {len(units)} units)")
    return kept


def _matches(unit_id: str, patterns: Sequence[str]) -> bool:
    subject = unit_id.split("_", 1)[0]
    return any(fnmatch.fnmatchcase(unit_id, p) or fnmatch.fnmatchcase(subject, p) for p in patterns)


def filter_units(
    units: Sequence[Subject], *, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Subject]:
    """Keep units whose id (or its ``sub-XX`` part) matches an include glob and no exclude glob."""
    kept = []
    for unit in units:
        if include and not _matches(unit.id, include):
            continue
        if exclude and _matches(unit.id, exclude):
            continue
        kept.append(unit)
    return kept
