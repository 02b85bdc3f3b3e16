"""The recovery report: one row per round, as console lines, a table and markdown."""

from __future__ import annotations

from typing import Any

import numpy as np

from salvo.gridded.formats import SUCCESS


def failed_cells(mask: np.ndarray, *, status: np.ndarray) -> list[str]:
    """The enabled cells that did not succeed, as ``"y,x"`` strings."""
    ys, xs = np.nonzero((np.asarray(mask) != 0) & (np.asarray(status) != SUCCESS))
    return [f"{int(y)},{int(x)}" for y, x in zip(ys, xs)]


def _values(counts: dict[str, Any]) -> str:
    return " ".join(f"{v}:{n}" for v, n in sorted(counts["values"].items(), key=lambda kv: -int(kv[0])))


def round_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per round: statuses before and after, the model's outcome, files merged."""
    rows = []
    for r in doc["rounds"]:
        after = r.get("after") or {}
        model = r.get("model") or {}
        rows.append({
            "round": r["round"], "step": r["step"], "cells_run": r.get("to_rerun", after.get("enabled", 0)),
            "model": model.get("status", ""), "model_s": model.get("duration_s", ""),
            "merged_files": len((r.get("merge") or {}).get("merged", [])),
            "succeeded": after.get("success", ""), "still_failed": after.get("to_rerun", ""),
            "statuses": _values(after) if after else "",
        })
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
        after = r.get("after")
        if after:
            head += (f"; now {after['success']}/{after['enabled']} enabled cells succeeded, "
                     f"{after['to_rerun']} to re-run [run_status {_values(after)}]")
        lines.append(head)
        for w in (r.get("merge") or {}).get("warnings", []):
            lines.append(f"  Warning: {w}")
    s = doc["summary"]
    if s["ok"]:
        lines.append(f"✓ Recovered: all {s['total']} enabled cells succeeded after {s['rounds']} re-run round(s)")
    else:
        cells = ", ".join(s["failed_items"][:10]) + (" ..." if len(s["failed_items"]) > 10 else "")
        lines.append(f"✗ Not recovered ({s['stopped']}): {s['failed']} of {s['total']} enabled cells still failed: {cells}")
    lines.append(f"  Output: {doc['layout']['output']}   Rounds and backups: {doc['layout']['work']}")
    state = "back in place" if s["mask_restored"] else "NOT in place"
    lines.append(f"  Original run-mask {state} at {doc['layout']['mask']} "
                 f"(a copy is kept at {doc['layout']['work']}/original-run-mask.nc)")
    if doc.get("reports"):
        lines.append(f"  Report: {doc['reports']['json']}")
    return lines


def recovery_markdown(doc: dict[str, Any]) -> str:
    """The markdown summary of a recovery (Prefect artifact and recovery.md)."""
    rows = round_rows(doc)
    head = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n" if rows else ""
    body = "".join("| " + " | ".join(str(v) for v in row.values()) + " |\n" for row in rows)
    return "# salvage-merge\n\n" + "\n".join(f"- {line}" for line in console_lines(doc)) + "\n\n" + head + body


def summarize_recovery(rounds: list[dict[str, Any]], *, final: dict[str, Any] | None, stopped: str,
                       mask_in_place: bool) -> dict[str, Any]:
    """The summary block of a recovery: cells left failed, rounds run, and whether it recovered."""
    final = final or {"enabled": 0, "success": 0, "to_rerun": 0, "failed_cells": []}
    ok = not stopped and final["to_rerun"] == 0 and mask_in_place
    return {
        "pipeline": "salvage-merge", "ok": ok, "recovered": ok,
        "total": final["enabled"], "succeeded": final["success"],
        "failed": final["to_rerun"] if final["to_rerun"] or ok else max(1, final["enabled"] - final["success"]),
        "failed_items": [f"cell {c}" for c in final["failed_cells"]],
        "rounds": sum(1 for r in rounds if r["step"] == "rerun"),
        "stopped": stopped, "mask_restored": mask_in_place,
    }
