"""Benchmark: merge about 2 GB of dvmdostem-like outputs lazily vs eagerly (xr.where) vs ``cp -r``.

Each contender runs in its own child process; wall time is measured around it and peak memory is
that child's ``ru_maxrss`` (from ``os.wait4``). ``SALVO_BENCH_SCALE`` (default 1.0) scales the
time dimension, hence the data size. The files sit in the page cache (the machine has more RAM
than the data), so ``cp -r`` is the speed of copying the bytes, the floor for any merge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FILES = 15
NY, NX, NPFT, NT = 150, 185, 10, 120  # 4-D (time, pft, Y, X) float32: about 133 MB per file at scale 1


def make_data(root: Path, *, nt: int) -> int:
    """Write a salvaged and a re-run output folder of FILES files each; return the salvaged bytes."""
    import netCDF4

    from salvo.gridded.formats import Grid, define_grid, write_run_status

    rng = np.random.default_rng(0)
    failed = rng.random((NY, NX)) < 0.1
    write_run_status(root / "salvaged" / "run_status.nc", status=np.where(failed, -100, 100))
    write_run_status(root / "rerun" / "run_status.nc", status=np.where(failed, 100, 0))
    slab = rng.random((NPFT, NY, NX), dtype="f4")
    for folder, offset in (("salvaged", 0.0), ("rerun", 1.0)):
        for i in range(FILES):
            with netCDF4.Dataset(root / folder / f"VAR{i:02d}_monthly_tr.nc", "w") as ds:
                ds.createDimension("time", None)
                define_grid(ds, Grid(NY, NX))
                ds.createDimension("pft", NPFT)
                ds.createVariable("time", "f8", ("time",))[:] = np.arange(nt)
                v = ds.createVariable(f"VAR{i:02d}", "f4", ("time", "pft", "Y", "X"), fill_value=np.float32(-9999))
                v.units = "g/m2"
                for t in range(nt):
                    v[t] = slab + offset + t
    return sum(p.stat().st_size for p in (root / "salvaged").iterdir())


def _eager(salvaged: Path, rerun: Path, out: Path) -> None:
    """The seed's way: load each file and call xr.where."""
    import xarray as xr

    out.mkdir()
    take = xr.open_dataset(rerun / "run_status.nc")["run_status"].load() == 100
    for f in sorted(salvaged.glob("*.nc")):
        s, r = xr.open_dataset(f).load(), xr.open_dataset(rerun / f.name).load()
        merged = s.copy()
        for name, var in s.data_vars.items():
            if "Y" in var.dims and "X" in var.dims:
                merged[name] = xr.where(take, r[name], var, keep_attrs=True)
        merged.to_netcdf(out / f.name)
        s.close(), r.close()


def _child(mode: str, salvaged: str, rerun: str, out: str) -> None:
    if mode == "salvo":
        from salvo.gridded.merge import merge_outputs

        merge_outputs(salvaged, rerun_dir=rerun, output_dir=out, log=lambda _: None)
    else:
        _eager(Path(salvaged), Path(rerun), Path(out))


def _measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process.

    The child is started by a tiny ``/usr/bin/time`` process: Linux carries the forking process's
    high-water RSS over into ``ru_maxrss`` of a child forked from this (large) Python process.
    """
    subprocess.run(["sync"], check=True)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], cwd=ROOT, check=True)
        wall = time.perf_counter() - start
        return wall, int(rss.read().split()[-1]) / 1024.0


def run() -> str:
    """Run the benchmark and return a markdown section."""
    scale = float(os.environ.get("SALVO_BENCH_SCALE", "1.0"))
    nt = max(1, round(NT * scale))
    root = Path(tempfile.mkdtemp(prefix="salvo-bench-merge-", dir=os.environ.get("SALVO_BENCH_DIR")))
    try:
        (root / "salvaged").mkdir(), (root / "rerun").mkdir()
        t0 = time.perf_counter()
        size = make_data(root, nt=nt)
        gen = time.perf_counter() - t0
        me = [sys.executable, str(Path(__file__).resolve()), "--child"]
        rows = [
            ("`cp -r` (I/O floor)", _measure(["cp", "-r", str(root / "salvaged"), str(root / "copy")])),
            ("salvo `merge_outputs` (lazy, dask chunks)",
             _measure([*me, "salvo", str(root / "salvaged"), str(root / "rerun"), str(root / "ours")])),
            ("eager: load each file + `xr.where`",
             _measure([*me, "eager", str(root / "salvaged"), str(root / "rerun"), str(root / "eager")])),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_file = size / (FILES + 1) / 2**20
    lines = [
        "## Gridded merge (salvage-merge)",
        "",
        f"Scale {scale}: {FILES} files of `(time={nt}, pft={NPFT}, Y={NY}, X={NX})` float32 plus run_status.nc, "
        f"{size / 2**30:.2f} GiB per run (about {per_file:.0f} MiB per file), 10% of cells re-run; "
        f"data generated in {gen:.0f} s. Each row is one child process in the same run.",
        "",
        "| method | wall time (s) | peak RSS (MiB) | throughput (MiB/s) |",
        "|---|---:|---:|---:|",
    ]
    for name, (wall, rss) in rows:
        lines.append(f"| {name} | {wall:.1f} | {rss:.0f} | {size / 2**20 / wall:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        _child(*sys.argv[2:6])
    else:
        sys.path.insert(0, str(ROOT))
        print(run())
