"""A staged `--worker-command` is the zygote's own child: spawned with no Python process per item,
published only when it succeeded, killed with its whole tree, and nothing left behind a killed driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from salvo import runner
from salvo.fsutil import TMP_PREFIX
from salvo.items import Item, Worker
from salvo.outcome import Status
from salvo.runner import run_item
from salvo.staged import STAGED_COMMAND
from tests.helpers import alive, wait_until
from tests.spine.workers import marked_processes

pytestmark = pytest.mark.pure

WORKER = Worker("python", STAGED_COMMAND, verify="salvo.extract:check_for_output")
#: A one-pixel PNG, what the output check of `salvo extract` accepts as a plot.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005000201"
    "a5a4e5d50000000049454e44ae426082"
)


def _item(command: str, final: Path, src: Path) -> Item:
    params = {
        "command": command,
        "stage": {"output_dir": str(final)},
        "input": str(src),
        "name": src.name,
        "stem": src.stem,
    }
    return Item(src.name, inputs=(str(src),), params=params, outputs=(str(final),))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "a.png"
    p.write_bytes(PNG)
    return p


def test_the_command_is_the_zygotes_own_child_and_its_folder_is_published(tmp_path: Path, src: Path) -> None:
    final = tmp_path / "a_results"
    cmd = 'sh -c \'cp "$1" "$2/plot.png" && echo $PPID > "$2/ppid" && echo "$2" > "$2/stage"\' sh {input} {output_dir}'
    r = run_item(_item(cmd, final, src), WORKER, timeout_s=60)
    assert r.status is Status.SUCCESS, r.reason
    assert r.outputs == [str(final)]
    assert (final / "plot.png").read_bytes() == PNG
    # The shell's parent is the zygote itself: no Python process stood between them.
    assert int((final / "ppid").read_text()) == runner._zygote().proc.pid
    stage = Path((final / "stage").read_text().strip())
    assert stage != final and stage.relative_to(tmp_path).parts[0].startswith(f"{TMP_PREFIX}a_results-"), (
        "it wrote into a staging folder beside the final one"
    )
    assert not stage.exists() and _leftovers(tmp_path) == []
    mask = os.umask(0)
    os.umask(mask)
    assert final.stat().st_mode & 0o777 == 0o777 & ~mask, "mkdtemp's 0700 is undone, as mkdir would make it"


def test_a_failing_command_publishes_nothing_and_keeps_the_earlier_result(tmp_path: Path, src: Path) -> None:
    final = tmp_path / "a_results"
    final.mkdir()
    (final / "plot.png").write_bytes(PNG)
    cmd = "sh -c 'echo half > \"$1/plot.png\"; echo broken >&2; exit 3' sh {output_dir}"
    r = run_item(_item(cmd, final, src), WORKER, timeout_s=60)
    assert r.status is Status.ERROR and r.exit_code == 3
    assert "broken" in r.reason and "exit code 3" in r.reason
    assert (final / "plot.png").read_bytes() == PNG, "the earlier result is untouched"
    assert _leftovers(tmp_path) == []


def test_exit_zero_with_an_empty_folder_is_a_silent_failure_not_a_publication(tmp_path: Path, src: Path) -> None:
    final = tmp_path / "a_results"
    r = run_item(_item("true {output_dir}", final, src), WORKER, timeout_s=60)
    assert r.status is Status.SILENT_FAILURE, r.reason
    assert not final.exists() and _leftovers(tmp_path) == []


def test_a_program_that_cannot_run_is_an_error_with_the_reason(tmp_path: Path, src: Path) -> None:
    final = tmp_path / "a_results"
    r = run_item(_item("no-such-program-salvo {output_dir}", final, src), WORKER, timeout_s=60)
    assert r.status is Status.ERROR and r.exit_code == 127
    assert "cannot run 'no-such-program-salvo'" in r.reason
    assert not final.exists() and _leftovers(tmp_path) == []


def test_a_command_killed_by_a_signal_is_crashed(tmp_path: Path, src: Path) -> None:
    final = tmp_path / "a_results"
    r = run_item(_item("sh -c 'touch \"$1/x\"; kill -SEGV $$' sh {output_dir}", final, src), WORKER, timeout_s=60)
    assert r.status is Status.CRASHED and r.signal == signal.SIGSEGV
    assert not final.exists() and _leftovers(tmp_path) == []


def test_the_command_gets_default_signal_handling(tmp_path: Path, src: Path) -> None:
    """The zygote ignores SIGINT; the command it spawns must not inherit that."""
    final = tmp_path / "a_results"
    cmd = 'sh -c \'grep -E "^SigIgn" /proc/self/status > "$1/sigign"; cp "$2" "$1/plot.png"\' sh {output_dir} {input}'
    r = run_item(_item(cmd, final, src), WORKER, timeout_s=60)
    assert r.status is Status.SUCCESS, r.reason
    ignored = int((final / "sigign").read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGINT - 1)) and not ignored & (1 << (signal.SIGTERM - 1))


def test_a_timeout_kills_the_commands_whole_tree_and_publishes_nothing(tmp_path: Path, src: Path) -> None:
    marker = f"salvo-exec-timeout-{uuid.uuid4().hex}"
    final = tmp_path / "a_results"
    pids = tmp_path / "pids"
    # A child in the group, and a grandchild that left the session: both must die at the timeout.
    t0 = time.monotonic()
    r = run_item(_item(_sleepers(marker, pids), final, src), WORKER, timeout_s=5, kill_grace_s=0.5)
    assert r.status is Status.TIMEOUT
    assert time.monotonic() - t0 < 30
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    assert wait_until(lambda: not any(alive(p) for p in started), timeout=5), [p for p in started if alive(p)]
    assert marked_processes(marker) == []
    assert not final.exists() and _leftovers(tmp_path) == []


def _sleepers(marker: str, pids: Path) -> str:
    """A command that starts a sleeper in its group and one in a new session (both carrying ``marker``
    in their environment), writes their pids, then a partial output, and waits."""
    return (
        f"sh -c 'env M={marker} sleep 300 & a=$!; env M={marker} setsid sleep 301 & echo $a $! > {pids}.tmp; "
        f'mv {pids}.tmp {pids}; touch "$1/partial"; wait\' sh {{output_dir}}'
    )


def test_sigkill_of_the_driver_leaves_no_process_and_publishes_nothing(tmp_path: Path, src: Path) -> None:
    marker = f"salvo-exec-driver-{uuid.uuid4().hex}"
    final = tmp_path / "a_results"
    pids = tmp_path / "pids"
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from salvo.runner import run_item
        from tests.spine.test_zygote_exec import WORKER, _item, _sleepers
        run_item(_item(_sleepers({marker!r}, Path({str(pids)!r})), Path({str(final)!r}), Path({str(src)!r})), WORKER,
                 timeout_s=600)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(driver)])
    try:
        assert wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, timeout=60)
        started = [int(p) for p in pids.read_text().split()]
        assert all(alive(p) for p in started)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # The zygote sees its stdin close, kills the item's whole tree, and exits.
        assert wait_until(lambda: marked_processes(marker) == [], timeout=20), marked_processes(marker)
        assert not any(alive(p) for p in started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not final.exists(), "nothing is published by a run that was killed"
    # Its staging folder stays until the next run's clean-up of partial outputs removes it.
    from salvo.fsutil import remove_partial

    remove_partial(final)
    assert _leftovers(tmp_path) == []


def test_the_commands_stdout_and_stderr_go_to_the_items_log(tmp_path: Path, src: Path) -> None:
    final = tmp_path / "a_results"
    log = tmp_path / "logs" / "a.log"
    cmd = 'sh -c \'echo to-stdout; echo to-stderr >&2; cp "$2" "$1/plot.png"\' sh {output_dir} {input}'
    r = run_item(_item(cmd, final, src), WORKER, timeout_s=60, log_path=log)
    assert r.status is Status.SUCCESS, r.reason
    assert log.read_text().split() == ["to-stdout", "to-stderr"]
    assert sorted(p.name for p in final.iterdir()) == ["plot.png"]
