"""Subjects of a study, and the JSON manifest that lists them (validated in full before any run)."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salvo.errors import UsageError
from salvo.fsutil import TMP_PREFIX
from salvo.validate import regular_file

TOP_KEYS = ("global_options", "subjects")
SUBJECT_KEYS = ("id", "nifti", "dicom", "bval", "bvec", "options")
#: A subject id becomes a folder name: letters, digits and ``._-``, not starting with a dot.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
#: The folder of the spine's per-run records inside the output folder.
RUNS_DIR = ".salvo-runs"
#: Names Salvo itself uses inside the output folder (and inside each subject folder): never a subject id.
RESERVED_IDS = (
    "logs",
    ".locks",
    ".salvo-runs",
    "_work",
    "_done.json",
    "batch_metrics.csv",
    "batch_report.html",
    "batch_processing_summary.txt",
    "batch_summary.json",
    "batch_resume.txt",
    "run_report.html",
    "batch_run_report.html",
    "report.html",
    "trace.tsv",
    "runs",
)
#: Prefixes of names Salvo gives to folders it creates (staging, quarantined work folders).
RESERVED_PREFIXES = (TMP_PREFIX, "_failed-")


@dataclass(frozen=True)
class Subject:
    """One unit of a study: its id, its image (a NIfTI file or a DICOM folder) and sidecars."""

    id: str
    nifti: str | None = None
    dicom: str | None = None
    bval: str | None = None
    bvec: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The files and folders this subject reads."""
        return tuple(p for p in (self.nifti, self.dicom, self.bval, self.bvec) if p)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the manifest's own shape)."""
        d: dict[str, Any] = {"id": self.id}
        for key in ("nifti", "dicom", "bval", "bvec"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.options:
            d["options"] = dict(self.options)
        return d


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: global options and subjects, with absolute paths."""

    global_options: Mapping[str, Any]
    subjects: tuple[Subject, ...]


class ManifestError(UsageError):
    """A manifest with problems; ``problems`` lists every one of them."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = list(problems)
        n = len(problems)
        super().__init__(f"{source}: {n} problem{'s' if n != 1 else ''}: " + "; ".join(problems))


def unsafe_id_reason(subject_id: Any) -> str | None:
    """Why ``subject_id`` cannot be a folder name under the output folder, or None if it can."""
    if not isinstance(subject_id, str):
        return f"id must be a string, got {type(subject_id).__name__}"
    if not subject_id.strip():
        return "id is empty"
    if subject_id in (".", "..") or "/" in subject_id or "\\" in subject_id:
        return f"id {subject_id!r} is not a safe folder name (no path separators or '..')"
    if not _SAFE_ID.match(subject_id):
        return f"id {subject_id!r} is not a safe folder name (use letters, digits, '.', '_', '-')"
    if subject_id.lower() in RESERVED_IDS or subject_id.startswith(RESERVED_PREFIXES):
        return f"id {subject_id!r} is a name Salvo uses for its own files in the output folder; rename the subject"
    return None


def _not_a_file_reason(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file (missing, a folder, a FIFO or device), or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"file not found: {path}"
    except OSError as exc:
        return f"file cannot be read: {path}: {exc.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return f"is a folder, not a file: {path}"
    if not stat.S_ISREG(st.st_mode):
        return f"is not a regular file (a FIFO, socket or device): {path}"
    return None


def _check_options(options: Any, where: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(options, dict):
        problems.append(f"{where} must be an object, got {type(options).__name__}")
        return {}
    for key, value in options.items():
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", key):
            problems.append(f"{where}: option name {key!r} cannot become a command-line flag")
        scalars = (str, int, float, bool, type(None))
        if isinstance(value, list):
            ok = all(isinstance(v, scalars) and v is not None for v in value)
        else:
            ok = isinstance(value, scalars)
        if not ok:
            problems.append(f"{where}.{key} must be a string, number, boolean or list of them")
    return dict(options)


def _resolve(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _check_subject(raw: Any, index: int, base: Path, problems: list[str]) -> Subject | None:
    where = f"subjects[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be an object, got {type(raw).__name__}")
        return None
    if isinstance(raw.get("id"), str) and raw["id"]:
        where = f"subjects[{index}] ({raw['id']})"
    for key in raw:
        if key not in SUBJECT_KEYS:
            problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(SUBJECT_KEYS)})")
    ok = True
    if "id" not in raw:
        problems.append(f"{where}: missing field 'id'")
        ok = False
    elif (why := unsafe_id_reason(raw["id"])) is not None:
        problems.append(f"{where}: {why}")
        ok = False
    if "nifti" not in raw and "dicom" not in raw:
        problems.append(f"{where}: missing field 'nifti' or 'dicom'")
        ok = False
    paths: dict[str, str] = {}
    for key, want_dir in (("nifti", False), ("dicom", True), ("bval", False), ("bvec", False)):
        if key not in raw:
            continue
        value = raw[key]
        if not isinstance(value, str) or not value:
            problems.append(f"{where}: {key} must be a non-empty path string")
            ok = False
            continue
        path = _resolve(value, base)
        if want_dir and not path.is_dir():
            problems.append(f"{where}: dicom folder not found: {path}")
            ok = False
        elif not want_dir and (why := _not_a_file_reason(path)) is not None:
            problems.append(f"{where}: {key} {why}")
            ok = False
        paths[key] = str(path)
    options = _check_options(raw.get("options", {}), f"{where}.options", problems)
    if not ok:
        return None
    if "nifti" in paths:
        side = sidecars_of(Path(paths["nifti"]))
        for key in ("bval", "bvec"):
            if key not in paths and side.get(key):
                paths[key] = side[key]
    return Subject(id=raw["id"], options=options, **paths)


def sidecars_of(nifti: Path) -> dict[str, str]:
    """The ``.bval``/``.bvec`` files beside a NIfTI image, when they exist."""
    name = nifti.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    found = {}
    for key in ("bval", "bvec"):
        candidate = nifti.with_name(f"{name}.{key}")
        if candidate.is_file():
            found[key] = str(candidate)
    return found


def validate_manifest(data: Any, *, base: Path, source: str = "manifest") -> Manifest:
    """Check a parsed manifest and return it; raise ManifestError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ManifestError(source, [f"top level must be an object, got {type(data).__name__}"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"unknown key {key!r} (allowed: {', '.join(TOP_KEYS)})")
    global_options = _check_options(data.get("global_options", {}), "global_options", problems)
    subjects: list[Subject] = []
    raw_subjects = data.get("subjects")
    if "subjects" not in data:
        problems.append("missing field 'subjects'")
    elif not isinstance(raw_subjects, list):
        problems.append(f"subjects must be a list, got {type(raw_subjects).__name__}")
    elif not raw_subjects:
        problems.append("subjects is empty")
    else:
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_subjects):
            rid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(rid, str) and rid:
                if rid in seen:
                    problems.append(f"subjects[{index}]: duplicate id {rid!r} (first at subjects[{seen[rid]}])")
                else:
                    seen[rid] = index
            subject = _check_subject(raw, index, base, problems)
            if subject is not None:
                subjects.append(subject)
    if problems:
        raise ManifestError(source, problems)
    return Manifest(global_options=global_options, subjects=tuple(subjects))


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a JSON manifest; relative paths are taken from the manifest's folder."""
    p = regular_file(path, "manifest")  # a FIFO or a folder is refused here: reading it would hang or fail
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"manifest not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest {p}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(str(p), [f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    return validate_manifest(data, base=p.resolve().parent, source=str(p))
