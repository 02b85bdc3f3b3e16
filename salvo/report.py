"""One report format for every pipeline: counts, times, errors and every item's status."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from salvo.fsutil import atomic_write_text, disk_full_reason
from salvo.html_report import Section, write_run_report
from salvo.outcome import ItemResult, Status

STATUS_ORDER = [s.value for s in Status]


@dataclass
class Summary:
    """Counts and times of a batch."""

    pipeline: str
    total: int
    counts: dict[str, int]
    failed: int
    resumed: int
    total_time_s: float
    mean_time_s: float
    wall_time_s: float
    failed_items: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.__dict__, "ok": self.ok}


def summarize(results: Sequence[ItemResult], *, pipeline: str, wall_time_s: float = 0.0) -> Summary:
    """Count statuses and add up the time spent on items that ran in this batch."""
    counts = Counter(r.status.value for r in results)
    ran = [r for r in results if not r.cached and r.status is not Status.NOT_RUN]
    total_time = sum(r.duration_s for r in ran)
    return Summary(
        pipeline=pipeline,
        total=len(results),
        counts={s: counts[s] for s in STATUS_ORDER if counts[s]},
        failed=sum(1 for r in results if r.status.failed),
        resumed=sum(1 for r in results if r.cached),
        total_time_s=round(total_time, 3),
        mean_time_s=round(total_time / len(ran), 3) if ran else 0.0,
        wall_time_s=round(wall_time_s, 3),
        failed_items=[r.item_id for r in results if r.status.failed],
    )


def summary_text(results: Sequence[ItemResult], summary: Summary, *, title: str) -> str:
    """The seed's `batch_processing_summary.txt`: statistics, times, errors, every item."""
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [title, "=" * len(title), f"Generated: {now}", "", "Overall statistics"]
    lines.append(f"  Total items:      {summary.total}")
    for status, n in summary.counts.items():
        lines.append(f"  {status + ':':<17} {n}")
    lines.append(f"  Resumed (earlier run): {summary.resumed}")
    lines += [
        "",
        "Processing times",
        f"  Wall time:        {summary.wall_time_s:.1f} s",
        f"  Total item time:  {summary.total_time_s:.1f} s",
        f"  Average per item: {summary.mean_time_s:.2f} s",
    ]
    failures = [r for r in results if r.status.failed]
    lines += ["", f"Errors ({len(failures)})"]
    for r in failures:
        lines.append(f"  {r.item_id}: {r.status.value}: {r.reason}")
        lines += [f"      | {line}" for line in r.stderr_tail.splitlines()[-10:]]
    lines += ["", "All items"]
    for r in results:
        extra = f" ({r.reason})" if r.reason else ""
        resumed = " [resumed]" if r.cached else ""
        lines.append(f"  {r.status.value:<15} {r.duration_s:8.2f} s  {r.item_id}{resumed}{extra}")
    return "\n".join(lines) + "\n"


def write_reports(
    results: Sequence[ItemResult],
    summary: Summary,
    *,
    folder: str | os.PathLike[str],
    title: str,
    text_name: str = "batch_processing_summary.txt",
    json_name: str = "batch_summary.json",
    sections: Sequence[Section] = (),
    logs: Mapping[str, str] | None = None,
    items: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Write the text, JSON and HTML reports atomically; return their paths by kind.

    ``items`` are the results' ``to_dict()``, when the caller has them already.
    """
    folder = Path(folder)
    written: dict[str, str] = {}
    with skip_on_full_disk(written, "text"):
        written["text"] = str(atomic_write_text(folder / text_name, summary_text(results, summary, title=title)))
    doc = {"summary": summary.to_dict(), "items": [r.to_dict() for r in results] if items is None else items}
    with skip_on_full_disk(written, "json"):
        written["json"] = str(atomic_write_text(folder / json_name, json_text(doc) + "\n"))
    with skip_on_full_disk(written, "html"):
        written["html"] = str(write_run_report(results, summary, folder=folder, title=title, sections=sections,
                                               logs=logs))
    return written


@contextlib.contextmanager
def skip_on_full_disk(written: dict[str, str], kind: str) -> Iterator[None]:
    """A report that cannot be written for lack of space is left out with one warning line, not a
    traceback; the batch's own outcome stands, and the next run writes it (no half file stays)."""
    try:
        yield
    except OSError as exc:
        why = disk_full_reason(exc)
        if why is None:
            raise
        logging.getLogger("salvo.report").warning("%s report not written: %s", kind, why)


def json_text(doc: Any) -> str:
    """The JSON report's and ``--json``'s text: indented by two spaces, keys in their order, any
    value JSON has no type for written as its ``str`` (``json.dumps(doc, indent=2, default=str)``).

    Encoded by orjson (a dependency of Prefect's): ``json`` uses its C encoder only without
    ``indent``, and with it took 0.2 s for the 10,000 items of a fully resumed batch, paid twice
    (the report and ``--json``). Two differences from ``json``: text is UTF-8 rather than ``\\u``
    escapes, and NaN or infinity is ``null`` (``json``'s ``NaN`` is not JSON). What orjson cannot
    encode (a string that is not valid Unicode, from an undecodable file name; an integer beyond
    64 bits; nesting deeper than 254) is left to ``json``, which also refuses what it refused.
    """
    try:
        return orjson.dumps(doc, default=_json_default, option=_JSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(doc, indent=2, default=str)


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else str(value)  # a tuple subclass (a named tuple) as json writes it


_JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


#: Longest reason shown in the UI's items table; the full text is in the logs and reports.
TABLE_REASON_CHARS = 80


def table_rows(results: Sequence[ItemResult]) -> list[dict[str, Any]]:
    """Rows for a table artifact or a CSV: one per item, failures first, short reasons, outputs."""
    ordered = sorted(results, key=lambda r: (not r.status.failed, r.status is Status.NOT_RUN))
    rows = []
    for r in ordered:
        first = r.reason.splitlines()[0] if r.reason else ""
        short = first if len(first) <= TABLE_REASON_CHARS else first[: TABLE_REASON_CHARS - 1] + "…"
        rows.append({
            "item": r.item_id,
            "status": r.status.value,
            "reason": short,
            "output": r.outputs[0] if r.outputs else "",
            "duration_s": r.duration_s,
            "attempt": r.attempt,
            "peak_rss_mb": r.peak_rss_mb,
            "resumed": r.cached,
        })
    return rows


def summary_markdown(summary: Summary, *, reports: dict[str, str] | None = None) -> str:
    """A short markdown summary, linking the report files."""
    lines = [f"# {summary.pipeline}: {'all done' if summary.ok else f'{summary.failed} failed'}", ""]
    lines += ["| status | items |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in summary.counts.items()]
    lines += ["", f"Resumed from earlier runs: {summary.resumed}. Wall time {summary.wall_time_s:.1f} s."]
    if summary.failed_items:
        lines += ["", "Failed: " + ", ".join(f"`{i}`" for i in summary.failed_items[:50])]
    if reports:
        # Paths, not file:// links: a browser will not open local files from the UI's page.
        lines += ["", "Reports (open the HTML one in a browser):"]
        lines += [f"- {kind}: `{path}`" for kind, path in reports.items()]
    return "\n".join(lines) + "\n"
