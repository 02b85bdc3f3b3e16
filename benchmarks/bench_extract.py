"""netcdf-extract vs the seed's ProcessPoolExecutor of one `python worker.py FILE` per file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import WORK, LocalServer, bench_env, measure, scale

FULL = os.environ.get("SALVO_BENCH_FULL") == "1"
SEED_WORKER = Path(__file__).with_name("seed_extract_worker.py")


def _make_files(folder: Path, n: int) -> None:
    """Small files: one (time,) series each, 24 steps."""
    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.nc"))) == n:
        return
    rng = np.random.default_rng(0)
    for i in range(n):
        with netCDF4.Dataset(folder / f"f{i:04d}.nc", "w") as ds:
            ds.createDimension("time", 24)
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.axis = "days since 2000-01-01", "T"
            t[:] = np.arange(24) * 30
            v = ds.createVariable("CO2", "f4", ("time",))
            v[:] = 380 + rng.normal(0, 1, 24).cumsum()


def _seed_one(args: tuple[str, str]) -> int:
    return subprocess.run([sys.executable, str(SEED_WORKER), *args], capture_output=True).returncode


def _seed(files: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        codes = list(pool.map(_seed_one, [(str(f), str(out / f.stem)) for f in files]))
    assert not any(codes), "the seed's worker failed"
    return time.perf_counter() - t0


def _ours(data: Path, out: Path, env: dict[str, str], *extra: str) -> tuple[float, dict]:
    argv = [
        sys.executable,
        "-m",
        "cli",
        "extract",
        "--parallel",
        "--directory",
        str(data),
        "--output-dir",
        str(out),
        "--json",
        *extra,
    ]
    m = measure(argv, env=env)
    assert m.returncode == 0, "salvo extract failed"
    return m.wall_s, json.loads((out / "batch_summary.json").read_text())["summary"]


def run() -> str:
    """Run both approaches on the same files; return a markdown section."""
    # P1 asks for 500 files. The seed alone spends about 1 s per file (a fresh interpreter and its imports),
    # so its 500 take about 8 minutes on an idle 2-core machine (SALVO_BENCH_SCALE=0.3 for a quicker look).
    n = max(10, int(500 * scale()))
    root = WORK / "extract"
    data = root / "data"
    _make_files(data, n)
    files = sorted(data.glob("*.nc"))
    with LocalServer(bench_env(), root / "prefect-home") as env:
        return _run(n, root, data, files, env)


def _run(n: int, root: Path, data: Path, files: list[Path], env: dict[str, str]) -> str:
    workers = os.cpu_count() or 1
    rows = []
    for out in ("seed", "ours", "ours-1-per-task"):
        shutil.rmtree(root / out, ignore_errors=True)
    seed_wall = _seed(files, root / "seed")
    ours_wall, s1 = _ours(data, root / "ours", env)
    resumed_wall, s2 = _ours(data, root / "ours", env)
    single = _ours(data, root / "ours-1-per-task", env, "--items-per-task", "1") if FULL else None
    assert s2["resumed"] == n, "the second run did not resume everything"

    def overhead(wall: float, s: dict) -> float:
        return 1000 * max(0.0, wall * workers - s["total_time_s"]) / n

    rows.append(f"| seed: ProcessPoolExecutor, one `python worker.py FILE` per file | {seed_wall:.1f} | 1.00 | – |")
    rows.append(
        f"| `salvo extract --parallel` (auto: up to 50 items per task) | {ours_wall:.1f}"
        f" | {seed_wall / ours_wall:.2f} | {overhead(ours_wall, s1):.0f} |"
    )
    if single is not None:
        rows.append(
            f"| `salvo extract --parallel --items-per-task 1` | {single[0]:.1f}"
            f" | {seed_wall / single[0]:.2f} | {overhead(*single):.0f} |"
        )
    rows.append(f"| `salvo extract --parallel`, second run (all resumed) | {resumed_wall:.1f} | – | – |")
    return "\n".join(
        [
            "## P1: netcdf-extract vs the seed's process pool",
            "",
            f"{n} small NetCDF files (one 24-step series each, one PNG per file), {workers} workers,"
            " the same files for every row.",
            "Wall times include Salvo's start-up on its default set-up"
            " (the local Prefect server, started beforehand, untimed)."
            " The row with one item per task run only with SALVO_BENCH_FULL=1.",
            "",
            "| approach | wall s | speed-up vs seed | orchestration overhead ms/item |",
            "|---|---|---|---|",
            *rows,
            "",
            f"- Resumed run: {resumed_wall:.1f} s = **{100 * resumed_wall / ours_wall:.1f}%** of the first run"
            " (goal: under 5%).",
            f"- Sum of item times (fork + plot) in the first run: {s1['total_time_s']:.1f} s;"
            f" mean {1000 * s1['mean_time_s']:.0f} ms per item.",
            "- Overhead per item = (wall x workers - sum of item times) / items:"
            " what orchestration costs beyond the work.",
        ]
    )


if __name__ == "__main__":
    print(run())
