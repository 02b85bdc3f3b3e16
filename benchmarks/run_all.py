"""`make bench`: run every benchmark and write their numbers to benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import time
import traceback
from pathlib import Path

from benchmarks.common import GOALS, ROOT, machine, scale

#: In this order: the goals of issue 26 first, so that a run cut short by a time limit has written those.
BENCHES = [
    "bench_tiny",
    "bench_startup",
    "bench_merge",
    "bench_resume",
    "bench_assembly",
    "bench_extract",
    "bench_jobs",
]


def main() -> None:
    """Run the benchmarks named on the command line (default: all) and write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHES)
    args = parser.parse_args()
    results = ROOT / "benchmarks" / "RESULTS.md"
    sections = _read_sections(results)
    started = time.perf_counter()
    for name in args.names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            section = importlib.import_module(f"benchmarks.{name}").run()
        except Exception:
            section = f"## {name}\n\nFailed:\n\n```\n{traceback.format_exc()}\n```\n"
        print(section, flush=True)
        stamp = (
            f"_({name}: {dt.datetime.now():%Y-%m-%d %H:%M}, {machine()}, SALVO_BENCH_SCALE={scale()},"
            f" took {time.perf_counter() - t0:.0f} s)_"
        )
        sections[name] = f"{section.strip()}\n\n{stamp}"
        # after each: a cut-short run keeps its rows
        _write(results, sections, args.names, started, done=name == args.names[-1])
    print(f"Wrote {results}")


def _write(results: Path, sections: dict[str, str], names: list[str], started: float, *, done: bool) -> None:
    """Write RESULTS.md from ``sections`` and this run's goal verdicts so far."""
    if GOALS:  # this run's verdicts replace the last ones; goals of benchmarks not run now are kept
        now = {g["what"] for g in GOALS}
        kept = [
            line
            for line in sections.get("goals", "").splitlines()[4:]
            if line.startswith("| ") and line.split(" | ")[0][2:] not in now and names != BENCHES
        ]  # a full run writes every row afresh
        sections["goals"] = "\n".join(
            [
                f"## Goals of issue 26 (last run: {dt.datetime.now():%Y-%m-%d %H:%M}, {machine()})",
                "",
                "| goal | measured | anchor in the same run | target | verdict | why |",
                "|---|---|---|---|---|---|",
                *kept,
                *(
                    f"| {g['what']} | {g['measured']} | {g['anchor']} | {g['target']} | **{g['verdict']}**"
                    f" | {g['why'] if g['verdict'] != 'met' else ''} |"
                    for g in GOALS
                ),
            ]
        )
    if PROFILE.exists():
        sections["profile"] = PROFILE.read_text().strip()
    head = [
        "# Benchmark results",
        "",
        "Written by `make bench`. Each section measures Salvo and its peer"
        " (GNU parallel, CDO, the seed's own approach) in the same run, on a 2-core machine shared with other work.",
        (
            f"The last full `make bench` took {time.perf_counter() - started:.0f} s."
            if done
            else f"The last full `make bench` was still running after {time.perf_counter() - started:.0f} s."
        )
        if names == BENCHES
        else "",
    ]
    body = [f"{MARK.format(n)}\n{sections[n]}" for n in ["goals", "profile", *BENCHES] if n in sections]
    results.write_text("\n\n".join(["\n".join(head), *body]) + "\n")


MARK = "<!-- bench:{} -->"
#: Where the orchestration's time goes (profiles, written by hand): kept at the top of RESULTS.md.
PROFILE = ROOT / "benchmarks" / "PROFILE.md"


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
