"""`salvo demo`: sample data, then every pipeline end to end on the embedded default."""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from pathlib import Path
from typing import Any

from salvo.pipelines import PIPELINES

#: One module per pipeline (`cli/demo_NAME.py`), each with `run_demo(root) -> list[str]`.
DEMOS = [p.demo for p in PIPELINES.values()]


def register(subparsers: Any) -> None:
    """Add `salvo demo`."""
    p = subparsers.add_parser("demo", help="make sample data and run every pipeline end to end")
    p.add_argument("--root", default="demo", help="folder for sample data, results and reports (default: demo)")
    p.add_argument("--only", action="append", choices=DEMOS, help="run only this pipeline's demo (repeatable)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run each pipeline's demo; print where its results and reports are."""
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    lines, failed = [], []
    for name in args.only or DEMOS:
        module = importlib.import_module(f"cli.demo_{name}")
        print(f"\n=== demo: {name} ===", flush=True)
        t0 = time.monotonic()
        try:
            lines += module.run_demo(root / name) + [f"  ({time.monotonic() - t0:.0f} s)"]
        except Exception:
            traceback.print_exc()
            failed.append(name)
    print("\n" + "=" * 60 + "\nSalvo demo: where the results and reports are\n" + "=" * 60)
    print("\n".join(lines))
    if failed:
        print(f"\nThese demos failed: {', '.join(failed)}")
        return 1
    print(f"\nEverything is under {root}. Run `make demo` again: finished work is resumed, not redone.")
    return 0
