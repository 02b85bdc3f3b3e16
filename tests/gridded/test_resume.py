"""`salvo recover` resumes where it stopped (issue 22.8): killed with kill -9 during the merge of a complete round.

Real processes: the recovery is the `salvo recover` command in a child process; the test waits
until the recovery's own journal says round 1 is merging (a merge of about 50 MB per run, a few
seconds) and kills the command with SIGKILL then. The next `salvo recover` must merge the finished
re-run on disk: the model is not run again (its run counter says so) and nothing is duplicated.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys

import numpy as np

from salvo.gridded import read_mask, read_merge_source, read_status

from tests.helpers import wait_until

from .conftest import ENABLED


def _journal(work):
    try:
        return json.loads((work / "journal.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"rounds": {}}


def _step(work, k):
    return (_journal(work)["rounds"].get(str(k)) or {}).get("step")


def test_kill_9_during_the_merge_then_recover_merges_the_finished_rerun_without_running_the_model(runs, child_env):
    mask = runs.mask()
    original = mask.read_bytes()
    state = runs.root / "model-state.json"
    model = (
        f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}} "
        f"--years 400 --layers 3 --fail-cells '1,1;2,2' --fail-runs 1 --state {state}"
    )
    args = [
        sys.executable,
        "-m",
        "cli",
        "recover",
        "--model-command",
        model,
        "--mask",
        str(mask),
        "--output",
        str(runs.root / "output"),
        "--max-rounds",
        "3",
        "--json",
    ]
    work = runs.root / "output.recovery"
    proc = subprocess.Popen(args, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _step(work, 1) == "merging" or proc.poll() is not None, timeout=600)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _step(work, 1) == "merging"  # killed inside the merge, its re-run complete on disk
    assert json.loads(state.read_text())["runs"] == 2  # round 0 and round 1's re-run
    assert read_status(work / "round-1" / "rerun" / "run_status.nc")[1, 1] == 100

    again = subprocess.run(args, env=child_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    doc = json.loads(again.stdout)
    assert json.loads(state.read_text())["runs"] == 2  # the model was not run again
    resumed = doc["rounds"][0]
    assert resumed["round"] == 1 and resumed["resumed"] and resumed["merge"]["merged"]
    assert doc["summary"]["ok"] and doc["rounds"][-1]["after"]["values"] == {"100": ENABLED}
    assert sorted(p.name for p in work.iterdir() if p.name.startswith("round-")) == ["round-1"]  # no .interrupted-*
    assert sorted(p.name for p in (work / "round-1").iterdir()) == ["rerun", "run-mask-failed.nc", "salvaged"]
    assert _step(work, 1) == "merged"
    out = runs.root / "output"
    source = read_merge_source(out / "run_status.nc")
    assert source[1, 1] == source[2, 2] == 1 and int((source != 0).sum()) == 2
    assert np.array_equal(read_status(out / "run_status.nc")[read_mask(mask) == 1], np.full(ENABLED, 100))
    assert mask.read_bytes() == original
