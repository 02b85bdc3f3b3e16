"""Job files: YAML safe-load and schema validation; every error names the file and the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from salvo.errors import UsageError
from salvo.jobs.naf import NafCode, parse_naf
from salvo.jobs.profiles import PROFILES, Profile

_TOP_KEYS = {"niche", "description", "profile", "filters", "sample", "output", "meta"}
_FILTER_KEYS = {"naf_include", "active_only"}
_FORMATS = ("csv", "parquet")


class JobSpecError(UsageError):
    """A job file that does not parse as YAML or does not fit the job schema."""


@dataclass(frozen=True)
class JobSpec:
    """A validated job: what to extract, and how."""

    niche: str
    profile: Profile
    naf: tuple[NafCode, ...]
    active_only: bool
    sample_rows: int | None
    formats: tuple[str, ...]
    description: str = ""


def _fail(source: str, field: str, message: str) -> JobSpecError:
    return JobSpecError(f"{source}: field '{field}': {message}")


def _mapping(value: Any, source: str, field: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, field, f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            where = f"{field}.{key}" if field != "(top level)" else str(key)
            raise _fail(source, where, f"unknown field; allowed: {', '.join(sorted(allowed))}")
    return value


def _naf_list(value: Any, source: str) -> tuple[NafCode, ...]:
    field = "filters.naf_include"
    if not isinstance(value, list) or not value:
        raise _fail(source, field, "expected a non-empty list of NAF codes as strings")
    codes = []
    for i, code in enumerate(value):
        if not isinstance(code, str):
            raise _fail(source, f"{field}[{i}]", f"expected a quoted string, got {type(code).__name__} {code!r}")
        try:
            codes.append(parse_naf(code))
        except UsageError as exc:
            raise _fail(source, f"{field}[{i}]", str(exc)) from None
    return tuple(codes)


def validate_job(data: Any, *, source: str = "job") -> JobSpec:
    """Check a loaded job document against the schema and return it as a JobSpec."""
    top = _mapping(data, source, "(top level)", _TOP_KEYS)
    for key in ("niche", "profile", "filters"):
        if key not in top:
            raise _fail(source, key, "required field is missing")
    niche = top["niche"]
    if not isinstance(niche, str) or not niche.strip() or "/" in niche or niche.startswith("."):
        raise _fail(source, "niche", f"expected a folder-safe name such as naf_6920Z, got {niche!r}")
    profile = top["profile"]
    if profile not in PROFILES:
        raise _fail(source, "profile", f"expected one of {', '.join(PROFILES)}, got {profile!r}")
    filters = _mapping(top["filters"], source, "filters", _FILTER_KEYS)
    if "naf_include" not in filters:
        raise _fail(source, "filters.naf_include", "required field is missing")
    naf = _naf_list(filters["naf_include"], source)
    active_only = filters.get("active_only", True)
    if not isinstance(active_only, bool):
        raise _fail(source, "filters.active_only", f"expected true or false, got {active_only!r}")
    sample = top.get("sample", PROFILES[profile].sample_rows)
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise _fail(source, "sample", f"expected a positive integer or null, got {sample!r}")
    formats: tuple[str, ...] = _FORMATS
    if "output" in top:
        output = _mapping(top["output"], source, "output", {"formats"})
        fmts = output.get("formats", list(_FORMATS))
        if not isinstance(fmts, list) or not fmts or any(f not in _FORMATS for f in fmts):
            raise _fail(source, "output.formats", f"expected a non-empty list from {list(_FORMATS)}, got {fmts!r}")
        formats = tuple(dict.fromkeys(fmts))
    description = top.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, "description", f"expected a string, got {type(description).__name__}")
    if "meta" in top and not isinstance(top["meta"], dict):
        raise _fail(source, "meta", "expected a mapping")
    return JobSpec(
        niche=niche,
        profile=PROFILES[profile],
        naf=naf,
        active_only=active_only,
        sample_rows=sample,
        formats=formats,
        description=description,
    )


def parse_job(text: str, *, source: str = "job") -> JobSpec:
    """YAML safe-load ``text`` and validate it; errors name ``source`` and the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobSpecError(f"{source}: not valid YAML at {where}: {problem}") from None
    return validate_job(data, source=source)


def load_job(path: str | Path) -> JobSpec:
    """Read and validate one job file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobSpecError(f"{p}: cannot read job file: {exc}") from None
    return parse_job(text, source=str(p))
