"""One self-contained HTML run report for every pipeline, written beside the text and JSON reports.

What a person watching a batch wants before the logs: status counts, a timeline of the items
(start, end, status, in the spirit of Nextflow's timeline), duration and peak-memory
distributions, failures grouped by error signature with one example each, and a table of every
item with links to its log and outputs. Pipelines add sections of their own (`Section`).
The report's own plots are written as plain inline SVG (no plotting library to import: it used to
cost every batch 2 to 5 s); pipelines' sections may draw with matplotlib (`svg_figure`). The file
opens with no server.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from salvo.fsutil import atomic_write_text
from salvo.outcome import ItemResult, Status

if TYPE_CHECKING:
    from salvo.report import Summary

#: File name of the run report in a batch's report folder.
REPORT_NAME = "run_report.html"
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
    return text[text.index("<svg"):]


def image_tag(path: str | os.PathLike[str], *, alt: str = "", width: int = 220) -> str:
    """An ``<img>`` with the image embedded (PNG, JPEG, SVG), so the report stays one file."""
    p = Path(path)
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml"}.get(p.suffix.lower(), "image/png")
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
    """Nothing to do any more: the run report draws its plots itself (see `_timeline`), without matplotlib.

    Kept for callers: it used to import matplotlib in the background while a batch ran; that import
    (about 2 CPU-seconds) and its drawing (1 to 3 s) were a fixed cost of every batch command.
    Pipelines that draw with matplotlib (`svg_figure`) import it when they draw.
    """


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- plots as plain SVG (no matplotlib)

_W = 900  # width of a plot, px (the page's max-width is 1100 px; `svg{max-width:100%}` shrinks it)


def _fmt(v: float) -> str:
    return f"{round(v, 9):.4g}"


def _ticks(hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values from 0 to ``hi``."""
    hi = hi if hi > 0 else 1.0
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(hi / step + 1e-9) + 1)]


def _span_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``lo`` .. ``hi``."""
    width = hi - lo if hi > lo else 1.0
    step = _ticks(width, n)[1] if len(_ticks(width, n)) > 1 else width
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + 1e-9 * step:
        out.append(v)
        v += step
    return out


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(label)}" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="11">'
            + "".join(body) + "</svg>")


def _axes(x0: float, y0: float, w: float, h: float, *, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]],
          xlabel: str, ylabel: str, title: str) -> list[str]:
    """A frame at (x0, y0) of size w x h, ticks at pixel positions, the labels and the title."""
    out = [f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" fill="none" stroke="#444"/>',
           f'<text x="{x0 + w / 2:.1f}" y="{y0 - 8:.1f}" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
           f'<text x="{x0 + w / 2:.1f}" y="{y0 + h + 32:.1f}" text-anchor="middle">{html.escape(xlabel)}</text>',
           f'<text transform="translate({x0 - 36:.1f},{y0 + h / 2:.1f}) rotate(-90)" text-anchor="middle">{html.escape(ylabel)}</text>']
    for px, text in xticks:
        out.append(f'<line x1="{px:.1f}" y1="{y0 + h:.1f}" x2="{px:.1f}" y2="{y0 + h + 4:.1f}" stroke="#444"/>'
                   f'<text x="{px:.1f}" y="{y0 + h + 16:.1f}" text-anchor="middle">{html.escape(text)}</text>')
    for py, text in yticks:
        out.append(f'<line x1="{x0 - 4:.1f}" y1="{py:.1f}" x2="{x0:.1f}" y2="{py:.1f}" stroke="#444"/>'
                   f'<text x="{x0 - 6:.1f}" y="{py + 4:.1f}" text-anchor="end">{html.escape(text)}</text>')
    return out


def _timeline(results: Sequence[ItemResult]) -> str:
    ran = [(r, _parse(r.started), _parse(r.ended)) for r in results if not r.cached and r.status is not Status.NOT_RUN]
    ran = [(r, s, e) for r, s, e in ran if s is not None and e is not None]
    if not ran:
        return "<p>No item ran in this batch (every item was resumed from earlier runs or not started).</p>"
    ran.sort(key=lambda x: x[1])
    shown = ran[:TIMELINE_ROWS]
    t0 = shown[0][1]
    spans = [((s - t0).total_seconds(), max((e - s).total_seconds(), 0.001)) for _, s, e in shown]
    xmax = max(a + w for a, w in spans) or 1.0
    labelled = len(shown) <= 40
    left, top, right = (210.0 if labelled else 60.0), 50.0, 20.0
    row_h = min(18.0, max(1.2, 520.0 / len(shown)))
    plot_w, plot_h = _W - left - right, row_h * len(shown)
    sx = plot_w / (xmax * 1.02)
    body = []
    for row, ((r, _, _), (a, w)) in enumerate(zip(shown, spans)):
        tip = html.escape(f"{r.item_id}: {r.status.value}, {w:.2f} s")
        body.append(f'<rect x="{left + a * sx:.2f}" y="{top + row * row_h + 0.1 * row_h:.2f}" width="{max(w * sx, 0.8):.2f}" '
                    f'height="{0.8 * row_h:.2f}" fill="{COLOURS[r.status]}"><title>{tip}</title></rect>')
        if labelled:
            body.append(f'<text x="{left - 6:.1f}" y="{top + (row + 0.5) * row_h + 3:.1f}" text-anchor="end" font-size="9">'
                        f"{html.escape(_short(r.item_id))}</text>")
    xt = [(left + v * sx, _fmt(v)) for v in _ticks(xmax) if v * sx <= plot_w + 0.5]
    frame = _axes(left, top, plot_w, plot_h, xticks=xt, yticks=[], xlabel="seconds since the first item started",
                  ylabel="" if labelled else "item (by start time)", title="Timeline")
    statuses = [st for st in Status if any(r.status is st for r, _, _ in shown)]
    legend = []
    for i, st in enumerate(statuses):
        x = _W - right - 110 * (len(statuses) - i)
        legend.append(f'<rect x="{x:.0f}" y="6" width="12" height="12" fill="{COLOURS[st]}"/>'
                      f'<text x="{x + 16:.0f}" y="16">{st.value}</text>')
    svg = _svg(_W, top + plot_h + 44, frame + body + legend, "Timeline of the items that ran")
    note = f"<p>Showing the first {len(shown)} of {len(ran)} items that ran.</p>" if len(ran) > len(shown) else ""
    return svg + note


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _histogram(values: Sequence[float], *, x0: float, colour: str, xlabel: str, title: str) -> list[str]:
    """One histogram panel (bins as matplotlib's default range: min to max, or +-0.5 around a single value)."""
    top, w, h = 30.0, _W / 2 - 90, 190.0
    left = x0 + 60
    if not values:
        return _axes(left, top, w, h, xticks=[], yticks=[], xlabel=xlabel, ylabel="items", title=title)
    lo, hi = min(values), max(values)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = min(30, max(5, len(values) // 3))
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
    cmax = max(counts)
    sx, sy = w / (hi - lo), h / (cmax * 1.05)
    body = [f'<rect x="{left + (lo + i * (hi - lo) / bins - lo) * sx:.2f}" y="{top + h - c * sy:.2f}" '
            f'width="{(hi - lo) / bins * sx:.2f}" height="{c * sy:.2f}" fill="{colour}"><title>{c}</title></rect>'
            for i, c in enumerate(counts) if c]
    xt = [(left + (v - lo) * sx, _fmt(v)) for v in _span_ticks(lo, hi)]
    yt = [(top + h - v * sy, _fmt(v)) for v in _ticks(cmax) if v == int(v)]
    return _axes(left, top, w, h, xticks=xt, yticks=yt, xlabel=xlabel, ylabel="items", title=title) + body


def _distributions(results: Sequence[ItemResult]) -> str:
    ran = [r for r in results if not r.cached and r.status is not Status.NOT_RUN]
    if not ran:
        return ""
    mem = [r.peak_rss_mb for r in ran if r.peak_rss_mb is not None]
    body = _histogram([r.duration_s for r in ran], x0=0, colour="#1565c0", xlabel="duration (s)", title="Duration")
    body += _histogram(mem, x0=_W / 2, colour="#00897b", xlabel="peak memory (MiB)", title="Peak memory" if mem else "Peak memory (not measured)")
    return _svg(_W, 270, body, "Histograms of the items' durations and peak memory")


def _link(path: str, base: Path, label: str) -> str:
    if "://" in path:
        return html.escape(path)
    try:
        rel = os.path.relpath(path, base)
    except ValueError:
        rel = path
    href = "/".join(rel.split(os.sep))
    return f'<a href="{html.escape(href)}">{html.escape(label)}</a>'


def _failures(results: Sequence[ItemResult]) -> str:
    groups = group_failures(results)
    if not groups:
        return "<p>No item failed.</p>"
    rows = []
    for sig, members in groups:
        ex = members[0]
        tail = f"<details><summary>stderr (last lines)</summary><pre>{html.escape(ex.stderr_tail[-4000:])}</pre></details>" if ex.stderr_tail else ""
        rows.append(
            f"<tr><td>{len(members)}</td><td><code>{html.escape(sig)}</code></td>"
            f"<td>{html.escape(ex.item_id)}<br><small>{html.escape(ex.reason[:500])}</small>{tail}</td></tr>"
        )
    return "<table><tr><th>items</th><th>error signature</th><th>one example</th></tr>" + "".join(rows) + "</table>"


def _items(results: Sequence[ItemResult], base: Path, logs: Mapping[str, str]) -> str:
    ordered = sorted(results, key=lambda r: (not r.status.failed, r.status is not Status.NOT_RUN, r.item_id))
    rows = []
    for r in ordered:
        log = logs.get(r.item_id)
        log_cell = _link(log, base, "log") if log and os.path.exists(log) else ""
        outs = " ".join(_link(o, base, Path(o).name or o) for o in r.outputs[:5])
        took = "resumed" if r.cached else (f"{r.duration_s:.2f} s" if r.status is not Status.NOT_RUN else "")
        mem = f"{r.peak_rss_mb:.0f}" if (r.peak_rss_mb is not None and not r.cached) else ""
        rows.append(
            f'<tr><td>{html.escape(r.item_id)}</td><td><span class="st" style="background:{COLOURS[r.status]}">{r.status.value}</span></td>'
            f"<td>{took}</td><td>{mem}</td><td>{r.attempt}</td><td>{html.escape(r.reason[:200])}</td><td>{log_cell}</td><td>{outs}</td></tr>"
        )
    return ("<table><tr><th>item</th><th>status</th><th>time</th><th>peak MiB</th><th>attempt</th><th>reason</th><th>log</th><th>outputs</th></tr>"
            + "".join(rows) + "</table>")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{margin-bottom:.2em} .meta{color:#666} table{border-collapse:collapse;width:100%;font-size:13px;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
.st{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px;white-space:nowrap}
.badges .st{font-size:15px;padding:4px 10px;margin-right:6px;display:inline-block}
pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:6px} svg{max-width:100%;height:auto}
"""


def render_run_report(results: Sequence[ItemResult], summary: "Summary", *, title: str, base: str | os.PathLike[str] = ".",
                      sections: Sequence[Section] = (), logs: Mapping[str, str] | None = None) -> str:
    """The whole report as one HTML document."""
    base = Path(base)
    counts = {Status(k): v for k, v in summary.counts.items()}
    badges = "".join(f'<span class="st" style="background:{COLOURS[s]}">{s.value}: {n}</span>' for s, n in counts.items())
    verdict = "all items finished" if summary.ok else f"{summary.failed} of {summary.total} items failed"
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{html.escape(summary.pipeline)} · generated {now} · {verdict} · wall time {summary.wall_time_s:.1f} s · "
        f"{summary.resumed} resumed from earlier runs</p>",
        f"<div class='badges' id='counts'>{badges}</div>",
        "<h2>Timeline</h2>", _timeline(results),
        "<h2>Durations and memory</h2>", _distributions(results) or "<p>No item ran in this batch.</p>",
        "<h2 id='failures'>Failures by error signature</h2>", _failures(results),
    ]
    for s in sections:
        parts += [f"<h2>{html.escape(s.title)}</h2>", s.html]
    parts += ["<h2>Every item</h2>", _items(results, base, logs or {}), "</body></html>"]
    return "\n".join(parts)


def write_run_report(results: Sequence[ItemResult], summary: "Summary", *, folder: str | os.PathLike[str], title: str,
                     sections: Sequence[Section] = (), logs: Mapping[str, str] | None = None, name: str = REPORT_NAME) -> Path:
    """Write the run report atomically into ``folder``; return its path."""
    folder = Path(folder)
    doc = render_run_report(results, summary, title=title, base=folder, sections=sections, logs=logs)
    return Path(atomic_write_text(folder / name, doc))
