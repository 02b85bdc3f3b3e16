"""run_item: every outcome, classified by running real child processes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from salvo.errors import UsageError
from salvo.items import Item, Worker, render_command
from salvo.outcome import EXIT_INPUT_ERROR, Status
from salvo.runner import run_item
from tests.helpers import alive, wait_until

W = "tests.spine.workers:"


def py(name: str, **kw: object) -> Worker:
    return Worker("python", W + name, **kw)


def test_success_reports_outputs_metrics_and_peak_memory(tmp_path: Path) -> None:
    r = run_item(Item("a", params={"name": "a", "out_dir": str(tmp_path)}), py("write_output"), attempt=3)
    assert r.status is Status.SUCCESS
    assert r.outputs == [str(tmp_path / "a.txt")] and (tmp_path / "a.txt").read_text() == "a"
    assert r.metrics == {"chars": 1}
    assert r.attempt == 3
    assert r.peak_rss_mb and r.peak_rss_mb > 1
    assert r.started and r.ended and r.started <= r.ended and r.duration_s >= 0


def test_peak_memory_sees_a_large_allocation() -> None:
    worker = Worker("command", "python3 -c 'b = bytearray(300 * 1024 * 1024); b[::4096] = b\"x\" * len(b[::4096])'")
    r = run_item(Item("mem"), worker)
    assert r.status is Status.SUCCESS
    assert r.peak_rss_mb >= 300


def test_skip_has_its_reason() -> None:
    r = run_item(Item("s", params={"reason": "only 1 time step"}), py("skip"))
    assert (r.status, r.reason) == (Status.SKIPPED, "only 1 time step")


def test_error_carries_exit_code_and_stderr_tail() -> None:
    r = run_item(Item("e"), Worker("command", "sh -c 'echo first >&2; echo last words >&2; exit 3'"))
    assert r.status is Status.ERROR and r.exit_code == 3
    assert r.stderr_tail.splitlines()[-2:] == ["first", "last words"]
    assert "last words" in r.reason and r.retryable


def test_bad_input_is_a_deterministic_error() -> None:
    r = run_item(Item("b"), py("bad_input"))
    assert r.status is Status.ERROR and r.exit_code == EXIT_INPUT_ERROR
    assert "the input is corrupt" in r.reason
    assert not r.retryable


def test_python_exception_is_an_error_with_traceback() -> None:
    r = run_item(Item("f", params={"message": "kaboom"}), py("fail"))
    assert r.status is Status.ERROR and r.exit_code == 1
    assert "RuntimeError: kaboom" in r.stderr_tail


def test_exit_zero_without_outputs_is_a_silent_failure(tmp_path: Path) -> None:
    item = Item("x", params={"input": "x", "output_dir": str(tmp_path / "out")})
    r = run_item(item, py("no_output", verify="salvo.extract:check_for_output"))
    assert r.status is Status.SILENT_FAILURE
    assert "no output folder" in r.reason


def test_segfault_is_crashed() -> None:
    r = run_item(Item("c"), py("segfault"))
    assert r.status is Status.CRASHED and r.signal == 11
    assert "SIGSEGV" in r.reason


@pytest.mark.parametrize("kind", ["python", "command"])
def test_timeout_kills_the_whole_process_group(tmp_path: Path, kind: str) -> None:
    pid_file = tmp_path / "pids"
    if kind == "python":
        worker, params = py("sleep_forever"), {"pid_file": str(pid_file), "with_grandchild": True}
    else:
        script = tmp_path / "hang.py"
        script.write_text(
            "import os, subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
            "open(sys.argv[1], 'w').write(f'{os.getpid()} {g.pid}')\n"
            "time.sleep(3600)\n"
        )
        worker, params = Worker("command", f"python3 {script} {{pid_file}}"), {"pid_file": str(pid_file)}
    t0 = time.monotonic()
    r = run_item(Item("hang", params=params), worker, timeout_s=1.5)
    elapsed = time.monotonic() - t0
    assert r.status is Status.TIMEOUT
    assert elapsed < 1.5 + 5
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout=5)


def test_orchestration_fault_is_an_exception() -> None:
    r = run_item(Item("t", params={}), Worker("command", "echo {missing}"))
    assert r.status is Status.EXCEPTION
    assert "missing" in r.reason and r.retryable


def test_warm_worker_imports_once_and_forks_per_item(tmp_path: Path) -> None:
    log = tmp_path / "imports.log"
    module = tmp_path / "warm_probe.py"
    module.write_text(
        "import os\n"
        f"open({str(log)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "def run(**_):\n    return {'metrics': {'pid': os.getpid()}}\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        results = [run_item(Item(f"w{i}"), Worker("python", "warm_probe:run")) for i in range(3)]
    finally:
        sys.path.remove(str(tmp_path))
    child_pids = {r.metrics["pid"] for r in results}
    import_pids = log.read_text().split()
    assert all(r.status is Status.SUCCESS for r in results)
    assert len(child_pids) == 3  # each item in its own process
    assert len(import_pids) == 1 and int(import_pids[0]) not in child_pids  # imported once, by the warm parent


def test_log_file_gets_the_output(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "one.log"
    r = run_item(Item("l"), Worker("command", "sh -c 'echo to-stdout; echo to-stderr >&2; exit 4'"), log_path=log)
    assert r.status is Status.ERROR
    assert log.read_text().split() == ["to-stdout", "to-stderr"]
    assert r.stderr_tail.endswith("to-stderr")


def test_render_command_is_argv_not_shell() -> None:
    argv = render_command(
        "tool --in {input} {options} --name={name}",
        {"input": "a b.nc; rm -rf /", "options": ["--x", "1 2"], "name": "n"},
    )
    assert argv == ["tool", "--in", "a b.nc; rm -rf /", "--x", "1 2", "--name=n"]
    with pytest.raises(UsageError, match="unknown placeholder"):
        render_command("tool {nope}", {})
    with pytest.raises(UsageError, match="bad placeholder"):
        render_command("tool {input.__class__}", {"input": "x"})


def warm_once() -> None:
    """A preload warm-up: notes the process it runs in."""
    with open(os.environ["SALVO_TEST_WARM_FILE"], "a") as fh:
        fh.write(f"{os.getpid()}\n")


def test_a_preload_function_runs_once_in_the_zygote_not_per_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm, parents = tmp_path / "warm", tmp_path / "parents"
    monkeypatch.setenv("SALVO_TEST_WARM_FILE", str(warm))
    worker = Worker("command", f"sh -c 'echo $PPID >> {parents}'", preload=("tests.spine.test_runner:warm_once",))
    results: list = []
    # A new thread gets a zygote of its own, started with this environment.
    t = threading.Thread(target=lambda: results.extend(run_item(Item(f"i{i}"), worker) for i in range(3)))
    t.start()
    t.join(300)
    assert [r.status for r in results] == [Status.SUCCESS] * 3, [r.reason for r in results]
    zygote = set(parents.read_text().split())  # every item is a child of its zygote
    assert len(zygote) == 1 and warm.read_text().split() == list(zygote)


def test_a_batch_shortens_the_gil_switch_interval_and_restores_it() -> None:
    import sys

    from salvo.runner import BATCH_SWITCH_INTERVAL_S, responsive_threads

    before = sys.getswitchinterval()
    with responsive_threads():
        assert sys.getswitchinterval() == pytest.approx(min(before, BATCH_SWITCH_INTERVAL_S))
        with responsive_threads(1.0):  # never made longer than it is
            assert sys.getswitchinterval() == pytest.approx(min(before, BATCH_SWITCH_INTERVAL_S))
    assert sys.getswitchinterval() == before


def test_a_prestarted_worker_process_runs_the_first_item_of_a_new_thread() -> None:
    from salvo import runner

    worker = Worker("python", "tests.spine.workers:parent_pid", preload=("json",))
    runner.prestart(worker, 1)
    [zygote] = runner._spare
    got: list = []
    thread = threading.Thread(target=lambda: got.append(run_item(Item("p", params={}), worker, timeout_s=60)))
    thread.start()
    thread.join(120)
    assert got and got[0].status is Status.SUCCESS
    assert got[0].metrics["ppid"] == zygote.proc.pid  # forked from the process started ahead of time
    assert runner._spare == []
    zygote.interrupt()
    assert zygote.proc.wait(timeout=30) == 0
