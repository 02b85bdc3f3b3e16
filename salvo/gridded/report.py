"""The recovery report: one row per round, as console lines, a table, markdown and the HTML run report."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salvo.batchcore import log_path
from salvo.gridded.formats import (
    STATUS_FILE,
    STATUS_FILL,
    SUCCESS,
    TIMED_OUT,
    read_mask,
    read_merge_source,
    read_status,
)
from salvo.html_report import Section, svg_figure
from salvo.outcome import ItemResult, Status, signal_name
from salvo.report import summarize, write_reports

#: Name of the items in the HTML report's generic part: one model run per round.
MODEL_RUNS = "salvage-merge model runs (one item per round)"
#: Categories of the final run_status map: label, colour.
STATUS_CATEGORIES = [
    ("success", "#2e7d32"),
    ("fail", "#c62828"),
    ("timeout", "#ef6c00"),
    ("never written", "#6a1b9a"),
    ("not run", "#f9a825"),
    ("masked", "#e0e0e0"),
]
#: Colour of cells from the original run in the merge_source map, and of each re-run round (cycled).
ORIGINAL_COLOUR = "#1565c0"
#: (None of them is a status colour of the run_status map, so the two maps are not confused.)
ROUND_COLOURS = ["#00acc1", "#f06292", "#8d6e63", "#c0ca33", "#7e57c2", "#26a69a", "#ffb300", "#5c6bc0"]
MASKED_COLOUR = "#e0e0e0"


def failed_cells(mask: np.ndarray, *, status: np.ndarray) -> list[str]:
    """The enabled cells that did not succeed, as ``"y,x"`` strings."""
    ys, xs = np.nonzero((np.asarray(mask) != 0) & (np.asarray(status) != SUCCESS))
    return [f"{int(y)},{int(x)}" for y, x in zip(ys, xs)]


def _values(counts: dict[str, Any]) -> str:
    return " ".join(f"{v}:{n}" for v, n in sorted(counts["values"].items(), key=lambda kv: -int(kv[0])))


def ran_breakdown(ran: dict[str, Any] | None) -> dict[str, Any]:
    """How the cells a model run was given ended: succeeded, failed, timed out, not written (blank: unknown)."""
    if not ran:
        return {"succeeded": "", "failed": "", "timed_out": "", "not_written": ""}
    timed_out = int(ran["values"].get(str(TIMED_OUT), 0))
    return {
        "succeeded": ran["success"],
        "failed": ran["failed"] - timed_out,
        "timed_out": timed_out,
        "not_written": ran["not_run"] + ran["unwritten"],
    }


def model_exit(model: dict[str, Any]) -> str:
    """The model run's end in a few words: ``success (exit 0)``, ``timeout (killed)``, ``crashed (SIGSEGV)``."""
    status = model.get("status", "")
    if not status:
        return ""
    sig = (model.get("item") or {}).get("signal")
    if status == Status.TIMEOUT.value:
        return f"{status} (killed)"
    if sig:
        return f"{status} ({signal_name(int(sig))})"
    code = model.get("exit_code")
    return f"{status} (exit {code})" if code is not None else status


def round_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per round: the cells the model ran and how they ended, the model's exit, times,
    the totals after."""
    rows = []
    for r in doc["rounds"]:
        after = r.get("after") or {}
        model = r.get("model") or {}
        ran = r.get("ran")
        rows.append(
            {
                "round": r["round"],
                "step": r["step"],
                "cells_run": ran["enabled"] if ran else r.get("to_rerun", ""),
                **ran_breakdown(ran),
                "model": model.get("status", ""),
                "exit": model_exit(model),
                "model_s": model.get("duration_s", ""),
                "round_s": r.get("duration_s", ""),
                "merged_files": len((r.get("merge") or {}).get("merged", [])),
                "ok_after": after.get("success", ""),
                "still_failed": after.get("to_rerun", ""),
                "statuses": _values(after) if after else "",
            }
        )
    return rows


def console_lines(doc: dict[str, Any]) -> list[str]:
    """What `salvo recover` prints: a line per round and the outcome."""
    lines = []
    for r in doc["rounds"]:
        model = r.get("model") or {}
        ran = f"model {model.get('status', '?')} in {model.get('duration_s', 0):.1f} s"
        if model.get("reason") and model.get("status") != "success":
            ran += f" ({model['reason']})"
        if r["step"] == "initial":
            head = f"Round 0 (initial run): {ran}"
        else:
            head = f"Round {r['round']}: re-ran {r['to_rerun']} failed cells, {ran}"
            if r.get("resumed"):
                head += " (resumed: its finished re-run merged from disk)"
        after = r.get("after")
        if after:
            head += (
                f"; now {after['success']}/{after['enabled']} enabled cells succeeded, "
                f"{after['to_rerun']} to re-run [run_status {_values(after)}]"
            )
        lines.append(head)
        for w in (r.get("merge") or {}).get("warnings", []):
            lines.append(f"  Warning: {w}")
    s = doc["summary"]
    if s["ok"]:
        lines.append(f"✓ Recovered: all {s['total']} enabled cells succeeded after {s['rounds']} re-run round(s)")
    else:
        cells = ", ".join(s["failed_items"][:10]) + (" ..." if len(s["failed_items"]) > 10 else "")
        lines.append(
            f"✗ Not recovered ({s['stopped']}): {s['failed']} of {s['total']} enabled cells still failed: {cells}"
        )
    lines.append(f"  Output: {doc['layout']['output']}   Rounds and backups: {doc['layout']['work']}")
    state = "back in place" if s["mask_restored"] else "NOT in place"
    lines.append(
        f"  Original run-mask {state} at {doc['layout']['mask']} "
        f"(a copy is kept at {doc['layout']['work']}/original-run-mask.nc)"
    )
    reports = doc.get("reports") or {}
    if reports.get("json"):
        lines.append(f"  Report: {reports['json']}")
    if reports.get("html"):
        lines.append(f"  Run report (open in a browser): {reports['html']}")
    elif reports.get("html_error"):
        lines.append(f"  Run report NOT written: {reports['html_error']}")
    return lines


def recovery_markdown(doc: dict[str, Any]) -> str:
    """The markdown summary of a recovery (Prefect artifact and recovery.md)."""
    rows = round_rows(doc)
    head = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n" if rows else ""
    body = "".join("| " + " | ".join(str(v) for v in row.values()) + " |\n" for row in rows)
    reports = {k: v for k, v in (doc.get("reports") or {}).items() if k in ("html", "json", "markdown")}
    links = "".join(f"- {kind}: `{path}`\n" for kind, path in reports.items())
    links = f"Reports (open the HTML one in a browser):\n\n{links}\n" if links else ""
    return "# salvage-merge\n\n" + "\n".join(f"- {line}" for line in console_lines(doc)) + "\n\n" + links + head + body


def summarize_recovery(
    rounds: list[dict[str, Any]], *, final: dict[str, Any] | None, stopped: str, mask_in_place: bool
) -> dict[str, Any]:
    """The summary block of a recovery: cells left failed, rounds run, and whether it recovered."""
    final = final or {"enabled": 0, "success": 0, "to_rerun": 0, "failed_cells": []}
    ok = not stopped and final["to_rerun"] == 0 and mask_in_place
    return {
        "pipeline": "salvage-merge",
        "ok": ok,
        "recovered": ok,
        "total": final["enabled"],
        "succeeded": final["success"],
        "failed": final["to_rerun"] if final["to_rerun"] or ok else max(1, final["enabled"] - final["success"]),
        "failed_items": [f"cell {c}" for c in final["failed_cells"]],
        "rounds": sum(1 for r in rounds if r["step"] == "rerun"),
        "stopped": stopped,
        "mask_restored": mask_in_place,
    }


# ---------------------------------------------------------------- the HTML run report


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    """The figure as inline SVG with its text kept as text (legends and labels searchable)."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        return svg_figure(fig)


def _round_label(row: dict[str, Any]) -> str:
    return "0 (initial)" if row["step"] == "initial" else str(row["round"])


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else 0.0


def _cell(v: Any, fmt: str = "{}") -> str:
    if v == "" or v is None:
        return "—"
    return html.escape(fmt.format(v))


#: Columns of the rounds table: key in `round_rows`, header.
ROUND_COLUMNS = [
    ("round", "round"),
    ("cells_run", "cells run"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("timed_out", "timed out"),
    ("not_written", "not written"),
    ("exit", "model exit"),
    ("model_s", "model time (s)"),
    ("round_s", "round time (s)"),
    ("merged_files", "files merged"),
    ("ok_after", "enabled cells OK after"),
    ("still_failed", "still to re-run"),
]


def rounds_section(doc: dict[str, Any]) -> Section:
    """Per round: cells the model ran, how they ended, its exit and times; a table and a plot."""
    rows = round_rows(doc)
    if not rows:
        return Section("Rounds", "<p>No model ran in this recovery (the output folder had no failed cell).</p>")
    head = "".join(f"<th>{h}</th>" for _, h in ROUND_COLUMNS)
    body = []
    for row in rows:
        cells = []
        for key, _ in ROUND_COLUMNS:
            v = _round_label(row) if key == "round" else row[key]
            fmt = "{:.2f}" if key in ("model_s", "round_s") and v != "" else "{}"
            cells.append(f'<td data-col="{key}">{_cell(v, fmt)}</td>')
        body.append(f'<tr data-round="{row["round"]}">' + "".join(cells) + "</tr>")
    table = f'<table id="rounds-table"><tr>{head}</tr>' + "".join(body) + "</table>"
    note = (
        "<p>Cells run: the cells enabled in the mask the model was given (round 0: your run-mask; "
        "round k: the cells that had not succeeded). Succeeded / failed / timed out / not written: how "
        "those cells ended in that run's own run_status.nc (not written: the -9999 fill or 0). "
        "A dash: the model left no run_status.nc.</p>"
    )
    return Section("Rounds", table + note + f'<div id="rounds-plot">{_rounds_plot(rows)}</div>')


def _rounds_plot(rows: list[dict[str, Any]]) -> str:
    plt = _plt()
    labels = [_round_label(r) for r in rows]
    x = np.arange(len(rows))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    bottom = np.zeros(len(rows))
    for key, label, colour in (
        ("succeeded", "succeeded", "#2e7d32"),
        ("failed", "failed", "#c62828"),
        ("timed_out", "timed out", "#ef6c00"),
        ("not_written", "not written", "#6a1b9a"),
    ):
        values = np.array([_num(r[key]) for r in rows])
        a1.bar(x, values, bottom=bottom, color=colour, label=label, width=0.6)
        bottom += values
    a1.set_xticks(x, labels)
    a1.set_xlabel("round")
    a1.set_ylabel("cells run (count)")
    a1.set_title("Cells each model run was given, by outcome")
    a1.legend(fontsize=7)
    w = 0.38
    a2.bar(x - w / 2, [_num(r["model_s"]) for r in rows], width=w, color="#1565c0", label="model run")
    a2.bar(x + w / 2, [_num(r["round_s"]) for r in rows], width=w, color="#90a4ae", label="whole round")
    a2.set_xticks(x, labels)
    a2.set_xlabel("round")
    a2.set_ylabel("duration (s)")
    a2.set_title("Time per round")
    a2.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


def _grid_dims(status_path: Path) -> tuple[str, str]:
    from salvo.gridded.merge import status_grid

    g = status_grid(status_path)
    return g.ydim, g.xdim


def _enabled(mask_path: Path | None, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """The cells enabled in the original run-mask (all, with a note, if it cannot be read or does not fit)."""
    if mask_path is not None and mask_path.is_file():
        try:
            mask = read_mask(mask_path)
        except Exception as exc:  # noqa: BLE001 - the map is still drawn, the note says why
            return np.ones(
                shape, dtype=bool
            ), f"The run-mask {mask_path} could not be read ({exc}); no cell is shown as masked."
        if mask.shape == shape:
            return mask != 0, ""
        return np.ones(
            shape, dtype=bool
        ), f"The run-mask {mask_path} has shape {mask.shape}, run_status {shape}; no cell is shown as masked."
    return np.ones(shape, dtype=bool), "The original run-mask was not found; no cell is shown as masked."


def _category_map(codes: np.ndarray, categories: Sequence[tuple[str, str]], *, ydim: str, xdim: str, title: str) -> str:
    """A categorical map of ``codes`` (index into ``categories``), legend of the categories present."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = _plt()
    ny, nx = codes.shape
    height = float(np.clip(5.0 * ny / max(nx, 1), 2.5, 8.0))
    fig, ax = plt.subplots(figsize=(7, height))
    cmap = ListedColormap([c for _, c in categories])
    ax.imshow(
        codes, cmap=cmap, vmin=-0.5, vmax=len(categories) - 0.5, interpolation="nearest", origin="upper", aspect="equal"
    )
    ax.set_xlabel(f"{xdim} (cell index)")
    ax.set_ylabel(f"{ydim} (cell index)")
    ax.set_title(title)
    present = sorted(set(np.unique(codes).tolist()))
    handles = [Patch(facecolor=categories[i][1], edgecolor="#555555", label=categories[i][0]) for i in present]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="cells")
    return _svg(fig)


def _counts_table(codes: np.ndarray, categories: Sequence[tuple[str, str]], table_id: str) -> str:
    values, counts = np.unique(codes, return_counts=True)
    rows = []
    for v, n in zip(values, counts):
        label, colour = categories[int(v)]
        ink = "#222" if colour in (MASKED_COLOUR, "#c0ca33", "#ffb300", "#f9a825") else "#fff"
        rows.append(
            f'<tr><td><span class="st" style="background:{colour};color:{ink}">{html.escape(label)}</span></td>'
            f"<td>{int(n)}</td></tr>"
        )
    rows = "".join(rows)
    return f'<table id="{table_id}" style="width:auto"><tr><th>cells</th><th>count</th></tr>{rows}</table>'


def merge_source_categories(source: np.ndarray | None, enabled: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Codes and (label, colour) categories of the merge_source map: original run, round k, masked."""
    src = np.zeros(enabled.shape, dtype="i8") if source is None else np.asarray(source).astype("i8")
    rounds = sorted(int(v) for v in np.unique(src[enabled]) if v > 0)
    categories = [("original run", ORIGINAL_COLOUR)]
    categories += [(f"round {k}", ROUND_COLOURS[(k - 1) % len(ROUND_COLOURS)]) for k in rounds]
    categories.append(("masked (not run)", MASKED_COLOUR))
    codes = np.full(src.shape, len(categories) - 1, dtype="i8")
    codes[enabled & (src <= 0)] = 0
    for i, k in enumerate(rounds, start=1):
        codes[enabled & (src == k)] = i
    return codes, categories


def status_categories(status: np.ndarray, enabled: np.ndarray) -> np.ndarray:
    """Codes into `STATUS_CATEGORIES` of a final run_status: success, fail, timeout, never written, not run, masked."""
    s = np.asarray(status)
    codes = np.full(s.shape, 5, dtype="i8")  # masked
    codes[enabled & (s == SUCCESS)] = 0
    codes[enabled & (s < 0) & (s != TIMED_OUT) & (s != STATUS_FILL)] = 1
    codes[enabled & (s == TIMED_OUT)] = 2
    codes[enabled & ((s == STATUS_FILL) | (s > 0) & (s != SUCCESS))] = 3
    codes[enabled & (s == 0)] = 4
    return codes


def merge_source_section(status_path: Path, mask_path: Path | None) -> Section:
    """Which round (or the original run) each cell of the final merged run_status.nc came from."""
    title = "Where each cell came from (merge_source)"
    if not status_path.is_file():
        return Section(title, f"<p>No {STATUS_FILE} in the output folder: nothing to map.</p>")
    status = read_status(status_path)
    source = read_merge_source(status_path)
    enabled, note = _enabled(mask_path, status.shape)
    codes, cats = merge_source_categories(source, enabled)
    ydim, xdim = _grid_dims(status_path)
    explain = (
        "<p>From <code>merge_source</code> in the final <code>run_status.nc</code>: 0 is the original run, "
        "k the re-run of round k.</p>"
        if source is not None
        else "<p>The final <code>run_status.nc</code> has no <code>merge_source</code>: no re-run was merged, "
        "every cell is from the original run.</p>"
    )
    if note:
        explain += f"<p>{html.escape(note)}</p>"
    fig = _category_map(codes, cats, ydim=ydim, xdim=xdim, title="merge_source")
    return Section(
        title, explain + f'<div id="merge-source-map">{fig}</div>' + _counts_table(codes, cats, "merge-source-counts")
    )


def status_section(status_path: Path, mask_path: Path | None) -> Section:
    """The final run_status of every cell: success, fail, timeout, never written, not run, masked."""
    title = "Final run_status"
    if not status_path.is_file():
        return Section(title, f"<p>No {STATUS_FILE} in the output folder: nothing to map.</p>")
    status = read_status(status_path)
    enabled, note = _enabled(mask_path, status.shape)
    codes = status_categories(status, enabled)
    ydim, xdim = _grid_dims(status_path)
    explain = (
        "<p>run_status values: 100 success, -100 (or another negative value) fail, -5 timeout, "
        "-9999 never written, 0 on an enabled cell not run; masked: off in your run-mask.</p>"
    )
    if note:
        explain += f"<p>{html.escape(note)}</p>"
    fig = _category_map(codes, STATUS_CATEGORIES, ydim=ydim, xdim=xdim, title="run_status")
    return Section(
        title,
        explain
        + f'<div id="run-status-map">{fig}</div>'
        + _counts_table(codes, STATUS_CATEGORIES, "run-status-counts"),
    )


def model_results(doc: dict[str, Any]) -> list[ItemResult]:
    """The model run of each round as an item (for the report's timeline, durations and failures)."""
    results = []
    for r in doc["rounds"]:
        model = r.get("model") or {}
        item = model.get("item")
        if item:
            res = ItemResult.from_dict(item)
        else:
            res = ItemResult(
                f"round-{r['round']}-model",
                Status(model.get("status", "not_run")),
                reason=model.get("reason", ""),
                exit_code=model.get("exit_code"),
                duration_s=float(model.get("duration_s") or 0.0),
            )
        work = Path(doc["layout"]["work"])
        k = int(r["round"])
        if k == 0:
            later = work / "round-1" / "salvaged"
            res.outputs = [str(later if later.is_dir() else doc["layout"]["output"])]
        else:
            res.outputs = [str(work / f"round-{k}" / "rerun")]
        results.append(res)
    return results


def report_title(doc: dict[str, Any]) -> str:
    """The report's title: the recovery's verdict in cells."""
    s = doc["summary"]
    if s["ok"]:
        return (
            f"salvage-merge: recovered — all {s['total']} enabled cells succeeded after {s['rounds']} re-run round(s)"
        )
    why = f" ({s['stopped']})" if s.get("stopped") else ""
    return f"salvage-merge: NOT recovered{why} — {s['failed']} of {s['total']} enabled cells still failed"


def recovery_sections(doc: dict[str, Any]) -> list[Section]:
    """The salvage-merge sections of the run report: outcome, rounds, merge_source map, final run_status map."""
    layout = doc["layout"]
    work = Path(layout["work"])
    status_path = Path(layout["output"]) / STATUS_FILE
    original = work / "original-run-mask.nc"
    mask_path = original if original.is_file() else Path(layout["mask"])
    outcome = "<pre id='outcome'>" + html.escape("\n".join(console_lines(doc))) + "</pre>"
    return [
        Section("Outcome", outcome),
        rounds_section(doc),
        merge_source_section(status_path, mask_path),
        status_section(status_path, mask_path),
    ]


def write_recovery_report(
    doc: dict[str, Any], *, folder: str | os.PathLike[str] | None = None, header: dict[str, Any] | None = None
) -> Path:
    """Write ``run_report.html`` for a recovery (default: in its work folder, beside recovery.json), with
    its ``trace.tsv``, ``batch_summary.json`` and its copy in ``runs/<run name>/``; return its path."""
    folder = Path(folder or doc["layout"]["work"])
    results = model_results(doc)
    summary = summarize(results, pipeline=MODEL_RUNS, wall_time_s=float(doc.get("wall_time_s") or 0.0))
    logs = {r.item_id: p for r in results if (p := log_path(str(Path(doc["layout"]["work"]) / "logs"), r.item_id))}
    paths = write_reports(
        results,
        summary,
        folder=folder,
        title=report_title(doc),
        sections=recovery_sections(doc),
        logs=logs,
        text_name=None,
        header={"pipeline": "salvage-merge", **(header or {})},
    )
    return Path(paths["html"])
