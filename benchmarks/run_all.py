"""`make bench`: run every benchmark and write their numbers to benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import time
import traceback

from benchmarks.common import ROOT, machine, scale

BENCHES = ["bench_extract", "bench_startup", "bench_assembly", "bench_jobs", "bench_merge"]


def main() -> None:
    """Run the benchmarks named on the command line (default: all) and write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHES)
    args = parser.parse_args()
    sections = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {dt.datetime.now():%Y-%m-%d %H:%M}, {machine()}, SALVO_BENCH_SCALE={scale()}.",
        "Each section measures Salvo and the seed's own approach in the same run.",
    ]
    for name in args.names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            section = importlib.import_module(f"benchmarks.{name}").run()
        except Exception:
            section = f"## {name}\n\nFailed:\n\n```\n{traceback.format_exc()}\n```\n"
        print(section, flush=True)
        sections += ["", section.strip(), "", f"_({name} took {time.perf_counter() - t0:.0f} s)_"]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(sections) + "\n")
    print(f"Wrote {ROOT / 'benchmarks' / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
