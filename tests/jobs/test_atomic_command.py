"""A `--job-command`'s folder appears at its final name only when the command succeeded (issue 15).

The CLI is really killed with SIGKILL while the command is half-way through writing; a failed
command never replaces an earlier good folder.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.badinput import snapshot
from tests.helpers import salvo, wait_until

WRITER = Path(__file__).with_name("slow_writer.py")


def _args(tmp_path: Path, sirene: Path, mode: str) -> list[str]:
    command = f"{shlex.quote(sys.executable)} {WRITER} {mode} {tmp_path / 'marker'} {{job_output_dir}}"
    return [
        "jobs",
        "batch",
        "--naf",
        "6920Z",
        "--input",
        str(sirene),
        "--output-dir",
        str(tmp_path / "out"),
        "--jobs-dir",
        str(tmp_path / "jobs"),
        "--json",
        "--job-command",
        command,
    ]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".salvo-tmp-"))


def test_a_sigkill_mid_job_leaves_no_half_written_folder(
    sirene_small: Path, tmp_path: Path, child_env: dict[str, str]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *_args(tmp_path, sirene_small, "hang")],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: (tmp_path / "marker").exists(), timeout=180), "the job command never started"
        staged = Path((tmp_path / "marker").read_text())
        assert (staged / "dataset.csv").is_file(), "the command writes into its staging folder"
        os.kill(proc.pid, signal.SIGKILL)  # the CLI process only: its zygote must clean up the job
    finally:
        proc.wait(timeout=60)
        proc.communicate()
    out = tmp_path / "out"
    assert not (out / "naf_6920Z").exists(), "a killed job left a half-written folder at its final name"
    assert staged.parent.name.startswith(".salvo-tmp-naf_6920Z-") and staged.parent.parent == out
    # The next run removes the staging leftovers and publishes the complete folder.
    (tmp_path / "marker").unlink()
    again = salvo(*_args(tmp_path, sirene_small, "ok"), env=child_env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["jobs"][0]["status"] == "success"
    assert sorted(p.name for p in (out / "naf_6920Z").iterdir()) == ["dataset.csv", "dataset.parquet"]
    assert wait_until(lambda: not _leftovers(out), timeout=60), _leftovers(out)


def test_a_failed_command_keeps_the_earlier_good_folder(
    sirene_small: Path, tmp_path: Path, child_env: dict[str, str]
) -> None:
    first = salvo(*_args(tmp_path, sirene_small, "ok"), env=child_env)
    assert first.returncode == 0, first.stderr[-2000:]
    good = tmp_path / "out" / "naf_6920Z"
    before = snapshot([good])
    failed = salvo(*_args(tmp_path, sirene_small, "fail"), "--force", env=child_env)
    assert failed.returncode == 1, failed.stderr[-2000:]
    entry = json.loads(failed.stdout)["jobs"][0]
    assert entry["status"] == "error" and "exit code 3" in entry["error"] and "giving up" in entry["error"]
    assert snapshot([good]) == before, "a failed command replaced or touched the earlier good folder"
    assert not _leftovers(tmp_path / "out")


def test_exit_0_with_nothing_written_is_a_silent_failure(
    sirene_small: Path, tmp_path: Path, child_env: dict[str, str]
) -> None:
    args = _args(tmp_path, sirene_small, "ok")
    args[-1] = "true {job_output_dir}"
    proc = salvo(*args, env=child_env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    entry = json.loads(proc.stdout)["jobs"][0]
    assert entry["status"] == "silent_failure" and "wrote nothing" in entry["error"]
    assert not (tmp_path / "out" / "naf_6920Z").exists()
