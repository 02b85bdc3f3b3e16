"""One self-contained HTML run report for every pipeline, written beside the text and JSON reports.

What a person watching a batch wants before the logs: status counts, a timeline of the items
(start, end, status, in the spirit of Nextflow's timeline), duration and peak-memory
distributions, failures grouped by error signature with one example each, and a table of every
item with links to its log and outputs. Pipelines add sections of their own (`Section`).
Plots are drawn by matplotlib and inlined as SVG, so the file opens with no server.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salvo.fsutil import atomic_write_text
from salvo.outcome import ItemResult, Status, signal_name

if TYPE_CHECKING:
    from salvo.report import Summary

#: File name of the run report in a batch's report folder.
REPORT_NAME = "run_report.html"
#: File name of the trace (one row per attempt) beside the run report.
TRACE_NAME = "trace.tsv"
#: Folder of a report folder's past runs: ``runs/<run name>/`` holds each run's report, trace and summary.
HISTORY_DIR = "runs"
#: Most attempts listed in the report's trace table; ``trace.tsv`` holds them all.
TRACE_ROWS = 2000
#: Colours of the statuses, shared by badges, timeline bars and table cells.
COLOURS = {
    Status.SUCCESS: "#2e7d32",
    Status.SKIPPED: "#78909c",
    Status.ERROR: "#c62828",
    Status.SILENT_FAILURE: "#ad1457",
    Status.TIMEOUT: "#ef6c00",
    Status.CRASHED: "#6a1b9a",
    Status.EXCEPTION: "#4e342e",
    Status.NOT_RUN: "#bdbdbd",
    Status.INTERRUPTED: "#f9a825",
}
#: Most items drawn as their own timeline row; a larger batch shows its first rows by start time.
TIMELINE_ROWS = 400
_SIGNATURE_NOISE = [
    (re.compile(r"(/[^\s:'\"]+)+"), "<path>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]


@dataclass(frozen=True)
class Section:
    """A pipeline's own part of the report: a title and an HTML fragment (already escaped)."""

    title: str
    html: str


def error_signature(result: ItemResult) -> str:
    """What failures have in common: the status and the reason with paths and numbers folded."""
    reason = result.reason.splitlines()[0] if result.reason else ""
    for pattern, repl in _SIGNATURE_NOISE:
        reason = pattern.sub(repl, reason)
    return f"{result.status.value}: {reason[:160]}".rstrip(": ")


def group_failures(results: Iterable[ItemResult]) -> list[tuple[str, list[ItemResult]]]:
    """Failed items grouped by signature, the largest group first."""
    groups: dict[str, list[ItemResult]] = defaultdict(list)
    for r in results:
        if r.status.failed:
            groups[error_signature(r)].append(r)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def svg_figure(fig: object) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (closes the figure)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    text = buf.getvalue()
    return text[text.index("<svg") :]


def image_tag(path: str | os.PathLike[str], *, alt: str = "", width: int = 220) -> str:
    """An ``<img>`` with the image embedded (PNG, JPEG, SVG), so the report stays one file."""
    p = Path(path)
    kind = {
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".gif": "image/gif",
        ".svg": "image/svg+xml",
    }.get(p.suffix.lower(), "image/png")
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<img src="data:{kind};base64,{data}" alt="{html.escape(alt or p.name)}" width="{width}">'


def _parse(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    try:
        return dt.datetime.fromisoformat(ts)
    except ValueError:
        return None


def warm_up() -> None:
    """Import matplotlib in the background while a batch runs, so its reports (and a Ctrl-C's)
    are not delayed by the seconds that import takes."""
    import threading

    threading.Thread(target=_plt, name="salvo-report-warm-up", daemon=True).start()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _attempts(r: ItemResult) -> list[tuple[int, Status, dt.datetime, dt.datetime]]:
    """(attempt, status, start, end) of each attempt of an item that ran in this run (none for the others)."""
    if r.cached or r.status is Status.NOT_RUN:
        return []
    tries = r.attempts or [r.figures()]
    out = []
    for a in tries:
        s, e = _parse(a.get("start")), _parse(a.get("end"))
        if s is not None and e is not None:
            try:
                st = Status(a.get("status"))
            except ValueError:
                st = r.status
            out.append((int(a.get("attempt") or 1), st, s, e))
    return out


def _nice_step(span: float, n: int = 6) -> float:
    raw = max(span, 1e-3) / n
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _timeline(results: Sequence[ItemResult]) -> str:
    """Every attempt of the items that ran as its own bar, on its item's row (a retried item has two
    bars or more); an inline SVG of ``<rect>`` elements, each with a tooltip, the legend above it."""
    ran = [(r, tries) for r in results if (tries := _attempts(r))]
    if not ran:
        return "<p>No item ran in this batch (every item was resumed from earlier runs or not started).</p>"
    ran.sort(key=lambda x: x[1][0][2])
    shown = ran[:TIMELINE_ROWS]
    t0 = shown[0][1][0][2]
    t_end = max((e - t0).total_seconds() for _, tries in shown for *_, e in tries)
    span = max(t_end, 0.001) * 1.02
    labels = len(shown) <= 40
    left, right, top, width = (170 if labels else 50), 20, 10, 900
    row_h = 18 if len(shown) <= 40 else max(2.0, min(10.0, 600 / len(shown)))
    plot_w, plot_h = width - left - right, row_h * len(shown)
    height = top + plot_h + 45

    def x(seconds: float) -> float:
        return left + plot_w * seconds / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h:.1f}" fill="#fafafa" stroke="#ccc"/>',
    ]
    step = _nice_step(span)
    tick = 0.0
    while tick <= span:
        px = x(tick)
        parts.append(
            f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + plot_h + 4:.1f}" stroke="#ddd"/>'
            f'<text x="{px:.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle">{tick:g}</text>'
        )
        tick = round(tick + step, 9)
    for row, (r, tries) in enumerate(shown):
        y = top + row * row_h
        if labels:
            label = html.escape(_short(r.item_id, 26))
            parts.append(f'<text x="{left - 6}" y="{y + row_h * 0.7:.1f}" text-anchor="end">{label}</text>')
        for attempt, st, s, e in tries:
            a, b = (s - t0).total_seconds(), (e - t0).total_seconds()
            w = max(x(b) - x(a), 1.5)
            tip = f"{r.item_id} · attempt {attempt} · {st.value} · {(e - s).total_seconds():.2f} s"
            parts.append(
                f'<rect class="bar" data-item="{html.escape(r.item_id)}" data-attempt="{attempt}" '
                f'data-status="{st.value}" x="{x(a):.1f}" y="{y + row_h * 0.1:.1f}" width="{w:.1f}" '
                f'height="{max(row_h * 0.8, 1.5):.1f}" fill="{COLOURS[st]}" stroke="#fff" stroke-width="0.5">'
                f"<title>{html.escape(tip)}</title></rect>"
            )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h + 34:.1f}" text-anchor="middle">'
        "seconds since the first item started (one bar per attempt; retries are bars of their own)"
        "</text></svg>"
    )
    present = [st for st in Status if any(t[1] is st for _, tries in shown for t in tries)]
    legend = (
        "<div class='legend'>"
        + "".join(f"<span><i style='background:{COLOURS[st]}'></i>{st.value}</span>" for st in present)
        + "</div>"
    )
    retried = sum(1 for _, tries in shown if len(tries) > 1)
    note = f"<p>{retried} item(s) ran more than once.</p>" if retried else ""
    if len(ran) > len(shown):
        note += f"<p>Showing the first {len(shown)} of {len(ran)} items that ran.</p>"
    return legend + "<div class='scroll'>" + "".join(parts) + "</div>" + note


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def _distributions(results: Sequence[ItemResult]) -> str:
    ran = [r for r in results if not r.cached and r.status is not Status.NOT_RUN]
    if not ran:
        return ""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3))
    a1.hist([r.duration_s for r in ran], bins=min(30, max(5, len(ran) // 3)), color="#1565c0")
    a1.set_xlabel("duration (s)")
    a1.set_ylabel("items")
    a1.set_title("Duration")
    mem = [r.peak_rss_mb for r in ran if r.peak_rss_mb is not None]
    if mem:
        a2.hist(mem, bins=min(30, max(5, len(mem) // 3)), color="#00897b")
    a2.set_xlabel("peak memory (MiB)")
    a2.set_ylabel("items")
    a2.set_title("Peak memory" if mem else "Peak memory (not measured)")
    return svg_figure(fig)


def _link(path: str, base: Path, label: str) -> str:
    if "://" in path:
        return html.escape(path)
    try:
        rel = os.path.relpath(path, base)
    except ValueError:
        rel = path
    href = "/".join(rel.split(os.sep))
    return f'<a href="{html.escape(href)}">{html.escape(label)}</a>'


class _Links:
    """:func:`_link` for every row of one report: a path under ``base`` (10,000 outputs of one report
    folder) is made relative by cutting the folder off, not by ``os.path.relpath`` each."""

    def __init__(self, base: Path) -> None:
        self.base = base
        absolute = os.path.abspath(base)
        self.prefix = absolute if absolute.endswith(os.sep) else absolute + os.sep

    def output(self, path: str) -> str:
        """The link to an output, labelled with its name (``Path(path).name or path``)."""
        name = (
            os.path.basename(path) if os.path.normpath(path) == path else Path(path).name
        )  # the same, for a normalised path
        return self(path, name or path)

    def __call__(self, path: str, label: str) -> str:
        return (os.path.normpath(path) == path and self._under_base(path, label)) or _link(path, self.base, label)

    def _under_base(self, path: str, label: str) -> str | None:
        if len(path) > len(self.prefix) and path.startswith(self.prefix) and "://" not in path:
            href = path[len(self.prefix) :]  # what os.path.relpath gives for a normalised path under base
            if os.sep != "/":
                href = "/".join(href.split(os.sep))
            return f'<a href="{_escape(href)}">{_escape(label)}</a>'
        return None


def _escape(text: str) -> str:
    """``html.escape``, without its five replacements for the text that needs none (a path, an id)."""
    return html.escape(text) if _SPECIAL.search(text) else text


_SPECIAL = re.compile("[&<>\"']")


def _failures(results: Sequence[ItemResult]) -> str:
    groups = group_failures(results)
    if not groups:
        return "<p>No item failed.</p>"
    rows = []
    for sig, members in groups:
        ex = members[0]
        tail = (
            f"<details><summary>stderr (last lines)</summary><pre>{html.escape(ex.stderr_tail[-4000:])}</pre></details>"
            if ex.stderr_tail
            else ""
        )
        rows.append(
            f"<tr><td>{len(members)}</td><td><code>{html.escape(sig)}</code></td>"
            f"<td>{html.escape(ex.item_id)}<br><small>{html.escape(ex.reason[:500])}</small>{tail}</td></tr>"
        )
    return "<table><tr><th>items</th><th>error signature</th><th>one example</th></tr>" + "".join(rows) + "</table>"


def _items(results: Sequence[ItemResult], base: Path, logs: Mapping[str, str]) -> str:
    not_run = Status.NOT_RUN
    ordered = sorted(results, key=lambda r: (not r.status.failed, r.status is not not_run, r.item_id))
    link = _Links(base)
    escape = html.escape
    badges = {s: f'<span class="st" style="background:{COLOURS[s]}">{s.value}</span>' for s in Status}
    rows = []
    for r in ordered:
        log = logs.get(r.item_id) if logs else None
        log_cell = link(log, "log") if log and os.path.exists(log) else ""
        outs = " ".join(map(link.output, r.outputs[:5]))
        took = "resumed" if r.cached else (f"{r.duration_s:.2f} s" if r.status is not not_run else "")
        mem = f"{r.peak_rss_mb:.0f}" if (r.peak_rss_mb is not None and not r.cached) else ""
        reason = escape(r.reason[:200]) if r.reason else ""
        rows.append(
            f"<tr><td>{_escape(r.item_id)}</td><td>{badges[r.status]}</td>"
            f"<td>{took}</td><td>{mem}</td><td>{r.attempt}</td><td>{reason}</td><td>{log_cell}</td><td>{outs}</td></tr>"
        )
    return (
        "<table><tr><th>item</th><th>status</th><th>time</th><th>peak MiB</th>"
        "<th>attempt</th><th>reason</th><th>log</th><th>outputs</th></tr>" + "".join(rows) + "</table>"
    )


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return "" if value is None else fmt.format(value)


def _use(used: float | None, limit: float | None, unit: str) -> str:
    """``12.0 / 60 s (20%)``: how much of a limit an attempt used; the use alone without a limit."""
    if used is None:
        return ""
    if not limit:
        return f"{used:.1f} {unit} (no limit)"
    pct = 100.0 * used / limit
    cls = " class='near'" if pct >= 80 else ""
    return f"<span{cls}>{used:.1f} / {limit:g} {unit} ({pct:.0f}%)</span>"


def _trace_table(rows: Sequence[Mapping[str, Any]], header: Mapping[str, Any]) -> str:
    """Every attempt (the trace's rows): exit or signal, times, CPU, memory, I/O, use of its limits, command."""
    if not rows:
        return "<p>No item in this batch.</p>"
    mem_limit = header.get("memory_limit_mb")
    esc = html.escape
    out = []
    for row in rows[:TRACE_ROWS]:
        st = row.get("status", "")
        colour = COLOURS.get(Status(st)) if st in _STATUS_VALUES else "#90a4ae"
        sig = row.get("signal")
        ended = f"exit {row['exit']}" if row.get("exit") is not None else (signal_name(sig) if sig else "")
        command = str(row.get("command") or "")
        short = command if len(command) <= 160 else command[:159] + "…"
        start = str(row.get("start") or "")
        out.append(
            f"<tr><td>{_escape(str(row['item']))}</td><td>{row.get('attempt', '')}</td>"
            f"<td><span class='st' style='background:{colour}'>{esc(st)}</span></td><td>{esc(ended)}</td>"
            f"<td>{esc(start[11:23] if len(start) > 19 else start)}</td><td>{_num(row.get('duration_s'))}</td>"
            f"<td>{_num(row.get('cpu_s'))}</td><td>{_num(row.get('cpu_pct'), '{:.0f}')}</td>"
            f"<td>{_num(row.get('peak_rss_mb'), '{:.0f}')}</td><td>{_bytes(row.get('read_bytes'))}</td>"
            f"<td>{_bytes(row.get('write_bytes'))}</td>"
            f"<td>{_use(row.get('duration_s') if 'duration_s' in row else None, row.get('timeout_s'), 's')}</td>"
            f"<td>{_use(row.get('peak_rss_mb'), mem_limit, 'MiB')}</td>"
            f"<td><code title='{esc(command)}'>{esc(short)}</code></td></tr>"
        )
    more = (
        (
            f"<p>Showing the first {TRACE_ROWS} of {len(rows)} attempts; "
            f"<a href='{TRACE_NAME}'>{TRACE_NAME}</a> holds them all.</p>"
        )
        if len(rows) > TRACE_ROWS
        else ""
    )
    heads = (
        "item",
        "attempt",
        "status",
        "exit / signal",
        "start (UTC)",
        "time s",
        "CPU s",
        "CPU %",
        "peak MiB",
        "read",
        "written",
        "time used / limit",
        "memory used / limit",
        "command",
    )
    head = "".join(f"<th>{h}</th>" for h in heads)
    return f"<table id='trace'><tr>{head}</tr>" + "".join(out) + "</table>" + more


_STATUS_VALUES = frozenset(s.value for s in Status)


def _header(header: Mapping[str, Any], summary: "Summary", files: Sequence[tuple[str, str]]) -> str:
    """The run header: what ran, with which versions, by whom, where, when, how it ended, its UI link."""
    esc = html.escape
    rows: list[tuple[str, str]] = [("Run", esc(f"{header.get('run_name', '')}"))]
    if header.get("command"):
        rows.append(("Command", f"<code>{esc(header['command'])}</code>"))
    if header.get("parameters"):
        params = json.dumps(header["parameters"], default=str, sort_keys=True)
        rows.append(("Flow parameters", f"<code>{esc(params[:4000])}</code>"))
    versions = f"Salvo {header.get('salvo_version', '?')}"
    versions += f", Prefect {header['prefect_version']}" if header.get("prefect_version") else ""
    versions += f", Python {header['python_version']}" if header.get("python_version") else ""
    rows.append(("Versions", esc(versions)))
    rows.append(("User and host", esc(f"{header.get('user', '')} on {header.get('host', '')}")))
    rows.append(("Working folder", f"<code>{esc(str(header.get('cwd', '')))}</code>"))
    rows.append(("Started", esc(str(header.get("started") or "unknown"))))
    rows.append(("Ended", esc(str(header.get("ended") or ""))))
    code = header.get("exit_status")
    meaning = {
        0: "every item finished",
        1: f"{summary.failed} of {summary.total} items failed",
        130: "interrupted (Ctrl-C)",
    }.get(code, "")  # type: ignore[arg-type]
    rows.append(("Exit status", esc(f"{code} ({meaning})" if meaning else str(code))))
    ui = str(header.get("ui_url") or "")
    rows.append(
        (
            "In the UI",
            f'<a href="{esc(ui)}">{esc(ui)}</a>'
            if ui.startswith(("http://", "https://"))
            else "no UI link (the run had no Prefect UI address)",
        )
    )
    limits = []
    timeout = header.get("timeout_s")
    limits.append(f"time {timeout:g} s per attempt" if timeout else "no time limit")
    if header.get("memory_limit_mb"):
        limits.append(f"memory {header['memory_limit_mb']:g} MiB")
    rows.append(("Limits", esc(", ".join(limits))))
    if files:
        rows.append(("Files", " · ".join(f'<a href="{esc(name)}">{esc(label)}</a>' for label, name in files)))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table id='run-header' class='header'>{body}</table>"


def _history(runs: Sequence[Mapping[str, Any]], limit: int = 50) -> str:
    """Earlier runs kept in ``runs/``: when, which, counts, duration, exit status, UI link."""
    if not runs:
        return "<p>No earlier run of this folder is kept.</p>"
    esc = html.escape
    out = []
    for r in runs[:limit]:
        head, summ = r["run"], r["summary"]
        counts = ", ".join(f"{k}: {v}" for k, v in (summ.get("counts") or {}).items())
        ui = str(head.get("ui_url") or "")
        ui_cell = f'<a href="{esc(ui)}">UI</a>' if ui.startswith(("http://", "https://")) else ""
        href = f"{HISTORY_DIR}/{r['name']}/{REPORT_NAME}"
        took = _num(summ.get("wall_time_s"), "{:.1f} s")
        link = f'<a href="{esc(href)}">{esc(r["name"])}</a>'
        out.append(
            f"<tr><td>{esc(str(head.get('ended', '')))}</td><td>{link}</td>"
            f"<td>{esc(str(head.get('pipeline', '')))}</td><td>{esc(counts)}</td>"
            f"<td>{took}</td><td>{esc(str(head.get('exit_status', '')))}</td><td>{ui_cell}</td></tr>"
        )
    return (
        "<table id='history'><tr><th>ended</th><th>run</th><th>pipeline</th><th>items</th><th>wall time</th>"
        "<th>exit</th><th>UI</th></tr>" + "".join(out) + "</table>"
    )


_LINK = re.compile(r'(\s(?:href|src)=)(["\'])([^"\']*)\2')


def relocate_links(page: str, *, depth: int, keep: Iterable[str] = ()) -> str:
    """The same page for a copy ``depth`` folders below the original (``runs/<run name>/``): every
    relative link gets ``../`` ``depth`` times, except in-page anchors, data: URIs, absolute
    URLs and paths, and the names in ``keep`` (the files the copy has beside it)."""
    up, kept = "../" * depth, set(keep)

    def fix(m: re.Match[str]) -> str:
        target = m.group(3)
        if not target or target.startswith(("#", "/", "data:", "mailto:")) or "://" in target or target in kept:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{up}{target}{m.group(2)}"

    return _LINK.sub(fix, page)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{margin-bottom:.2em} .meta{color:#666} table{border-collapse:collapse;width:100%;font-size:13px;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
.st{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px;white-space:nowrap}
.badges .st{font-size:15px;padding:4px 10px;margin-right:6px;display:inline-block}
pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:6px} svg{max-width:100%;height:auto}
table.header{width:auto} table.header th{color:#555;font-weight:600;white-space:nowrap;padding-right:1.5em}
code{font-size:12px;word-break:break-all} .near{color:#c62828;font-weight:600}
.legend{margin:.3em 0;font-size:13px} .legend span{margin-right:1em;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
#trace td:last-child{max-width:360px}
"""


def render_run_report(
    results: Sequence[ItemResult],
    summary: "Summary",
    *,
    title: str,
    base: str | os.PathLike[str] = ".",
    sections: Sequence[Section] = (),
    logs: Mapping[str, str] | None = None,
    header: Mapping[str, Any] | None = None,
    trace: Sequence[Mapping[str, Any]] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    files: Sequence[tuple[str, str]] = (),
) -> str:
    """The whole report as one HTML document.

    ``header``: the run header (``salvo.report.run_header``); ``trace``: its attempt rows
    (``salvo.report.attempt_rows``); ``history``: earlier runs kept in ``runs/``; ``files``:
    (label, file name) of the files written beside the report, linked from the header.
    """
    base = Path(base)
    counts = {Status(k): v for k, v in summary.counts.items()}
    badges = "".join(
        f'<span class="st" style="background:{COLOURS[s]}">{s.value}: {n}</span>' for s, n in counts.items()
    )
    verdict = "all items finished" if summary.ok else f"{summary.failed} of {summary.total} items failed"
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{html.escape(summary.pipeline)} · generated {now} · {verdict}"
        f" · wall time {summary.wall_time_s:.1f} s · "
        f"{summary.resumed} resumed from earlier runs</p>",
    ]
    if header is not None:
        parts.append(_header(header, summary, files))
    parts += [
        f"<div class='badges' id='counts'>{badges}</div>",
        "<h2>Timeline</h2>",
        _timeline(results),
        "<h2>Durations and memory</h2>",
        _distributions(results) or "<p>No item ran in this batch.</p>",
        "<h2 id='failures'>Failures by error signature</h2>",
        _failures(results),
    ]
    for s in sections:
        parts += [f"<h2>{html.escape(s.title)}</h2>", s.html]
    parts += ["<h2>Every item</h2>", _items(results, base, logs or {})]
    if trace is not None:
        parts += ["<h2 id='attempts'>Every attempt (the trace)</h2>", _trace_table(trace, header or {})]
    if header is not None:
        parts += ["<h2 id='earlier-runs'>Earlier runs of this folder</h2>", _history(history)]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_run_report(
    results: Sequence[ItemResult],
    summary: "Summary",
    *,
    folder: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section] = (),
    logs: Mapping[str, str] | None = None,
    name: str = REPORT_NAME,
) -> Path:
    """Write the run report atomically into ``folder``; return its path (no trace, no history: see
    ``salvo.report.write_reports`` for those)."""
    folder = Path(folder)
    doc = render_run_report(results, summary, title=title, base=folder, sections=sections, logs=logs)
    return Path(atomic_write_text(folder / name, doc))
