"""`make bench`: run every benchmark and write their numbers to benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import time
import traceback
from pathlib import Path

from benchmarks.common import ROOT, machine, scale

BENCHES = ["bench_tiny", "bench_resume", "bench_extract", "bench_startup", "bench_assembly", "bench_jobs", "bench_merge"]


def main() -> None:
    """Run the benchmarks named on the command line (default: all) and write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHES)
    args = parser.parse_args()
    results = ROOT / "benchmarks" / "RESULTS.md"
    sections = _read_sections(results)
    for name in args.names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            section = importlib.import_module(f"benchmarks.{name}").run()
        except Exception:
            section = f"## {name}\n\nFailed:\n\n```\n{traceback.format_exc()}\n```\n"
        print(section, flush=True)
        stamp = f"_({name}: {dt.datetime.now():%Y-%m-%d %H:%M}, {machine()}, SALVO_BENCH_SCALE={scale()}, took {time.perf_counter() - t0:.0f} s)_"
        sections[name] = f"{section.strip()}\n\n{stamp}"
    head = ["# Benchmark results", "", "Written by `make bench`. Each section measures Salvo and the seed's own approach in the same run."]
    body = [f"{MARK.format(n)}\n{sections[n]}" for n in BENCHES if n in sections]
    results.write_text("\n\n".join(["\n".join(head), *body]) + "\n")
    print(f"Wrote {results}")


MARK = "<!-- bench:{} -->"


def _read_sections(path: Path) -> dict[str, str]:
    """The sections of an earlier RESULTS.md, so that running one benchmark keeps the others."""
    if not path.exists():
        return {}
    found = {}
    for chunk in path.read_text().split("<!-- bench:")[1:]:
        name, _, text = chunk.partition(" -->")
        found[name] = text.strip()
    return found


if __name__ == "__main__":
    main()
