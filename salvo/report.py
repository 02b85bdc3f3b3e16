"""One report format for every pipeline: counts, times, errors and every item's status."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import operator
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salvo.fsutil import atomic_write_text
from salvo.html_report import Section, write_run_report
from salvo.outcome import ItemResult, Status

STATUS_ORDER = [s.value for s in Status]
#: JSON string encoder of ``json.dumps`` (ASCII-only output, C-accelerated).
_STR = json.encoder.encode_basestring_ascii
#: Nesting depth below which :func:`json_text` hands a value to ``json.dumps`` (which checks cycles).
_MAX_DEPTH = 32


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
    text_path = atomic_write_text(folder / text_name, summary_text(results, summary, title=title))
    doc = {"summary": summary.to_dict(), "items": [r.to_dict() for r in results] if items is None else items}
    json_path = atomic_write_text(folder / json_name, json_text(doc) + "\n")
    html_path = write_run_report(results, summary, folder=folder, title=title, sections=sections, logs=logs)
    return {"text": str(text_path), "json": str(json_path), "html": str(html_path)}


def json_text(doc: Any) -> str:
    """``json.dumps(doc, indent=2, default=str)``, the same text, about three times faster.

    ``json`` encodes with its C encoder only without ``indent``; with it, every value goes through
    Python generators (10,000 items: 0.2 s, paid twice by a fully resumed batch: the JSON report
    and ``--json``). Here each dict and list is one join, scalars use the encoders ``json`` itself
    uses, and anything else (other types, deep nesting) is handed to ``json.dumps`` itself.
    """
    return _json_value(doc, 0)


def _json_float(x: float) -> str:
    if x != x:
        return "NaN"
    if x == float("inf"):
        return "Infinity"
    if x == -float("inf"):
        return "-Infinity"
    return float.__repr__(x)


def _json_fallback(value: Any, level: int) -> str:
    return json.dumps(value, indent=2, default=str).replace("\n", "\n" + "  " * level)


def _json_value(o: Any, level: int) -> str:
    # The order of json's own checks: str first (a str enum is its value), bool before int.
    if isinstance(o, str):
        return _STR(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, int):
        return int.__repr__(o)
    if isinstance(o, float):
        return _json_float(o)
    if level < _MAX_DEPTH:
        if isinstance(o, (list, tuple)):
            if not o:
                return "[]"
            inner = _indent(level + 1)
            if len(o) >= _ROWS_FROM and _same_keys(o):
                values = _json_rows(o, level + 1)
            else:
                values = [_json_value(v, level + 1) for v in o]
            return "[" + inner + ("," + inner).join(values) + _indent(level) + "]"
        if isinstance(o, dict):
            return _json_dict(o, level)
    return _json_fallback(o, level)


def _json_dict(d: dict[Any, Any], level: int) -> str:
    if not d:
        return "{}"
    keys = _JSON_KEYS
    parts = []
    append = parts.append
    for k, v in d.items():
        key = keys.get(k) if type(k) is str else None
        if key is None:
            if not isinstance(k, str):
                if isinstance(k, float):
                    k = _json_float(k)
                elif k is True or k is False or k is None:
                    k = "true" if k is True else "false" if k is False else "null"
                elif isinstance(k, int):
                    k = int.__repr__(k)
                else:
                    return _json_fallback(d, level)  # json's own TypeError
            key = _STR(k) + ": "
            if len(keys) < 1000:
                keys[k] = key
        t = type(v)  # the common scalars inline, without a call each
        if t is str:
            append(key + _STR(v))
        elif v is None:
            append(key + "null")
        elif t is float:
            append(key + _json_float(v))
        elif t is int:
            append(key + int.__repr__(v))
        elif t is bool:
            append(key + ("true" if v else "false"))
        else:
            append(key + _json_value(v, level + 1))
    inner = _INDENTS[level + 1] if level + 1 < len(_INDENTS) else "\n" + "  " * (level + 1)
    return "{" + inner + ("," + inner).join(parts) + inner[:-2] + "}"


#: A list of at least this many dicts with the same keys (a report's items) is encoded column by column.
_ROWS_FROM = 4


def _indent(level: int) -> str:
    return _INDENTS[level] if level < len(_INDENTS) else "\n" + "  " * level


def _same_keys(rows: list[Any] | tuple[Any, ...]) -> bool:
    first = rows[0]
    if type(first) is not dict or not first:
        return False
    keys = list(first)
    return all(type(k) is str for k in keys) and all(type(d) is dict and list(d) == keys for d in rows)


def _json_rows(rows: list[Any] | tuple[Any, ...], level: int) -> list[str]:
    """The dicts ``rows`` (same str keys, in the same order) at ``level``, encoded a key at a time:
    one pass of C encoders over each column instead of a Python loop over every value."""
    inner = _indent(level + 1)
    columns = []
    for k in rows[0]:
        key = _STR(k) + ": "
        col = list(map(operator.itemgetter(k), rows))
        columns.append(_json_column(key, col, level + 1))
    head, sep, tail = "{" + inner, "," + inner, _indent(level) + "}"
    return [head + sep.join(parts) + tail for parts in zip(*columns)]


def _json_column(key: str, col: list[Any], level: int) -> list[str]:
    """``key`` followed by each value of ``col`` at ``level``; the kinds of column a report has
    (all strings, all None, numbers, flags, lists of strings, empty dicts) without a call per value."""
    kinds = set(map(type, col))
    none = type(None) in kinds
    kinds.discard(type(None))
    null = key + "null"
    if not kinds:
        return [null] * len(col)
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind is str:
            return [null if v is None else key + _STR(v) for v in col] if none else [key + t for t in map(_STR, col)]
        if kind is int or kind is float:
            texts = list(map(kind.__repr__, [kind() if v is None else v for v in col] if none else col))
            if kind is float and {"nan", "inf", "-inf"} & set(texts):
                texts = [_json_float(v) if v is not None else "" for v in col]
            return [null if v is None else key + t for v, t in zip(col, texts)] if none else [key + t for t in texts]
        if kind is bool:
            yes, no = key + "true", key + "false"
            return [null if v is None else yes if v else no for v in col]
        if kind is dict and not any(col):
            return [null if v is None else key + "{}" for v in col]
        if kind is list and set(map(type, itertools.chain.from_iterable(v for v in col if v is not None))) <= {str}:
            inner, end = _indent(level + 1), _indent(level) + "]"
            head, sep = key + "[" + inner, "," + inner
            return [null if v is None else head + sep.join(map(_STR, v)) + end if v else key + "[]" for v in col]
    return [key + _json_value(v, level) for v in col]


#: Encoded keys (``"name": ``) seen before, and newline-indents by level.
_JSON_KEYS: dict[str, str] = {}
_INDENTS = ["\n" + "  " * i for i in range(_MAX_DEPTH + 2)]


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
