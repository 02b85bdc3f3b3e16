"""A small simulated gridded model that behaves like dvmdostem, for demos and tests.

Run it as ``python -m salvo.gridded.fakemodel --mask run-mask.nc --output output/``. It reads the
run-mask, writes dvmdostem-shaped outputs, a restart file and ``run_status.nc``, and makes chosen
cells fail deterministically (by ``--seed``) for their first ``--fail-runs`` runs, so that a
recovery converges in that many re-runs. ``--hang-on-run K`` makes the K-th invocation hang (with a
grandchild process, as ``mpirun`` would have) until it is killed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salvo.fsutil import atomic_path, atomic_write_text
from salvo.gridded.formats import (FAILED, GRID_MAPPING, STATUS_FILE, STATUS_FILL, SUCCESS, TIMED_OUT, Grid, X, Y,
                                   define_grid, read_mask, write_run_status)

FLOAT_FILL = np.float32(-9999.0)
JUNK = -7777.0  # what a cell that failed part-way leaves in its outputs


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of the simulated outputs."""

    years: int = 2
    pfts: int = 3
    layers: int = 4


def choose_failures(mask: np.ndarray, *, seed: int, fraction: float, cells: list[tuple[int, int]] = ()) -> np.ndarray:
    """Boolean (Y, X): enabled cells chosen to fail, the same for the same seed."""
    chosen = np.random.default_rng(seed).random(mask.shape) < fraction
    for y, x in cells:
        chosen[y, x] = True
    return chosen & (mask != 0)


def failure_kind(y: int, x: int, *, seed: int) -> int:
    """How a chosen cell fails: -100 failure, -5 timeout, or the -9999 fill (never written)."""
    return int(np.random.default_rng([seed, y, x]).choice([FAILED, TIMED_OUT, STATUS_FILL]))


def cell_values(name: str, shape: tuple[int, ...], dims: tuple[str, ...]) -> np.ndarray:
    """The deterministic 'science' of the model: a value for every index of a variable."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    base = float(sum(map(ord, name)) % 97)
    weights = {"time": 0.01, "pft": 0.1, "layer": 0.25, Y: 10.0, X: 1.0}
    return base + sum(g * weights.get(d, 0.5) for g, d in zip(grids, dims))


def write_outputs(output: Path, *, mask: np.ndarray, status: np.ndarray, spec: ModelSpec = ModelSpec()) -> list[Path]:
    """Write dvmdostem-shaped outputs, a restart file and run_status.nc for the given cell statuses."""
    output.mkdir(parents=True, exist_ok=True)
    grid = Grid(*mask.shape)
    ran = status == SUCCESS
    junk = (status < 0) & (status != STATUS_FILL)
    files = [
        ("GPP_monthly_tr.nc", "GPP", "f4", ("time", Y, X), 12 * spec.years, True),
        ("CMTNUM_yearly_tr.nc", "CMTNUM", "i4", ("time", Y, X), spec.years, False),
        ("VEGC_yearly_tr.nc", "VEGC", "f4", ("time", "pft", Y, X), spec.years, False),
        ("LAYERDEPTH_yearly_tr.nc", "LAYERDEPTH", "f4", ("time", "layer", Y, X), spec.years, True),
    ]
    written = []
    for fname, var, dtype, dims, nt, compress in files:
        written.append(_write_file(output / fname, var, dtype, dims, nt=nt, grid=grid, spec=spec,
                                   ran=ran, junk=junk, compress=compress))
    written.append(_write_restart(output / "restart-tr.nc", grid=grid, spec=spec, ran=ran, junk=junk))
    runtime = np.where(status == STATUS_FILL, STATUS_FILL, np.where(mask != 0, 1 + (np.indices(mask.shape).sum(0) % 3), 0))
    written.append(write_run_status(output / STATUS_FILE, status=status, runtime=runtime))
    return written


def _sizes(dims, nt, grid, spec):
    return tuple({"time": nt, "pft": spec.pfts, "layer": spec.layers, Y: grid.ny, X: grid.nx}[d] for d in dims)


def _fill_cells(values, dims, ran, junk, fill):
    iy, ix = dims.index(Y), dims.index(X)
    shape = [1] * len(dims)
    shape[iy], shape[ix] = ran.shape
    ran_b = (ran if iy < ix else ran.T).reshape(shape)
    junk_b = (junk if iy < ix else junk.T).reshape(shape)
    return np.where(ran_b, values, np.where(junk_b, JUNK, fill))


def _write_file(path, var, dtype, dims, *, nt, grid, spec, ran, junk, compress):
    import netCDF4

    fill = FLOAT_FILL if dtype == "f4" else np.int32(-9999)
    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.set_auto_maskandscale(False)
        ds.setncatts({"source": "salvo simulated gridded model (dvmdostem-like)", "Conventions": "CF-1.7"})
        ds.createDimension("time", None)
        define_grid(ds, grid)
        for extra, n in (("pft", spec.pfts), ("layer", spec.layers)):
            if extra in dims:
                ds.createDimension(extra, n)
                c = ds.createVariable(extra, "i4", (extra,))
                c[:] = np.arange(n)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 1901-1-1 0:0:0", "calendar": "365_day", "long_name": "time"})
        t[:] = np.arange(nt) * (365.0 if nt == spec.years else 365.0 / 12)
        opts = {"compression": "zlib", "complevel": 4, "shuffle": True} if compress else {}
        v = ds.createVariable(var, dtype, dims, fill_value=fill, **opts)
        v.setncatts({"units": "g/m2/time", "long_name": var, "grid_mapping": GRID_MAPPING})
        sizes = _sizes(dims, nt, grid, spec)
        v[:] = _fill_cells(cell_values(var, sizes, dims), dims, ran, junk, fill).astype(dtype)
    return path


def _write_restart(path, *, grid, spec, ran, junk):
    import netCDF4

    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.set_auto_maskandscale(False)
        define_grid(ds, grid)
        ds.createDimension("pft", spec.pfts)
        ds.createDimension("layer", spec.layers)
        for name, dtype, dims, fill in (("ysf", "i4", (Y, X), np.int32(-9999)),
                                        ("vegcov", "f8", (Y, X, "pft"), -9999.0),
                                        ("TSsoil", "f8", (Y, X, "layer"), -9999.0)):
            v = ds.createVariable(name, dtype, dims, fill_value=fill, compression="zlib", complevel=2)
            v[:] = _fill_cells(cell_values(name, _sizes(dims, 0, grid, spec), dims), dims, ran, junk, fill).astype(dtype)
    return path


def simulate_run(mask_path: Path, *, output: Path, seed: int = 0, fail_fraction: float = 0.0,
                 fail_cells: list[tuple[int, int]] = (), fail_runs: int = 1, state: Path | None = None,
                 spec: ModelSpec = ModelSpec(), hang_on_run: int = 0, seconds_per_cell: float = 0.0) -> np.ndarray:
    """Run the simulated model once over the enabled cells of ``mask_path``; return the statuses written."""
    mask = read_mask(mask_path)
    state = state or mask_path.with_name(f".{mask_path.name}.fakemodel.json")
    memory = json.loads(state.read_text()) if state.exists() else {"runs": 0, "attempts": {}}
    memory["runs"] += 1
    atomic_write_text(state, json.dumps(memory))
    if hang_on_run and memory["runs"] == hang_on_run:
        _hang(str(state))
    chosen = choose_failures(mask, seed=seed, fraction=fail_fraction, cells=list(fail_cells))
    status = np.zeros(mask.shape, dtype="i4")
    for y, x in zip(*np.nonzero(mask)):
        key = f"{y},{x}"
        attempt = memory["attempts"].get(key, 0) + 1
        memory["attempts"][key] = attempt
        fails = chosen[y, x] and (fail_runs < 0 or attempt <= fail_runs)
        status[y, x] = failure_kind(int(y), int(x), seed=seed) if fails else SUCCESS
        time.sleep(seconds_per_cell)
    atomic_write_text(state, json.dumps(memory))
    write_outputs(output, mask=mask, status=status, spec=spec)
    return status


def _hang(marker: str) -> None:
    # A grandchild, as an MPI launcher would leave: only killing the whole process group stops it.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", marker])
    while True:
        time.sleep(3600)


def _cells(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in c.split(",")) for c in text.split(";") if c.strip()]


def main(argv: list[str] | None = None) -> int:
    """Command line of the simulated model."""
    p = argparse.ArgumentParser(prog="python -m salvo.gridded.fakemodel", description=__doc__.split("\n")[0])
    p.add_argument("--mask", required=True, type=Path, help="run-mask.nc to read")
    p.add_argument("--output", required=True, type=Path, help="output folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fail-fraction", type=float, default=0.0, help="share of enabled cells that fail")
    p.add_argument("--fail-cells", type=_cells, default=[], help="cells that fail, as 'y,x;y,x'")
    p.add_argument("--fail-runs", type=int, default=1, help="a failing cell fails this many runs (-1: always)")
    p.add_argument("--state", type=Path, default=None, help="file counting runs and attempts per cell")
    p.add_argument("--years", type=int, default=2)
    p.add_argument("--pfts", type=int, default=3)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hang-on-run", type=int, default=0, help="the K-th invocation hangs until killed")
    p.add_argument("--seconds-per-cell", type=float, default=0.0)
    a = p.parse_args(argv)
    status = simulate_run(a.mask, output=a.output, seed=a.seed, fail_fraction=a.fail_fraction, fail_cells=a.fail_cells,
                          fail_runs=a.fail_runs, state=a.state, spec=ModelSpec(a.years, a.pfts, a.layers),
                          hang_on_run=a.hang_on_run, seconds_per_cell=a.seconds_per_cell)
    print(f"ran {int((status != 0).sum())} cells, {int((status == SUCCESS).sum())} succeeded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
