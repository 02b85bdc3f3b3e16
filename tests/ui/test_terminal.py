"""What the terminal shows, in a real terminal (tmux) and without one (a pipe):

- by default Salvo's own lines and the bar only: none of Prefect's log records (they go to the
  API, where the UI shows them); ``--verbose`` brings them back;
- ``--quiet``: only errors and the final summary, one line per failure (no ``ItemResult(...)``
  dump), the same lines in a terminal and in a pipe;
- `salvo recover` tells its rounds in at most 10 lines; `assembly reassemble -q` is accepted.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.gridded.conftest import Runs
from tests.helpers import salvo, wait_until
from tests.ui.conftest import ROOT, Local, series, worker

#: What Prefect's console lines look like (``HH:MM:SS.mmm | INFO | Task run 'x' - Finished in state ...``).
PREFECT_LINE = re.compile(r"\|\s*(INFO|WARNING|ERROR|DEBUG)\s*\||Finished in state|Task run '|Flow run '")
BAD = ("b1.nc", "b2.nc")


def _tmux() -> str:
    exe = shutil.which("tmux")
    assert exe, "tmux is missing: `make test` installs it (Debian package tmux)"
    return exe


def in_tmux(argv: list[str], env: dict[str, str], tmp: Path) -> tuple[int, list[str]]:
    """Run ``argv`` in a real terminal (a detached tmux pane, 200 columns); return its exit code and
    every line it showed."""
    sock, done = f"salvo-test-{uuid.uuid4().hex[:8]}", tmp / f"rc-{uuid.uuid4().hex[:8]}"
    conf = tmp / "tmux.conf"
    conf.write_text("set -g history-limit 100000\nset -g remain-on-exit on\n")
    script = tmp / f"run-{uuid.uuid4().hex[:8]}.sh"
    script.write_text(f"cd {shlex.quote(str(ROOT))}\n{shlex.join(argv)}\necho $? > {shlex.quote(str(done))}\n")
    tenv = {**env, "TERM": "xterm-256color"}
    tmux = [_tmux(), "-L", sock, "-f", str(conf)]
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "200", "-y", "50", "-s", "t", f"bash --noprofile --norc {script}"],
        env=tenv,
        check=True,
        timeout=60,
    )
    try:
        assert wait_until(lambda: done.exists() and done.read_text().strip() != "", timeout=600, interval=0.3), (
            "never finished"
        )
        pane = subprocess.run(
            [*tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", "t"],
            env=tenv,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], env=tenv, capture_output=True, timeout=60)
    shown = [ln.rstrip() for ln in pane.splitlines() if ln.strip() and not ln.startswith("Pane is dead")]  # tmux's own
    return int(done.read_text()), shown


def without_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, list[str], list[str]]:
    proc = subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    return (
        proc.returncode,
        [ln.rstrip() for ln in proc.stdout.splitlines() if ln.strip()],
        [ln.rstrip() for ln in proc.stderr.splitlines() if ln.strip()],
    )


def _same(line: str) -> str:
    """A line with its numbers (times, rates) folded, to compare two runs of one command."""
    return re.sub(r"\d+(\.\d+)?", "N", line)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    tmp = tmp_path_factory.mktemp("terminal")
    data = series(tmp / "in", ["a1.nc", "a2.nc", *BAD, "a3.nc"])
    return [
        sys.executable,
        "-m",
        "cli",
        "extract",
        "--directory",
        str(data),
        "--retries",
        "0",
        "--force",
        "--worker-command",
        worker(tmp, fail=BAD),
    ], tmp


def test_by_default_a_terminal_shows_salvos_lines_and_no_prefect_records(batch, local: Local, tmp_path: Path) -> None:
    argv, _ = batch
    code, lines = in_tmux(argv, local.env, tmp_path)
    assert code == 1, lines
    assert not [ln for ln in lines if PREFECT_LINE.search(ln)], lines
    assert any(ln.startswith("❌") and "b1.nc" in ln for ln in lines), lines
    assert any("BATCH PROCESSING COMPLETE" in ln for ln in lines), lines
    assert not any("ItemResult(" in ln for ln in lines)
    code, out, err = without_terminal(argv, local.env)
    assert code == 1 and not [ln for ln in out + err if PREFECT_LINE.search(ln)], err
    # The failure: its start line, one line when it ends, one line in the summary; no more.
    assert sum("b1.nc" in ln for ln in out + err if not ln.startswith("🔄")) == 2, out + err


def test_verbose_brings_prefects_records_back(batch, local: Local) -> None:
    argv, _ = batch
    code, out, err = without_terminal([*argv, "--verbose"], local.env)
    assert code == 1
    assert [ln for ln in err if PREFECT_LINE.search(ln)], err


def test_quiet_is_errors_and_the_summary_the_same_in_a_terminal_and_a_pipe(batch, local: Local, tmp_path: Path) -> None:
    argv, _ = batch
    code, pane = in_tmux([*argv, "--quiet"], local.env, tmp_path)
    code2, out, err = without_terminal([*argv, "--quiet"], local.env)
    assert code == code2 == 1
    assert [_same(ln) for ln in pane] == [_same(ln) for ln in err + out], (pane, err, out)
    assert not [ln for ln in pane if PREFECT_LINE.search(ln) or ln.startswith("🔄") or "ItemResult(" in ln], pane
    failures = [ln for ln in pane if ln.lstrip().startswith(BAD)]
    assert [ln.split(":")[0].strip() for ln in failures] == list(BAD), pane  # one line per failure
    assert any(ln.startswith("Total files:") for ln in pane)


def test_recover_tells_its_rounds_in_at_most_ten_lines(tmp_path: Path, local: Local) -> None:
    runs = Runs(tmp_path)
    mask = runs.mask()
    model = (
        f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}} --years 2 "
        f"--layers 3 --state {tmp_path / 'model-state.json'} --seed 4 --fail-fraction 0.3 --fail-runs 3"
    )
    argv = [
        sys.executable,
        "-m",
        "cli",
        "recover",
        "--model-command",
        model,
        "--mask",
        str(mask),
        "--output",
        str(tmp_path / "output"),
        "--max-rounds",
        "3",
    ]
    code, out, err = without_terminal(argv, local.env)
    assert code == 0, err
    assert len(out) + len(err) <= 10, out + err
    assert sum(ln.startswith("Round") for ln in out) == 4, out  # round 0 and three re-runs
    assert not [ln for ln in err if PREFECT_LINE.search(ln)], err


def test_assembly_reassemble_takes_quiet(tmp_path: Path, local: Local) -> None:
    proc = salvo("assembly", "reassemble", "nothing_results", "-q", "--storage", str(tmp_path / "store"), env=local.env)
    assert "unrecognized arguments" not in proc.stderr, proc.stderr
