"""SIGKILL in the middle of a batch, then resume: no finished item lost, none run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.deploy.conftest import MARKER_WORKER
from tests.helpers import markers, salvo, wait_until


def test_sigkill_mid_batch_then_resume_loses_nothing_and_repeats_nothing(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    stems = [f"k{i:02d}" for i in range(30)]
    for s in stems:
        (src / f"{s}.nc").write_bytes(s.encode() * 8)
    marks, out, state = tmp_path / "markers", tmp_path / "out", tmp_path / "state"
    argv = [
        "extract",
        "--directory",
        str(src),
        "--output-dir",
        str(out),
        "--state",
        str(state),
        "--retries",
        "0",
        "--worker-command",
        f"{sys.executable} {MARKER_WORKER} {{input}} {{output_dir}} {marks} 0.3",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *argv],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: len(markers(marks)) >= 8, timeout=180), "the batch did not get going"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    started = {s for s in stems if markers(marks, s)}
    finished = {s for s in stems if (out / s / f"{s}.png").exists()}
    assert len(finished) >= 6 and finished <= started

    done = salvo(*argv, "--json", env=child_env, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["summary"]["failed"] == 0 and doc["summary"]["total"] == 30
    cached = {i["item_id"].removesuffix(".nc") for i in doc["items"] if i["cached"]}
    # Every item finished before the kill is resumed from its record; at most the one in flight
    # (its output published, its record not yet written when the kill came) is not.
    assert len(finished - cached) <= 1
    runs = {s: len(markers(marks, s)) for s in stems}
    assert all(runs[s] == 1 for s in finished & cached)  # none of them ran twice
    assert all(runs[s] >= 1 for s in stems)
    assert sum(runs.values()) - len(stems) <= 1  # only the item in flight at the kill ran again
