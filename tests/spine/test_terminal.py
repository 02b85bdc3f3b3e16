"""What a batch shows while it runs: the seed's 🔄 and ✅ lines, and on a terminal a bar they never cut through."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import salvo, wait_until


def _inputs(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        (folder / f"f{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))


def test_each_item_gets_a_start_line_before_its_end_line(tmp_path: Path, child_env: dict[str, str]) -> None:
    _inputs(tmp_path / "in", 3)
    proc = salvo(
        "extract",
        "--directory",
        str(tmp_path / "in"),
        "--pattern",
        "*.png",
        "--retries",
        "0",
        "--worker-command",
        "cp {input} {output_dir}/plot.png",
        env=child_env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for i in range(3):
        name = f"f{i}.png"
        starts = [n for n, line in enumerate(lines) if line.startswith("🔄") and line.endswith(name)]
        ends = [n for n, line in enumerate(lines) if line.startswith("✅") and name in line]
        assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0], proc.stderr


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is part of the machine image; without it no terminal to test in"
)
def test_on_a_terminal_lines_print_above_the_bar_never_through_it(tmp_path: Path, child_env: dict[str, str]) -> None:
    _inputs(tmp_path / "in", 6)
    (tmp_path / "in" / "f5.png").unlink()
    (tmp_path / "in" / "bad.png").write_text("x")
    # One item fails, so error lines are printed while the bar is on screen.
    worker = (
        f"{shlex.quote(sys.executable)} -c \"import sys,shutil; sys.exit(3) if sys.argv[1].endswith('bad.png')"
        " else shutil.copy(sys.argv[1], sys.argv[2] + '/p.png')\" {input} {output_dir}"
    )
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in child_env.items()
        if k.startswith(("PREFECT_", "PYTHONPATH", "PATH", "SALVO_", "HOME"))
    )
    done = tmp_path / "done"
    cmd = (
        f"env {env} {shlex.quote(sys.executable)} -m cli extract --directory {tmp_path / 'in'} "
        "--pattern '*.png' --retries 0 "
        f"--worker-command {shlex.quote(worker)}; touch {done}; sleep 60"
    )
    session = f"salvo-test-{time.monotonic_ns()}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "60", cmd], check=True)
    try:
        assert wait_until(done.exists, timeout=240, interval=0.5), "the command did not finish"
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session, "-S", "-200"], capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    lines = [line for line in screen.splitlines() if line.strip()]
    bars = [line for line in lines if "━" in line]
    assert bars and "6/6" in bars[-1], screen
    assert any(line.startswith("❌") and "bad.png" in line for line in lines), screen
    for line in bars:
        assert not any(mark in line for mark in ("🔄", "✅ [", "❌ [", "INFO", "ERROR")), (
            f"a line glued onto the bar: {line!r}"
        )
    assert sum(1 for line in lines if line.startswith("🔄")) == 6
