"""Demo of salvage-merge: a simulated dvmdostem run (real file layouts) fails in some cells, then fully recovers."""

from __future__ import annotations

import pathlib
import shlex
import sys


def run_demo(root: pathlib.Path) -> list[str]:
    """Make a run-mask, run the salvage-merge flow with the simulated model, and say where things are."""
    from cli.common import run_flow
    from flows.salvage_merge import salvage_merge
    from salvo.gridded.dvmdostem import SITE_MASK, site_mask
    from salvo.gridded.formats import read_mask, read_status
    from salvo.gridded.report import console_lines
    from salvo.options import RunOptions

    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    run = read_mask(SITE_MASK).copy()  # dvmdostem's public Imnaviat test site, 10 x 10
    run[0, :2] = 0  # cells switched off in the user's mask stay off
    mask = site_mask(root / "run-mask.nc", run=run)
    output, state = root / "output", root / "model-state.json"
    model = (
        f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}} "
        f"--seed 7 --fail-fraction 0.25 --fail-runs 2 --state {shlex.quote(str(state))}"
    )
    doc = run_flow(
        salvage_merge,
        model_command=model,
        mask=str(mask),
        output=str(output),
        max_rounds=3,
        run=RunOptions(timeout_s=120.0),
    )
    status = read_status(output / "run_status.nc")
    ok = bool(((read_mask(mask) == 0) | (status == 100)).all())
    return [
        "salvage-merge demo: a simulated dvmdostem run (Imnaviat site, 10 x 10 cells, 25% failing for two runs, "
        "outputs in the model's real layouts) recovered "
        f"{'fully' if ok else 'only partly'}:",
        *(f"  {line}" for line in console_lines(doc)),
        f"  Merged outputs: {output} (run_status.nc has merge_source: 0 original, k = k-th re-run)",
        f"  Try it by hand: salvo recover --model-command '{model}' --mask {mask} --output {output}",
    ]
