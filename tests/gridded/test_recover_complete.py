"""`salvo recover` and a re-run that lacks an output file (issue 22.3): refused, or with --allow-missing left failed."""

from __future__ import annotations

import json
import shlex
import sys

from cli.main import main as salvo_main
from flows.salvage_merge import salvage_merge
from salvo.gridded import read_merge_source, read_status

from .conftest import ENABLED, tree_digest

#: The simulated model, except that its second run does not write VEGC_yearly_tr.nc (a model whose
#: output list changed between runs, or that lost one file).
LOSING_MODEL = """
import subprocess, sys
from pathlib import Path
args = sys.argv[1:]
subprocess.run([sys.executable, "-m", "salvo.gridded.fakemodel", *args], check=True)
output = Path(args[args.index("--output") + 1])
count = output.parent / "runs-of-the-losing-model"
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
if n == 2:
    (output / "VEGC_yearly_tr.nc").unlink()
"""


def _model(runs) -> str:
    script = runs.root / "losing_model.py"
    script.write_text(LOSING_MODEL)
    return (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} --mask {{mask}} --output {{output}} "
        f"--years 2 --layers 3 --fail-cells '1,1;2,2' --fail-runs 1 --state {runs.root / 'model-state.json'}"
    )


def test_a_rerun_missing_a_file_stops_the_recovery_with_the_output_put_back(runs):
    mask = runs.mask()
    state = salvage_merge(
        _model(runs), mask=str(mask), output=str(runs.root / "output"), max_rounds=2, return_state=True
    )
    assert state.is_failed()
    doc = state.result(raise_on_failure=False).doc
    work = runs.root / "output.recovery"
    stopped = doc["summary"]["stopped"]
    assert "round 1: the merge refused its inputs: File not found in rerun: VEGC_yearly_tr.nc" in stopped
    assert tree_digest(runs.root / "output") == tree_digest(work / "round-1" / "salvaged")
    assert json.loads((work / "journal.json").read_text())["rounds"]["1"]["step"] == "merge-failed"
    assert read_status(runs.root / "output" / "run_status.nc")[1, 1] != 100


def test_allow_missing_marks_the_cells_failed_and_the_next_round_recovers_them(runs, capsys):
    mask = runs.mask()
    code = salvo_main(
        [
            "recover",
            "--model-command",
            _model(runs),
            "--mask",
            str(mask),
            "--output",
            str(runs.root / "output"),
            "--max-rounds",
            "3",
            "--allow-missing",
            "VEGC_yearly_tr.nc",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["summary"]["ok"]
    first = doc["rounds"][1]
    assert first["round"] == 1 and first["merge"]["missing"] == ["VEGC_yearly_tr.nc"]
    assert first["merge"]["marked_failed"] == 2 and first["after"]["to_rerun"] == 2  # never 100
    assert doc["rounds"][2]["round"] == 2 and doc["rounds"][2]["after"]["values"] == {"100": ENABLED}
    source = read_merge_source(runs.root / "output" / "run_status.nc")
    assert source[1, 1] == source[2, 2] == 2 and int((source != 0).sum()) == 2
