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
    """Import matplotlib in the background while a batch runs, so its reports (and a Ctrl-C's)
    are not delayed by the seconds that import takes."""
    import threading

    threading.Thread(target=_plt, name="salvo-report-warm-up", daemon=True).start()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _timeline(results: Sequence[ItemResult]) -> str:
    ran = [(r, _parse(r.started), _parse(r.ended)) for r in results if not r.cached and r.status is not Status.NOT_RUN]
    ran = [(r, s, e) for r, s, e in ran if s is not None and e is not None]
    if not ran:
        return "<p>No item ran in this batch (every item was resumed from earlier runs or not started).</p>"
    ran.sort(key=lambda x: x[1])
    shown = ran[:TIMELINE_ROWS]
    t0 = shown[0][1]
    plt = _plt()
    height = min(8.0, 1.5 + 0.12 * len(shown))
    fig, ax = plt.subplots(figsize=(9, height))
    from matplotlib.collections import PolyCollection

    boxes, colours = [], []
    for row, (r, s, e) in enumerate(shown):  # one collection, not an artist per item (400 bars: 0.6 s less)
        a, b = (s - t0).total_seconds(), (s - t0).total_seconds() + max((e - s).total_seconds(), 0.001)
        boxes.append([(a, row - 0.4), (a, row + 0.4), (b, row + 0.4), (b, row - 0.4)])
        colours.append(COLOURS[r.status])
    ax.add_collection(PolyCollection(boxes, facecolors=colours, edgecolors="none"))
    ax.set_xlim(0, max(b for (_, _), (_, _), (b, _), _ in boxes) * 1.02)
    ax.set_ylim(-0.6, len(shown) - 0.4)
    ax.set_xlabel("seconds since the first item started")
    ax.set_ylabel("item (by start time)")
    if len(shown) <= 40:
        ax.set_yticks(range(len(shown)), [_short(r.item_id) for r, _, _ in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_title("Timeline")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[st]) for st in Status if any(r.status is st for r, _, _ in shown)]
    labels = [st.value for st in Status if any(r.status is st for r, _, _ in shown)]
    ax.legend(handles, labels, loc="lower right", fontsize=7)
    note = f"<p>Showing the first {len(shown)} of {len(ran)} items that ran.</p>" if len(ran) > len(shown) else ""
    return svg_figure(fig) + note


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


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
        name = os.path.basename(path) if os.path.normpath(path) == path else Path(path).name  # the same, for a normalised path
        return self(path, name or path)

    def __call__(self, path: str, label: str) -> str:
        return (os.path.normpath(path) == path and self._under_base(path, label)) or _link(path, self.base, label)

    def _under_base(self, path: str, label: str) -> str | None:
        if len(path) > len(self.prefix) and path.startswith(self.prefix) and "://" not in path:
            href = path[len(self.prefix):]  # what os.path.relpath gives for a normalised path under base
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
        tail = f"<details><summary>stderr (last lines)</summary><pre>{html.escape(ex.stderr_tail[-4000:])}</pre></details>" if ex.stderr_tail else ""
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
