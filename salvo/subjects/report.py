"""What a subject batch tells the user: console lines, ``batch_metrics.csv`` and ``batch_report.html``."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from salvo.fsutil import atomic_write_text
from salvo.html_report import Section
from salvo.outcome import ItemResult, Status, signal_name
from salvo.subjects.pipeline import METRIC_UNITS
from salvo.subjects.unit import FAILED_PREFIX, LOGS_DIR, WORK_DIR, read_done, subject_dir

METRICS_CSV = "batch_metrics.csv"
REPORT_HTML = "batch_report.html"
_COLOURS = {"success": "#2e7d32", "skipped": "#757575", "timeout": "#ef6c00", "crashed": "#c62828"}
#: QC images shown in the report's gallery, embedded so that the page stays one self-contained file.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_GALLERY_BYTES = 50 * 1024 * 1024
MAX_IMAGES_PER_SUBJECT = 12


def qc_images(folder: str | os.PathLike[str]) -> list[str]:
    """The images a subject's pipeline wrote (paths relative to its folder), not logs or set-aside runs."""
    base = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        rel = Path(dirpath).relative_to(base)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in (LOGS_DIR, WORK_DIR) and not d.startswith(FAILED_PREFIX)]
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_TYPES:
                found.append((rel / name).as_posix())
    return found


def format_duration(seconds: float) -> str:
    """``15.2m`` for minutes, ``4.1s`` below one minute."""
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds / 60:.1f}m"


def format_minutes(minutes: float) -> str:
    """``2 h``, ``15 min``, ``5 s`` (never ``0.0833333m``)."""
    from salvo.durations import human_duration

    return human_duration(minutes * 60.0)


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
        why = f" - {result.reason}" if result.reason else ""  # a re-run says why it ran again
        return head + f"Success in {format_duration(result.duration_s)}" + why
    if result.status is Status.SKIPPED:
        return head + "Skipped" + (f" - {result.reason}" if result.reason else "")
    if result.status is Status.NOT_RUN:
        return head + "Not run" + (f" - {result.reason}" if result.reason else "")
    return head + f"Failed ({result.status.value.upper()}) - {failure_reason(result, timeout_min=timeout_min)}"


def format_header(n: int, *, out_dir: str | os.PathLike[str], config_hash: str) -> list[str]:
    """The lines printed before the first subject finishes."""
    return [
        f"Starting batch processing for {n} subjects",
        f"Output directory: {out_dir}",
        f"Config hash: {config_hash}",
        "",
    ]


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


def subject_rows(
    results: Sequence[ItemResult], *, out_dir: str | os.PathLike[str], timeout_min: float
) -> list[dict[str, Any]]:
    """One row per subject; a subject skipped as already done carries the metrics of its ``_done.json``."""
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        done = read_done(subject_dir(out_dir, result.item_id))
        if not metrics and done and result.status is Status.SKIPPED and isinstance(done.get("metrics"), dict):
            metrics = dict(done["metrics"])
        reason = result.reason if result.status in (Status.SKIPPED, Status.SUCCESS) else ""  # success: why it re-ran
        if result.status.failed:
            reason = failure_reason(result, timeout_min=timeout_min)
        # A subject that did not run in this batch has no duration of its own here: the time it
        # took to be skipped is not a processing time. Its earlier run's duration is kept apart.
        ran = result.status not in (Status.SKIPPED, Status.NOT_RUN)
        done_s = _numeric((done or {}).get("duration_s")) if result.status.ok else None
        units = (done or {}).get("units") if result.status.ok else None
        rows.append(
            {
                "subject": result.item_id,
                "status": result.status.value,
                "reason": reason,
                "duration_s": round(result.duration_s, 3) if ran else None,
                "done_duration_s": done_s,
                "started": result.started or "",
                "config_hash": (done or {}).get("config_hash", "") if result.status.ok else "",
                "log": f"{result.item_id}/{LOGS_DIR}/{result.item_id}.log",
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None},
                "units": {k: str(v) for k, v in units.items()} if isinstance(units, dict) else {},
                "images": qc_images(subject_dir(out_dir, result.item_id)) if result.status.ok and done else [],
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
    fixed = ["subject", "status", "reason", "duration_s", "done_duration_s", "started", "config_hash"]
    names = _metric_names(rows)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(fixed + names)
    for row in rows:
        cells = ["" if row.get(k) is None else row[k] for k in fixed]
        writer.writerow(cells + ["" if row["metrics"].get(n) is None else row["metrics"][n] for n in names])
    return atomic_write_text(path, buf.getvalue())


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values inside [lo, hi]: a step of 1, 2 or 5 times a power of ten, about ``n`` ticks
    (at least 2 when it can)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    power = math.floor(math.log10((hi - lo) / max(1, n - 1)))
    best: tuple[float, float] | None = None
    for k in (power - 1, power, power + 1):
        for m in (1, 2, 5):
            step = m * 10.0**k
            count = math.floor(hi / step + 1e-9) - math.ceil(lo / step - 1e-9) + 1
            if count < 2:
                continue
            score = abs(count - n)
            if best is None or score < best[0] or (score == best[0] and step > best[1]):
                best = (score, step)
    step = best[1] if best else (hi - lo)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _tick_label(value: float) -> str:
    return f"{value:.4g}"


def _x_axis(parts: list[str], *, x0: float, x1: float, y: float, lo: float, hi: float, label: str) -> None:
    """An x axis line with round ticks, their values, and a label with the unit."""
    span = (hi - lo) or 1.0
    parts.append(f'<line class="axis" x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#333"/>')
    for t in nice_ticks(lo, hi):
        x = x0 + (x1 - x0) * (t - lo) / span
        parts.append(f'<line class="tick" x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#333"/>')
        parts.append(
            f'<text class="tick-label" x="{x:.1f}" y="{y + 15}" font-size="10" text-anchor="middle">'
            f"{_tick_label(t)}</text>"
        )
    parts.append(
        f'<text class="axis-label" x="{(x0 + x1) / 2:.1f}" y="{y + 30}" font-size="11" text-anchor="middle">'
        f"{html.escape(label)}</text>"
    )


def svg_durations(rows: Sequence[dict[str, Any]]) -> str:
    """A horizontal bar per subject that ran in this batch, coloured by status, on a time axis with its unit."""
    ran = [r for r in rows if _numeric(r.get("duration_s")) is not None]
    bar_h, label_w, width = 16, 170, 420
    longest = max((r["duration_s"] for r in ran), default=0) or 1.0
    minutes = longest >= 120
    scale = 60.0 if minutes else 1.0
    axis_max = max(nice_ticks(0, longest / scale)[-1], longest / scale)
    axis_y = 8 + bar_h * len(ran)
    height = axis_y + 40
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="durations"'
        f' width="{label_w + width + 70}" height="{height}" role="img">'
    ]
    parts.append(f"<title>Duration of each subject that ran in this batch ({'min' if minutes else 's'})</title>")
    for i, row in enumerate(ran):
        y = 4 + i * bar_h
        w = max(1.0, width * (row["duration_s"] / scale) / axis_max)
        colour = _COLOURS.get(row["status"], "#b71c1c")
        name = html.escape(row["subject"])
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{name}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="{colour}">'
            f"<title>{name}: {row['status']}, {format_duration(row['duration_s'])}</title></rect>"
        )
        parts.append(
            f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="10">{format_duration(row["duration_s"])}</text>'
        )
    parts.append(f'<line class="axis" x1="{label_w}" y1="2" x2="{label_w}" y2="{axis_y}" stroke="#333"/>')
    _x_axis(
        parts,
        x0=label_w,
        x1=label_w + width,
        y=axis_y,
        lo=0.0,
        hi=axis_max,
        label=f"duration in this batch ({'minutes' if minutes else 'seconds'})",
    )
    parts.append("</svg>")
    return "".join(parts)


def metric_label(name: str, unit: str | None) -> str:
    """``mean_diffusivity (mm²/s)``; a metric with no known unit says so."""
    return f"{name} ({unit})" if unit else f"{name} (no unit given)"


def svg_distribution(name: str, points: Sequence[tuple[str, float]], *, unit: str | None = None) -> str:
    """A strip plot of one metric over subjects: one dot per subject (hover for its id) on a labelled axis."""
    width, height, pad = 460, 78, 30
    values = [v for _s, v in points]
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0)
    ticks = nice_ticks(lo, hi)
    lo, hi = min([lo, *ticks]), max([hi, *ticks])
    span = hi - lo
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="distribution" width="{width}" height="{height}" role="img">'
    ]
    parts.append(f"<title>{html.escape(metric_label(name, unit))}: one dot per subject</title>")
    for i, (subject, value) in enumerate(points):
        x = pad + (width - 2 * pad) * (value - lo) / span
        y = 24 + (i % 3) * 6
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="4" fill="#1565c0" fill-opacity="0.7">'
            f"<title>{html.escape(subject)}: {value:.6g}</title></circle>"
        )
    _x_axis(parts, x0=pad, x1=width - pad, y=40, lo=lo, hi=hi, label=metric_label(name, unit))
    parts.append(f'<text x="{width // 2}" y="12" font-size="11" text-anchor="middle">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _duration_cell(row: dict[str, Any]) -> str:
    if _numeric(row.get("duration_s")) is not None:
        return format_duration(row["duration_s"])
    earlier = _numeric(row.get("done_duration_s"))
    what = "not run" if row["status"] == "not_run" else "skipped"
    return f"– ({what}; took {format_duration(earlier)} when it ran)" if earlier is not None else f"– ({what})"


def _gallery(rows: Sequence[dict[str, Any]], base: Path | None) -> list[str]:
    """Every subject's QC images, embedded as data: URIs (within size limits, so the page stays one file)."""
    if base is None or not any(r.get("images") for r in rows):
        return []
    esc = html.escape
    out = ["<h2>QC images</h2>", '<div id="gallery">']
    total, left_out = 0, []
    for row in rows:
        images = list(row.get("images") or [])
        if not images:
            continue
        figures = []
        for rel in images[:MAX_IMAGES_PER_SUBJECT]:
            path = subject_dir(base, row["subject"]) / rel
            try:
                size = path.stat().st_size
                if size > MAX_IMAGE_BYTES or total + size > MAX_GALLERY_BYTES:
                    left_out.append(f"{row['subject']}/{rel}")
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            total += len(data)
            mime = IMAGE_TYPES[path.suffix.lower()]
            uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            figures.append(
                f'<figure><img src="{uri}" alt="{esc(row["subject"])} {esc(rel)}"'
                ' style="min-width:160px;max-width:320px;height:auto;image-rendering:pixelated">'
                f"<figcaption>{esc(rel)}</figcaption></figure>"
            )
        left_out += [f"{row['subject']}/{rel}" for rel in images[MAX_IMAGES_PER_SUBJECT:]]
        if figures:
            out.append(
                f'<section class="subject-images" data-subject="{esc(row["subject"])}"><h3>{esc(row["subject"])}</h3>'
                + "".join(figures)
                + "</section>"
            )
    out.append("</div>")
    if left_out:
        out.append(
            f"<p>Not embedded (size limits): {esc(', '.join(left_out[:50]))}"
            + (f" and {len(left_out) - 50} more" if len(left_out) > 50 else "")
            + "</p>"
        )
    return out


_STYLE = (
    "<style>.subject-report table{border-collapse:collapse}"
    ".subject-report td,.subject-report th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
    ".subject-report th{background:#eee}"
    ".success{color:#2e7d32}.skipped{color:#757575}.failed{color:#c62828;font-weight:bold}"
    "figure{display:inline-block;margin:4px 8px}figcaption{font-size:11px;color:#555}"
    ".subject-images{display:inline-block;vertical-align:top;margin-right:1em}"
    ".subject-images h3{margin:4px 8px}</style>"
)


def _subjects_table(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    esc = html.escape
    heads = "".join(f"<th>{h}</th>" for h in ("#", "Subject", "Status", "Duration", "Reason", "Log"))
    out = [f'<table id="subjects"><tr>{heads}' + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"]
    for i, row in enumerate(rows, 1):
        css = row["status"] if row["status"] in ("success", "skipped") else "failed"
        cells = "".join(
            f"<td>{esc(f'{v:.4g}' if isinstance(v, float) else str(v if v is not None else ''))}</td>"
            for v in (row["metrics"].get(n) for n in names)
        )
        out.append(
            f'<tr data-subject="{esc(row["subject"])}"><td>{i}</td><td>{esc(row["subject"])}</td>'
            f'<td class="{css}">{esc(row["status"])}</td><td class="duration">{esc(_duration_cell(row))}</td>'
            f'<td>{esc(row["reason"])}</td><td><a href="{esc(row["log"])}">log</a></td>{cells}</tr>'
        )
    out.append("</table>")
    return out


def _durations(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    skipped = sum(1 for r in rows if _numeric(r.get("duration_s")) is None)
    if skipped:
        out.append(
            f"<p>{skipped} subject{'s' if skipped != 1 else ''} did not run in this batch (skipped or not run):"
            " not plotted; the table gives the duration of their earlier run.</p>"
        )
    if len(rows) > skipped:
        out.append(svg_durations(rows))
    return out


def _metric_plots(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    units: dict[str, str] = {}
    for row in rows:
        units.update(row.get("units") or {})
    out = []
    for name in names:
        points = [(r["subject"], v) for r in rows if (v := _numeric(r["metrics"].get(name))) is not None]
        if points:
            unit = units.get(name) or METRIC_UNITS.get(name)
            out.append(f'<div class="metric">{svg_distribution(name, points, unit=unit)}</div>')
    return out


def render_html(
    rows: Sequence[dict[str, Any]],
    *,
    title: str,
    config_hash: str,
    summary: dict[str, int],
    out_dir: str | os.PathLike[str] | None = None,
) -> str:
    """The subjects' own page (inline CSS, SVG and images, no outside references): their table, durations,
    metric distributions and, with ``out_dir``, the QC images each subject's pipeline wrote.

    A subject batch's ``run_report.html`` holds the same parts as sections (:func:`subject_sections`).
    """
    names = _metric_names(rows)
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}</style>" + _STYLE,
        "</head><body class='subject-report'>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Config hash: <code>{esc(config_hash)}</code></p>",
        "<p>" + ", ".join(f"{esc(k)}: {v}" for k, v in summary.items()) + "</p>",
        "<h2>Subjects</h2>",
        *_subjects_table(rows, names),
        "<h2>Durations</h2>",
        *_durations(rows),
    ]
    plots = _metric_plots(rows, names)
    if plots:
        out += ["<h2>Metric distributions</h2>", *plots]
    out += _gallery(rows, Path(out_dir) if out_dir is not None else None)
    out.append("</body></html>")
    return "\n".join(out)


def subject_sections(
    rows: Sequence[dict[str, Any]], *, config_hash: str, out_dir: str | os.PathLike[str]
) -> list[Section]:
    """The subject batch's parts of its one page (``run_report.html``): every subject with its log and
    metrics, their durations, the metric distributions, and the QC gallery (images embedded)."""
    names = _metric_names(rows)
    table = (
        _STYLE
        + f"<div class='subject-report'><p>Config hash: <code>{html.escape(config_hash)}</code></p>"
        + "".join(_subjects_table(rows, names))
        + "</div>"
    )
    durations = "".join(_durations(rows)) or "<p>No subject ran.</p>"
    sections = [Section("Subjects", table), Section("Subject durations", durations)]
    plots = _metric_plots(rows, names)
    if plots:
        sections.append(Section("Metric distributions", "".join(plots)))
    gallery = _gallery(rows, Path(out_dir))
    sections.append(Section("QC images", "".join(gallery[1:]) if gallery else "<p>No subject wrote a QC image.</p>"))
    return sections


def write_html_report(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str,
    config_hash: str,
    summary: dict[str, int],
    out_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``batch_report.html`` atomically (with ``out_dir``, its QC gallery too)."""
    return atomic_write_text(
        path, render_html(rows, title=title, config_hash=config_hash, summary=summary, out_dir=out_dir)
    )
