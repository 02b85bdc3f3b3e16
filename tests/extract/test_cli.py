"""`salvo extract` as a user runs it: exit codes, dry run, JSON, and being killed mid-batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extract.scripts import command, write_script
from tests.helpers import alive, markers, salvo, wait_until


def _snapshot(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def _slow_data(tmp_path: Path, n: int) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n):
        (data / f"slow_{i}.nc").write_text(str(i))
    return data


@pytest.mark.parametrize(
    "args, message",
    [
        (["--directory", "does/not/exist"], "directory does not exist: does/not/exist"),
        (["--worker-command", "no-such-tool {input} {output_dir}"], "worker command not found: no-such-tool"),
        (["--timeout", "-3"], "must be > 0"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, child_env: dict, args: list[str], message: str) -> None:
    (tmp_path / "a.nc").write_text("x")
    proc = salvo("extract", *args, env=child_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nc"]  # nothing written


def test_no_match_says_so_and_exits_0(tmp_path: Path, child_env: dict) -> None:
    proc = salvo("extract", "--directory", str(tmp_path), "--pattern", "*_S9_*", env=child_env)
    assert proc.returncode == 0
    assert "No files match '*_S9_*'" in proc.stdout


def test_dry_run_writes_nothing(tmp_path: Path, child_env: dict) -> None:
    data = _slow_data(tmp_path, 3)
    before = _snapshot(tmp_path)
    proc = salvo("extract", "--directory", str(data), "--dry-run", "--json", env=child_env)
    assert proc.returncode == 0
    plan = json.loads(proc.stdout)
    assert [row["file"] for row in plan["items"]] == ["slow_0.nc", "slow_1.nc", "slow_2.nc"]
    assert _snapshot(tmp_path) == before


def test_json_is_alone_on_stdout_and_exit_1_on_failure(tmp_path: Path, child_env: dict) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok_1.nc").write_text("1")
    (data / "silent_1.nc").write_text("2")
    cmd = command(write_script(tmp_path), str(tmp_path / "calls"))
    proc = salvo("extract", "--directory", str(data), "--worker-command", cmd, "--json", env=child_env)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert doc["summary"]["counts"] == {"success": 1, "silent_failure": 1}
    assert Path(doc["reports"]["text"]).name == "batch_processing_summary.txt"


def _start(data: Path, cmd: str, env: dict, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "extract", "--directory", str(data), "--worker-command", cmd],
        env={**env, "SLOW_SECONDS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_batch_then_resume(tmp_path: Path, child_env: dict) -> None:
    data, calls = _slow_data(tmp_path, 6), tmp_path / "calls"
    cmd = command(write_script(tmp_path), str(calls))
    proc = _start(data, cmd, child_env, tmp_path)
    assert wait_until(lambda: len(markers(calls)) >= 3, timeout=120), proc.stderr
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    in_flight = [int(m.suffix[1:]) for m in markers(calls)]
    # The warm process sees the orchestrator vanish and kills the running item's group.
    assert wait_until(lambda: not any(alive(p) for p in in_flight), timeout=10)
    finished = sorted(p.name.removesuffix("_results") for p in data.glob("*_results"))
    assert finished, "some items finished before the kill"
    for folder in data.glob("*_results"):
        assert (folder / "plot.png").exists()  # published folders are complete

    again = salvo("extract", "--directory", str(data), "--worker-command", cmd, env={**child_env, "SLOW_SECONDS": "0"})
    assert again.returncode == 0, again.stderr
    for name in finished:  # no completed item ran twice
        assert len(markers(calls, f"{name}.nc")) == 1
    assert sorted(p.name for p in data.glob("*_results")) == [f"slow_{i}_results" for i in range(6)]
    assert not list(data.glob(".salvo-tmp*"))
    assert "Resumed from earlier runs: " + str(len(finished)) in again.stdout


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path, child_env: dict) -> None:
    data, calls = _slow_data(tmp_path, 4), tmp_path / "calls"
    cmd = command(write_script(tmp_path), str(calls))
    proc = _start(data, cmd, child_env, tmp_path)
    assert wait_until(lambda: len(markers(calls)) >= 2, timeout=120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Interrupted: finished items are kept" in err
    assert wait_until(lambda: not any(alive(int(m.suffix[1:])) for m in markers(calls)), timeout=10)
    done_before = sorted(p.name for p in data.glob("*_results"))
    again = salvo("extract", "--directory", str(data), "--worker-command", cmd, env={**child_env, "SLOW_SECONDS": "0"})
    assert again.returncode == 0
    for name in done_before:
        assert len(markers(calls, name.replace("_results", ".nc"))) == 1


def test_a_finished_batch_answers_from_records_without_a_flow_run(tmp_path: Path, child_env: dict) -> None:
    data, calls = _slow_data(tmp_path, 2), tmp_path / "calls"
    cmd = command(write_script(tmp_path), str(calls))
    env = {**child_env, "SLOW_SECONDS": "0"}
    assert salvo("extract", "--directory", str(data), "--worker-command", cmd, env=env).returncode == 0
    again = salvo("extract", "--directory", str(data), "--worker-command", cmd, "--json", env=env)
    assert again.returncode == 0
    doc = json.loads(again.stdout)
    assert doc["message"] == "All 2 files were finished by earlier runs; nothing to run."
    assert doc["summary"]["resumed"] == 2
    assert "Beginning flow run" not in again.stderr  # no flow run, no API started
    assert len(markers(calls)) == 2  # each file ran once, in the first run
