"""A small simulated gridded model that behaves like dvmdostem, for demos and tests.

Run it as ``python -m salvo.gridded.fakemodel --mask run-mask.nc --output output/``. It reads the
run-mask and writes what dvmdostem writes, in its real layouts (`salvo.gridded.dvmdostem`): outputs on
``(time, [pftpart], [pft] | [layer], y, x)``, a restart file and ``run_status.nc`` on ``Y, X``, each
created in place with clobber in the same ``output/`` folder, like the real model. It makes chosen
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

from salvo.fsutil import atomic_write_text
from salvo.gridded.dvmdostem import write_run
from salvo.gridded.formats import FAILED, STATUS_FILL, SUCCESS, TIMED_OUT, read_mask


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of the simulated outputs (dvmdostem's pft=10 and pftpart=3 are fixed)."""

    years: int = 2
    layers: int = 4
    compress: bool = False


def choose_failures(mask: np.ndarray, *, seed: int, fraction: float, cells: list[tuple[int, int]] = ()) -> np.ndarray:
    """Boolean (Y, X): enabled cells chosen to fail, the same for the same seed."""
    chosen = np.random.default_rng(seed).random(mask.shape) < fraction
    for y, x in cells:
        chosen[y, x] = True
    return chosen & (mask != 0)


def failure_kind(y: int, x: int, *, seed: int) -> int:
    """How a chosen cell fails: -100 failure, -5 timeout, or the -9999 fill (never written)."""
    return int(np.random.default_rng([seed, y, x]).choice([FAILED, TIMED_OUT, STATUS_FILL]))


def write_outputs(output: Path, *, mask: np.ndarray, status: np.ndarray, spec: ModelSpec = ModelSpec()) -> list[Path]:
    """Write dvmdostem's real layouts into ``output`` in place, with clobber, as one model run does."""
    return write_run(output, status=status, years=spec.years, layers=spec.layers, compress=spec.compress)


def simulate_run(
    mask_path: Path,
    *,
    output: Path,
    seed: int = 0,
    fail_fraction: float = 0.0,
    fail_cells: list[tuple[int, int]] = (),
    fail_runs: int = 1,
    state: Path | None = None,
    spec: ModelSpec = ModelSpec(),
    hang_on_run: int = 0,
    seconds_per_cell: float = 0.0,
) -> np.ndarray:
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
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--compress", action="store_true", help="zlib-compress the outputs")
    p.add_argument("--hang-on-run", type=int, default=0, help="the K-th invocation hangs until killed")
    p.add_argument("--seconds-per-cell", type=float, default=0.0)
    a = p.parse_args(argv)
    status = simulate_run(
        a.mask,
        output=a.output,
        seed=a.seed,
        fail_fraction=a.fail_fraction,
        fail_cells=a.fail_cells,
        fail_runs=a.fail_runs,
        state=a.state,
        spec=ModelSpec(a.years, a.layers, a.compress),
        hang_on_run=a.hang_on_run,
        seconds_per_cell=a.seconds_per_cell,
    )
    print(f"ran {int((status != 0).sum())} cells, {int((status == SUCCESS).sum())} succeeded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
