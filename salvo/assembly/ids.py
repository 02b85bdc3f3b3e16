"""Assembly IDs: ``YYYYMMDD_HHMMSS_runNNN``, where NNN counts the runs of one experiment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from salvo.errors import UsageError

_ID_RE = re.compile(r"^(\d{8})_(\d{6})_run(\d{3,})$")


@dataclass(frozen=True, order=True)
class AssemblyId:
    """One run of an experiment: when it was claimed (UTC) and its run number."""

    stamp: str  # YYYYMMDD_HHMMSS
    run_number: int

    def __str__(self) -> str:
        return f"{self.stamp}_run{self.run_number:03d}"

    @property
    def started_at(self) -> datetime:
        """The claim time as an aware UTC datetime."""
        return datetime.strptime(self.stamp, "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)


def make_assembly_id(run_number: int, *, now: datetime | None = None) -> AssemblyId:
    """The ID of run ``run_number`` claimed at ``now`` (default: the current UTC time)."""
    if run_number < 1:
        raise UsageError(f"run number must be >= 1, got {run_number}")
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return AssemblyId(moment.strftime("%Y%m%d_%H%M%S"), int(run_number))


def parse_assembly_id(text: str) -> AssemblyId:
    """Parse ``YYYYMMDD_HHMMSS_runNNN``; a clear ``UsageError`` otherwise."""
    match = _ID_RE.match(str(text).strip())
    if not match:
        raise UsageError(f"bad assembly id {text!r}: expected YYYYMMDD_HHMMSS_runNNN")
    day, time_, run = match.groups()
    try:
        datetime.strptime(f"{day}_{time_}", "%Y%m%d_%H%M%S")
    except ValueError:
        raise UsageError(f"bad assembly id {text!r}: not a real date and time") from None
    return AssemblyId(f"{day}_{time_}", int(run))


def experiment_folder(exp_number: str, version_number: str, title: str) -> str:
    """The seed's folder name ``{exp_number}_{version_number}_{experiment_title}``."""
    for label, value in (("exp number", exp_number), ("version", version_number), ("title", title)):
        if not value or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(value)):
            raise UsageError(f"bad {label} {value!r}: use letters, digits, '.', '_' or '-'")
    return f"{exp_number}_{version_number}_{title}"


def data_file_name(result_name: str, assembly_id: str | AssemblyId, *, ext: str = "parquet") -> str:
    """The data file of one assembly: ``{result_name}_{assembly_id}.{ext}``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", result_name):
        raise UsageError(f"bad result name {result_name!r}: use letters, digits, '.', '_' or '-'")
    return f"{result_name}_{assembly_id}.{ext}"
