"""What a subject batch tells the user: console lines, ``batch_metrics.csv`` and ``batch_report.html``."""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from salvo.fsutil import atomic_write_text
from salvo.outcome import ItemResult, Status, signal_name
from salvo.subjects.unit import read_done, subject_dir

METRICS_CSV = "batch_metrics.csv"
REPORT_HTML = "batch_report.html"
LOGS_DIR = "logs"
_COLOURS = {"success": "#2e7d32", "skipped": "#757575", "timeout": "#ef6c00", "crashed": "#c62828"}


def log_path(out_dir: str | os.PathLike[str], subject_id: str) -> Path:
    """Where a subject's child process writes its log."""
    return Path(out_dir) / LOGS_DIR / f"{subject_id}.log"


def format_duration(seconds: float) -> str:
    """``15.2m`` for minutes, ``4.1s`` below one minute."""
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds / 60:.1f}m"


def format_minutes(minutes: float) -> str:
    """``120m``, ``0.05m``."""
    return f"{minutes:g}m"


def failure_reason(result: ItemResult, *, timeout_min: float) -> str:
    """One line saying why a subject did not succeed."""
    if result.status is Status.TIMEOUT:
        return f"exceeded {format_minutes(timeout_min)} limit"
    if result.status is Status.CRASHED and result.signal:
        return f"killed by {signal_name(result.signal)}"
    text = result.reason or (result.stderr_tail.strip().splitlines() or [""])[-1]
    return " ".join(text.split())[:300]


def format_result_line(index: int, result: ItemResult, *, timeout_min: float) -> str:
    """``1. sub-001: Success in 15.2m`` / ``3. sub-003: Failed (TIMEOUT) - exceeded 120m limit``."""
    head = f"{index}. {result.item_id}: "
    if result.status is Status.SUCCESS:
        return head + f"Success in {format_duration(result.duration_s)}"
    if result.status is Status.SKIPPED:
        return head + "Skipped" + (f" - {result.reason}" if result.reason else "")
    if result.status is Status.NOT_RUN:
        return head + "Not run" + (f" - {result.reason}" if result.reason else "")
    return head + f"Failed ({result.status.value.upper()}) - {failure_reason(result, timeout_min=timeout_min)}"


def format_header(n: int, *, out_dir: str | os.PathLike[str], config_hash: str) -> list[str]:
    """The lines printed before the first subject finishes."""
    return [f"Starting batch processing for {n} subjects", f"Output directory: {out_dir}", f"Config hash: {config_hash}", ""]


def format_summary(results: Sequence[ItemResult], *, out_dir: str | os.PathLike[str]) -> list[str]:
    """The closing block: counts, failed ids, and where the metrics and the report are."""
    failed = [r.item_id for r in results if r.status.failed]
    ok = sum(r.status is Status.SUCCESS for r in results)
    skipped = sum(r.status is Status.SKIPPED for r in results)
    not_run = sum(r.status is Status.NOT_RUN for r in results)
    lines = [
        "",
        "BATCH PROCESSING COMPLETE",
        "=" * 40,
        f"Total:      {len(results)}",
        f"Success:    {ok}",
        f"Failed:     {len(failed)}" + (f" ({', '.join(failed)})" if failed else ""),
        f"Skipped:    {skipped}",
    ]
    if not_run:
        lines.append(f"Not run:    {not_run}")
    out = Path(out_dir)
    lines += ["", f"Main metrics: {out / METRICS_CSV}", f"Batch Report: {out / REPORT_HTML}"]
    return lines


def subject_rows(results: Sequence[ItemResult], *, out_dir: str | os.PathLike[str], timeout_min: float) -> list[dict[str, Any]]:
    """One row per subject; a subject skipped as already done carries the metrics of its ``_done.json``."""
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        done = read_done(subject_dir(out_dir, result.item_id))
        if not metrics and done and result.status is Status.SKIPPED and isinstance(done.get("metrics"), dict):
            metrics = dict(done["metrics"])
        reason = result.reason if result.status is Status.SKIPPED else ""
        if result.status.failed:
            reason = failure_reason(result, timeout_min=timeout_min)
        rows.append(
            {
                "subject": result.item_id,
                "status": result.status.value,
                "reason": reason,
                "duration_s": round(result.duration_s, 3),
                "started": result.started or "",
                "config_hash": (done or {}).get("config_hash", "") if result.status.ok else "",
                "log": f"{LOGS_DIR}/{result.item_id}.log",
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None},
            }
        )
    return rows


def _metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for key in row["metrics"]:
            names.setdefault(key)
    return list(names)


def write_metrics_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """``batch_metrics.csv``: subject, status, reason, duration and every metric, one row per subject."""
    fixed = ["subject", "status", "reason", "duration_s", "started", "config_hash"]
    names = _metric_names(rows)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(fixed + names)
    for row in rows:
        writer.writerow([row[k] for k in fixed] + ["" if row["metrics"].get(n) is None else row["metrics"][n] for n in names])
    return atomic_write_text(path, buf.getvalue())


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def svg_durations(rows: Sequence[dict[str, Any]]) -> str:
    """A horizontal bar per subject, coloured by status."""
    bar_h, label_w, width = 16, 170, 420
    longest = max((r["duration_s"] for r in rows), default=0) or 1.0
    height = bar_h * len(rows) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 70}" height="{height}" role="img">']
    for i, row in enumerate(rows):
        y = 4 + i * bar_h
        w = max(1.0, width * row["duration_s"] / longest)
        colour = _COLOURS.get(row["status"], "#b71c1c")
        name = html.escape(row["subject"])
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{name}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="{colour}">'
            f"<title>{name}: {row['status']}, {format_duration(row['duration_s'])}</title></rect>"
        )
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="10">{format_duration(row["duration_s"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_distribution(name: str, points: Sequence[tuple[str, float]]) -> str:
    """A strip plot of one metric over subjects (one dot per subject, hover for its id)."""
    width, height, pad = 460, 60, 30
    values = [v for _s, v in points]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append(f'<line x1="{pad}" y1="30" x2="{width - pad}" y2="30" stroke="#999"/>')
    for i, (subject, value) in enumerate(points):
        x = pad + (width - 2 * pad) * (value - lo) / span
        y = 24 + (i % 3) * 6
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="4" fill="#1565c0" fill-opacity="0.7">'
            f"<title>{html.escape(subject)}: {value:.6g}</title></circle>"
        )
    parts.append(f'<text x="{pad}" y="52" font-size="10">{lo:.4g}</text>')
    parts.append(f'<text x="{width - pad}" y="52" font-size="10" text-anchor="end">{hi:.4g}</text>')
    parts.append(f'<text x="{width // 2}" y="12" font-size="11" text-anchor="middle">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(rows: Sequence[dict[str, Any]], *, title: str, config_hash: str, summary: dict[str, int]) -> str:
    """The whole self-contained report page (inline CSS and SVG, no outside references)."""
    names = _metric_names(rows)
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}"
        ".success{color:#2e7d32}.skipped{color:#757575}.failed{color:#c62828;font-weight:bold}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Config hash: <code>{esc(config_hash)}</code></p>",
        "<p>" + ", ".join(f"{esc(k)}: {v}" for k, v in summary.items()) + "</p>",
        "<h2>Subjects</h2>",
        '<table id="subjects"><tr><th>#</th><th>Subject</th><th>Status</th><th>Duration</th><th>Reason</th><th>Log</th>'
        + "".join(f"<th>{esc(n)}</th>" for n in names)
        + "</tr>",
    ]
    for i, row in enumerate(rows, 1):
        css = row["status"] if row["status"] in ("success", "skipped") else "failed"
        cells = "".join(
            f"<td>{esc(f'{v:.4g}' if isinstance(v, float) else str(v if v is not None else ''))}</td>"
            for v in (row["metrics"].get(n) for n in names)
        )
        out.append(
            f'<tr data-subject="{esc(row["subject"])}"><td>{i}</td><td>{esc(row["subject"])}</td>'
            f'<td class="{css}">{esc(row["status"])}</td><td>{format_duration(row["duration_s"])}</td>'
            f'<td>{esc(row["reason"])}</td><td><a href="{esc(row["log"])}">log</a></td>{cells}</tr>'
        )
    out.append("</table>")
    out.append("<h2>Durations</h2>")
    out.append(svg_durations(rows))
    plotted = False
    for name in names:
        points = [(r["subject"], v) for r in rows if (v := _numeric(r["metrics"].get(name))) is not None]
        if points:
            if not plotted:
                out.append("<h2>Metric distributions</h2>")
                plotted = True
            out.append(f'<div class="metric">{svg_distribution(name, points)}</div>')
    out.append("</body></html>")
    return "\n".join(out)


def write_html_report(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, title: str, config_hash: str, summary: dict[str, int]
) -> Path:
    """Write ``batch_report.html`` atomically."""
    return atomic_write_text(path, render_html(rows, title=title, config_hash=config_hash, summary=summary))
