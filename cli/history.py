"""`salvo history DIR`: the runs a report folder keeps in ``runs/``, newest first (as ``nextflow log``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from salvo.errors import UsageError


def register(subparsers: Any) -> None:
    """Add `salvo history`."""
    p = subparsers.add_parser(
        "history",
        help="list the runs kept in a report folder, newest first",
        description="List the runs a report folder keeps in runs/<run name>/ (each with its "
        "run_report.html, trace.tsv and batch_summary.json), newest first.",
    )
    p.add_argument("folder", metavar="DIR", help="a report folder (where run_report.html lies)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(func=main)


def _counts(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (summary.get("counts") or {}).items()) or "no items"


def rows(folder: str) -> list[dict[str, Any]]:
    """One dict per run, newest first: when, name, pipeline, counts, duration, exit, UI link, report files."""
    from salvo.report import history

    out = []
    for r in history(folder):
        head, summary = r["run"], r["summary"]
        out.append(
            {
                "ended": head.get("ended", ""),
                "started": head.get("started", ""),
                "run_name": r["name"],
                "pipeline": head.get("pipeline") or summary.get("pipeline", ""),
                "total": summary.get("total"),
                "counts": summary.get("counts") or {},
                "failed": summary.get("failed"),
                "duration_s": summary.get("wall_time_s"),
                "exit_status": head.get("exit_status"),
                "ui_url": head.get("ui_url", ""),
                "command": head.get("command", ""),
                "report": r["report"],
                "trace": r["trace"],
            }
        )
    return out


def main(args: argparse.Namespace) -> int:
    """Print the folder's runs; exit 2 when DIR is not a folder."""
    from cli.common import print_json

    if not os.path.isdir(args.folder):
        raise UsageError(f"DIR is not a folder: {args.folder}")
    runs = rows(args.folder)
    if args.json:
        print_json({"folder": os.path.abspath(args.folder), "runs": runs})
        return 0
    if not runs:
        print(f"No runs kept in {args.folder} (a run keeps its report in {os.path.join(args.folder, 'runs')}/).")
        return 0
    print(f"{'ENDED':<26} {'RUN':<40} {'PIPELINE':<16} {'DURATION':>9} {'EXIT':>4}  ITEMS / UI")
    for r in runs:
        took = f"{r['duration_s']:.1f} s" if isinstance(r["duration_s"], (int, float)) else ""
        print(
            f"{str(r['ended']):<26} {r['run_name']:<40} {r['pipeline']:<16} {took:>9} {str(r['exit_status']):>4}  "
            f"{_counts(r)}" + (f"  {r['ui_url']}" if r["ui_url"] else "")
        )
    return 0
