"""The salvage-merge flow and the commands: recovery over rounds, a hanging model, the seed's command lines."""

from __future__ import annotations

import json
import shlex
import sys
import time

import numpy as np
import psutil
import xarray as xr

from cli.main import main as salvo_main
from cli.salvage import merge_main, salvage_main
from flows.salvage_merge import salvage_merge
from salvo.gridded import read_mask, read_merge_source, read_status
from salvo.options import RunOptions

from .conftest import ENABLED, tree_digest


def _model(runs, **opts) -> str:
    extra = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in opts.items())
    return (
        f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}} "
        f"--years 2 --layers 3 --state {runs.root / 'model-state.json'} {extra}"
    )


def _artifacts(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_recover_converges_in_two_rounds_to_a_run_that_never_failed(runs, capsys):
    mask = runs.mask()
    original = mask.read_bytes()
    code = salvo_main(
        [
            "recover",
            "--model-command",
            _model(runs, seed=4, fail_fraction=0.3, fail_runs=2),
            "--mask",
            str(mask),
            "--output",
            str(runs.root / "output"),
            "--max-rounds",
            "3",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["summary"]["ok"] and doc["summary"]["rounds"] == 2
    assert [r["round"] for r in doc["rounds"]] == [0, 1, 2]
    first_failed = doc["rounds"][0]["after"]["failed_cells"]
    assert first_failed and doc["rounds"][1]["to_rerun"] == len(first_failed) == doc["rounds"][2]["to_rerun"]
    assert doc["rounds"][2]["after"]["values"] == {"100": ENABLED}
    assert mask.read_bytes() == original
    source = read_merge_source(runs.root / "output" / "run_status.nc")
    assert sorted(f"{y},{x}" for y, x in zip(*np.nonzero(source == 2))) == sorted(first_failed)
    assert int((source == 1).sum()) == 0
    runs.run(runs.mask("clean.nc"), "clean", state=runs.root / "clean-state.json")
    for f in sorted((runs.root / "clean").glob("*.nc")):
        got = (
            xr.open_dataset(runs.root / "output" / f.name, decode_cf=False)
            .load()
            .drop_vars("merge_source", errors="ignore")
        )
        xr.testing.assert_identical(got, xr.open_dataset(f, decode_cf=False).load())
    assert json.loads((runs.root / "output.recovery" / "recovery.json").read_text())["summary"]["ok"]


def test_hanging_model_is_killed_at_the_timeout_and_everything_put_back(runs):
    mask = runs.mask()
    original = mask.read_bytes()
    state = salvage_merge(
        _model(runs, fail_cells="'1,1;2,2'", hang_on_run=2),
        mask=str(mask),
        output=str(runs.root / "output"),
        max_rounds=2,
        run=RunOptions(timeout_s=8.0),
        return_state=True,
    )
    assert state.is_failed()
    doc = state.result(raise_on_failure=False).doc
    hung = doc["rounds"][-1]
    assert hung["round"] == 1 and hung["model"]["status"] == "timeout" and not hung["model"]["wrote_status"]
    assert doc["summary"]["failed_items"] == ["cell 1,1", "cell 2,2"] and "round 1" in doc["summary"]["stopped"]
    assert mask.read_bytes() == original and doc["summary"]["mask_restored"]
    assert tree_digest(runs.root / "output") == tree_digest(runs.root / "output.recovery" / "round-1" / "salvaged")
    marker = str(runs.root / "model-state.json")
    deadline = time.monotonic() + 10
    while True:
        left = [
            p
            for p in psutil.process_iter(["cmdline", "status"])
            if p.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or [])
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == []
    artifacts = _artifacts(state.state_details.flow_run_id)
    rows = json.loads(artifacts["salvage-merge-rounds"].data)
    assert [(r["round"], r["model"]) for r in rows] == [(0, "success"), (1, "timeout")]
    assert "Not recovered" in artifacts["salvage-merge-summary"].data


def test_recover_reports_cells_still_failed_after_max_rounds(runs, capsys):
    mask = runs.mask()
    code = salvo_main(
        [
            "recover",
            "--model-command",
            _model(runs, fail_cells="'3,4'", fail_runs=-1),
            "--mask",
            str(mask),
            "--output",
            str(runs.root / "output"),
            "--max-rounds",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "Round 1: re-ran 1 failed cells" in out
    assert f"✗ Not recovered (--max-rounds 1 reached): 1 of {ENABLED} enabled cells still failed: cell 3,4" in out
    assert read_status(runs.root / "output" / "run_status.nc")[3, 4] != 100


def test_recover_rejects_a_missing_mask_with_exit_2(runs, capsys):
    code = salvo_main(["recover", "--model-command", "true", "--mask", str(runs.root / "no.nc"), "--output", "o"])
    assert code == 2 and "Run-mask not found" in capsys.readouterr().err


def test_seed_command_lines_salvage_then_merge(runs, capsys):
    mask = runs.mask()
    status = runs.run(mask, "output", fail_cells=[(1, 1), (2, 2)])
    r = runs.root
    size = sum(p.stat().st_size for p in (r / "output").iterdir())
    failed, unwritten = int(((status < 0) & (status != -9999)).sum()), int((status == -9999).sum())
    code = salvage_main(
        [
            f"{r}/output/",
            f"{r}/backup/",
            "--original-mask",
            str(mask),
            "--new-mask",
            f"{r}/run-mask-failed.nc",
            "--verbose",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Salvaging run from: {r}/output/",
        f"Creating backup at: {r}/backup/",
        f"✓ Backup created at: {r}/backup/",
        f"  7 files, {size} bytes (7 move), verified",
        f"  {r}/output/ is now empty, ready for the re-run (the backup is the only copy: do not edit it)",
        f"✓ New run-mask created at: {r}/run-mask-failed.nc",
        "  Number of failed cells to re-run: 2",
        f"  Enabled cells: {ENABLED}, succeeded: {ENABLED - 2}, failed: {failed},"
        f" not run: 0, never written: {unwritten}",
    ]
    assert failed + unwritten == 2
    assert read_mask(r / "run-mask-failed.nc").sum() == 2
    runs.run(r / "run-mask-failed.nc", "rerun")
    code = merge_main([f"{r}/backup/", f"{r}/rerun/", f"{r}/merged/", "--verbose"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[:3] == [
        f"Salvaged run - successful cells: {ENABLED - 2}",
        "Rerun - successful cells: 2",
        "Found 6 files to merge",
    ]
    assert out[-3:] == ["✓ Merge complete", "  Merged: 6 files", f"  Total successful cells: {ENABLED}"]
    assert salvage_main([f"{r}/output/", f"{r}/backup/", "--original-mask", str(mask), "--new-mask", f"{r}/x.nc"]) == 2
    assert "pyddt-salvage: error: Backup directory already exists" in capsys.readouterr().err
    assert salvo_main(["merge", f"{r}/backup", f"{r}/rerun", f"{r}/merged"]) == 2
    assert "salvo: error: Output directory" in capsys.readouterr().err


def test_recover_in_one_round_with_copied_backups_on_real_layouts(runs, capsys):
    mask = runs.mask()
    code = salvo_main(
        [
            "recover",
            "--model-command",
            _model(runs, fail_cells="'4,4;8,1'"),
            "--mask",
            str(mask),
            "--output",
            str(runs.root / "output"),
            "--copy",
            "--timeout",
            "5m",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert (
        code == 0
        and doc["summary"]["rounds"] == 1
        and doc["rounds"][1]["merge"]["verified"]["GPP_monthly_tr.nc"] == ["GPP"]
    )
    salvaged = runs.root / "output.recovery" / "round-1" / "salvaged"
    assert read_status(salvaged / "run_status.nc")[4, 4] != 100  # the copy keeps the first run as it was
    merged = xr.open_dataset(runs.root / "output" / "GPP_monthly_tr.nc", decode_cf=False).load()
    rerun = xr.open_dataset(
        runs.root / "output.recovery" / "round-1" / "rerun" / "GPP_monthly_tr.nc", decode_cf=False
    ).load()
    xr.testing.assert_identical(merged["GPP"].isel(y=4, x=4), rerun["GPP"].isel(y=4, x=4))
    assert (merged["GPP"].isel(y=8, x=1).values != -9999).all()
