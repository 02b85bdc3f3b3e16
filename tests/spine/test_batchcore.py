"""The batch body without Prefect: record reuse, force, partial outputs, per-item retries, chunking.

Items run as real child processes (the test workers leave one marker per run, so the tests count
invocations); records are an in-memory stand-in for the Prefect result store.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
from pathlib import Path

import pytest

from salvo import batchcore
from salvo.batchcore import chunk_size, chunks, failure_message, run_many, run_one, should_retry
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.outcome import EXIT_DETERMINISTIC, EXIT_INPUT_ERROR, ItemResult, Status
from salvo.report import summarize
from salvo.runner import clear_stop, request_stop, stop_requested
from tests.helpers import alive, markers, wait_until

pytestmark = pytest.mark.pure

COUNTED = Worker("python", "tests.spine.workers:counted")
VERIFIED = Worker("python", "tests.spine.workers:counted", verify="tests.spine.workers:require_outputs")
FAST_RETRY = dict(retries=2, retry_delays_s=(0.0,))


class DictRecords:
    """Records in a dict; reading returns a copy marked cached, as the real store does."""

    def __init__(self) -> None:
        self.data: dict[str, ItemResult] = {}
        self.writes: list[str] = []
        self._locks: dict[str, threading.Lock] = {}

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        return self._locks.setdefault(key, threading.Lock())

    def read(self, key: str) -> ItemResult | None:
        r = self.data.get(key)
        if r is None:
            return None
        r = copy.deepcopy(r)
        r.cached = True
        return r

    def write(self, key: str, result: ItemResult) -> None:
        self.writes.append(key)
        self.data[key] = copy.deepcopy(result)


@pytest.fixture(autouse=True)
def _no_stop_left_over():
    clear_stop()
    yield
    clear_stop()


def _item(tmp_path: Path, name: str, behaviour: str, **kw: object) -> Item:
    params = {"counter_dir": str(tmp_path / "calls"), "name": name, "behaviour": behaviour, **kw}
    return Item(name, params=params)


CASES = [
    # behaviour, extra params, worker, timeout, expected status, expected runs (retries=2)
    ("write_output", {}, COUNTED, 30, Status.SUCCESS, 1),
    ("skip", {"reason": "only 1 time step"}, COUNTED, 30, Status.SKIPPED, 1),
    ("no_output", {}, VERIFIED, 30, Status.SILENT_FAILURE, 1),
    ("hang", {}, COUNTED, 1.0, Status.TIMEOUT, 1),
    ("bad_input", {}, COUNTED, 30, Status.ERROR, 1),
    ("missing_module", {}, COUNTED, 30, Status.ERROR, 1),
    ("fail", {}, COUNTED, 30, Status.ERROR, 3),
    ("segfault", {}, COUNTED, 30, Status.CRASHED, 3),
]


@pytest.mark.parametrize(
    ("behaviour", "extra", "worker", "timeout", "status", "runs"), CASES, ids=[c[0] for c in CASES]
)
def test_each_outcome_runs_as_often_as_the_rules_say(
    tmp_path: Path, behaviour: str, extra: dict, worker: Worker, timeout: float, status: Status, runs: int
) -> None:
    if behaviour == "write_output":
        extra = {"out_dir": str(tmp_path / "out")}
    item = _item(tmp_path, behaviour, behaviour, **extra)
    records = DictRecords()
    r = run_one(item, "k", worker, records=records, options=RunOptions(timeout_s=timeout, **FAST_RETRY))
    assert r.status is status
    assert len(markers(tmp_path / "calls", behaviour)) == runs
    assert r.attempt == runs
    assert records.writes == (["k"] if status.ok else [])
    if behaviour == "bad_input":
        assert r.exit_code == EXIT_INPUT_ERROR
    if behaviour == "missing_module":
        assert r.exit_code == EXIT_DETERMINISTIC and "salvo_no_such_module" in r.reason


def test_a_command_saying_bad_input_is_not_retried(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    worker = Worker("command", f"sh -c 'touch {calls}/cmd.$$; echo broken header >&2; exit {EXIT_INPUT_ERROR}'")
    r = run_one(Item("cmd"), "k", worker, records=DictRecords(), options=RunOptions(timeout_s=30, **FAST_RETRY))
    assert (r.status, r.exit_code, r.attempt) == (Status.ERROR, EXIT_INPUT_ERROR, 1)
    assert len(markers(calls, "cmd")) == 1


def test_a_transient_failure_passes_on_retry(tmp_path: Path) -> None:
    item = _item(
        tmp_path, "flaky", "flaky", state_file=str(tmp_path / "n"), fail_times=1, out_dir=str(tmp_path / "out")
    )
    r = run_one(item, "k", COUNTED, records=DictRecords(), options=RunOptions(timeout_s=30, **FAST_RETRY))
    assert (r.status, r.attempt) == (Status.SUCCESS, 2)
    assert len(markers(tmp_path / "calls", "flaky")) == 2


def test_retrying_one_item_never_runs_the_others_again(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    items = [
        _item(tmp_path, "ok", "write_output", out_dir=out),
        _item(tmp_path, "crash", "segfault"),
        _item(tmp_path, "hung", "hang"),
        _item(tmp_path, "corrupt", "bad_input"),
        _item(tmp_path, "ok2", "write_output", out_dir=out),
    ]
    notes: list[tuple[str, int, float]] = []
    results = run_many(
        [(it, it.id) for it in items],
        COUNTED,
        records=DictRecords(),
        options=RunOptions(timeout_s=1.0, retries=2, retry_delays_s=(0.0, 0.1)),
        on_retry=lambda r, a, d: notes.append((r.item_id, a, d)),
    )
    assert [r.status for r in results] == [Status.SUCCESS, Status.CRASHED, Status.TIMEOUT, Status.ERROR, Status.SUCCESS]
    counts = {it.id: len(markers(tmp_path / "calls", it.id)) for it in items}
    assert counts == {"ok": 1, "crash": 3, "hung": 1, "corrupt": 1, "ok2": 1}
    assert notes == [("crash", 2, 0.0), ("crash", 3, 0.1)]


def test_records_are_reused_and_force_redoes_only_other_batches(tmp_path: Path) -> None:
    item = _item(tmp_path, "a", "write_output", out_dir=str(tmp_path / "out"))
    records = DictRecords()
    first = run_one(item, "k", COUNTED, records=records, options=RunOptions(timeout_s=30), batch_id="b1")
    again = run_one(item, "k", COUNTED, records=records, options=RunOptions(timeout_s=30), batch_id="b2")
    assert not first.cached and again.cached and again.batch_id == "b1"
    assert len(markers(tmp_path / "calls", "a")) == 1
    same_batch = run_one(
        item, "k", COUNTED, records=records, options=RunOptions(timeout_s=30, force=True), batch_id="b1"
    )
    assert same_batch.cached and len(markers(tmp_path / "calls", "a")) == 1  # a retry of this batch keeps it
    forced = run_one(item, "k", COUNTED, records=records, options=RunOptions(timeout_s=30, force=True), batch_id="b3")
    assert not forced.cached and forced.batch_id == "b3"
    assert len(markers(tmp_path / "calls", "a")) == 2


def test_failed_items_are_never_recorded_and_partial_outputs_are_removed(tmp_path: Path) -> None:
    final = tmp_path / "result_dir"
    partial = tmp_path / f".salvo-tmp-{final.name}-abc123"
    partial.mkdir()
    (partial / "half.png").write_bytes(b"half")
    item = Item(
        "f", params={"counter_dir": str(tmp_path / "calls"), "name": "f", "behaviour": "fail"}, outputs=(str(final),)
    )
    records = DictRecords()
    r = run_one(item, "k", COUNTED, records=records, options=RunOptions(timeout_s=30, retries=0))
    assert r.status is Status.ERROR
    assert records.data == {} and not partial.exists()


class TakeoverRecords(DictRecords):
    """Records whose lock reports, for ``key``, a claim taken over from a run that died."""

    def __init__(self, key: str, on_takeover: object) -> None:
        super().__init__()
        self.key, self.on_takeover = key, on_takeover

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        @contextlib.contextmanager
        def held():
            if key == self.key:
                self.on_takeover()  # the dead run's partial appears after the group listed the folder
            yield type(
                "Held", (), {"took_over": "its process 1234 on this host is gone" if key == self.key else None}
            )()

        return held()


def _group(tmp_path: Path, names: list[str]) -> list[tuple[Item, str]]:
    out = {n: str(tmp_path / f"{n}_results") for n in names}
    return [
        (
            Item(
                n,
                params={
                    "counter_dir": str(tmp_path / "calls"),
                    "name": n,
                    "behaviour": "write_output",
                    "out_dir": out[n],
                },
                outputs=(out[n],),
            ),
            n,
        )
        for n in names
    ]


def test_a_group_lists_its_output_folder_once_and_removes_every_earlier_partial(tmp_path: Path, monkeypatch) -> None:
    from salvo import fsutil

    listings = []
    real = fsutil._tmp_names
    monkeypatch.setattr(fsutil, "_tmp_names", lambda folder: listings.append(folder) or real(folder))
    for n in ("a", "c"):  # left by an earlier run killed mid-item
        (tmp_path / f".salvo-tmp-{n}_results-dead{n}").mkdir()
    (tmp_path / ".salvo-tmp-zz_results-other").mkdir()  # another item's, not in this group
    results = run_many(
        _group(tmp_path, ["a", "b", "c", "d"]),
        COUNTED,
        records=DictRecords(),
        options=RunOptions(timeout_s=30, retries=0),
    )
    assert [r.status for r in results] == [Status.SUCCESS] * 4
    assert sorted(p.name for p in tmp_path.glob(".salvo-tmp-*")) == [".salvo-tmp-zz_results-other"]
    assert listings == [tmp_path]  # one listing for four items


def test_an_item_taken_over_from_a_dead_run_is_cleaned_with_a_fresh_listing(tmp_path: Path) -> None:
    late = tmp_path / ".salvo-tmp-c_results-died"
    records = TakeoverRecords("c", on_takeover=lambda: late.mkdir())
    results = run_many(
        _group(tmp_path, ["a", "b", "c"]), COUNTED, records=records, options=RunOptions(timeout_s=30, retries=0)
    )
    assert [r.status for r in results] == [Status.SUCCESS] * 3
    assert not late.exists()


def test_a_failed_try_s_partial_is_removed_before_the_next_try(tmp_path: Path) -> None:
    final = tmp_path / "x_results"
    seen_before_try = []

    def run(item, worker, *, attempt, **_):
        seen_before_try.append(sorted(p.name for p in tmp_path.glob(".salvo-tmp-*")))
        if attempt == 1:
            (tmp_path / f".salvo-tmp-{final.name}-try1").mkdir()  # the first try dies half-way
            return ItemResult(item.id, Status.CRASHED, attempt=attempt)
        return ItemResult(item.id, Status.SUCCESS, attempt=attempt)

    [r] = run_many(
        [(Item("x", params={}, outputs=(str(final),)), "x")],
        COUNTED,
        records=DictRecords(),
        options=RunOptions(timeout_s=30, retries=1, retry_delays_s=(0.0,)),
        run=run,
    )
    assert r.status is Status.SUCCESS and r.attempt == 2
    assert seen_before_try == [[], []]


@pytest.mark.parametrize(
    ("status", "exit_code", "attempt", "retries", "expected"),
    [
        (Status.CRASHED, None, 1, 2, True),
        (Status.CRASHED, None, 3, 2, False),  # tries used up
        (Status.EXCEPTION, None, 2, 2, True),
        (Status.ERROR, 1, 1, 2, True),
        (Status.ERROR, 1, 1, 0, False),
        (Status.ERROR, EXIT_INPUT_ERROR, 1, 2, False),
        (Status.ERROR, EXIT_DETERMINISTIC, 1, 2, False),
        (Status.TIMEOUT, None, 1, 2, False),
        (Status.SKIPPED, 75, 1, 2, False),
        (Status.SILENT_FAILURE, 0, 1, 2, False),
        (Status.SUCCESS, 0, 1, 2, False),
        (Status.INTERRUPTED, None, 1, 2, False),
        (Status.NOT_RUN, None, 1, 2, False),
    ],
)
def test_retry_decision(status: Status, exit_code: int | None, attempt: int, retries: int, expected: bool) -> None:
    assert should_retry(ItemResult("x", status, exit_code=exit_code), attempt, retries) is expected


def test_no_retry_once_the_batch_is_stopped() -> None:
    request_stop()
    assert not should_retry(ItemResult("x", Status.CRASHED), 1, 2)


@pytest.mark.parametrize(
    ("delays", "attempt", "expected"),
    [((2.0, 10.0), 1, 2.0), ((2.0, 10.0), 2, 10.0), ((2.0, 10.0), 5, 10.0), ((), 1, 0.0)],
)
def test_retry_delays_repeat_the_last(delays: tuple, attempt: int, expected: float) -> None:
    assert RunOptions(retries=9, retry_delays_s=delays).delay_before(attempt + 1) == expected


@pytest.mark.parametrize(
    ("n", "kw", "size"),
    [
        (16, {"workers": 2}, 1),  # a small local batch: one item per task run
        (17, {"workers": 2}, 2),  # larger: grouped, about eight tasks per worker
        (2000, {"workers": 2}, 50),  # at most 50 a task locally (the local server's CPU per task run)
        (800, {"workers": 2}, 50),
        (2000, {"workers": 2, "fail_fast": True}, 1),
        (2000, {"workers": 2, "dask_address": "tcp://h:1"}, 20),  # Dask: amortise submission, at most 20
        (40, {"workers": 2, "dask_address": "tcp://h:1"}, 5),  # about four tasks per worker
        (3, {"workers": 8, "dask_address": "tcp://h:1"}, 1),
        (2000, {"workers": 2, "dask_address": "tcp://h:1", "fail_fast": True}, 1),
        (2000, {"workers": 2, "items_per_task": 7}, 7),
        (2000, {"workers": 2, "items_per_task": 7, "fail_fast": True}, 1),
    ],
)
def test_chunk_size(n: int, kw: dict, size: int) -> None:
    assert chunk_size(n, RunOptions(**kw)) == size


def test_chunks_keep_order_and_cover_everything() -> None:
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks([], 3) == []
    assert chunks([1, 2], 0) == [[1], [2]]


def test_split_finished_reads_records_unless_forced() -> None:
    items = [Item("a"), Item("b"), Item("c")]
    done = {"key-b": ItemResult("b", Status.SUCCESS, cached=True)}
    finished, pending = batchcore.split_finished(items, lambda it: f"key-{it.id}", done.get)
    assert list(finished) == ["b"] and [(it.id, k) for it, k in pending] == [("a", "key-a"), ("c", "key-c")]
    finished, pending = batchcore.split_finished(items, lambda it: f"key-{it.id}", done.get, force=True)
    assert finished == {} and len(pending) == 3


def test_summarize_counts_failures_resumed_and_time_of_items_that_ran() -> None:
    results = [
        ItemResult("a", Status.SUCCESS, duration_s=2.0),
        ItemResult("b", Status.SUCCESS, duration_s=50.0, cached=True),
        ItemResult("c", Status.ERROR, duration_s=4.0),
        ItemResult("d", Status.INTERRUPTED, duration_s=3.0),
        ItemResult("e", Status.NOT_RUN),
    ]
    s = summarize(results, pipeline="p", wall_time_s=9.0)
    assert s.counts == {"success": 2, "error": 1, "not_run": 1, "interrupted": 1}
    assert (s.total, s.failed, s.resumed, s.failed_items) == (5, 2, 1, ["c", "d"])
    assert (s.total_time_s, s.mean_time_s, s.ok) == (9.0, 3.0, False)
    assert failure_message(results) == "2 of 5 items failed: c, d"
    assert failure_message(results[:2]) == ""


def test_stop_kills_the_running_item_and_starts_no_other(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    items = [
        Item("hung", params={"pid_file": str(pid_file), "with_grandchild": True}),
        Item("next", params={"pid_file": str(tmp_path / "p2")}),
    ]
    out: list[list[ItemResult]] = []
    worker = Worker("python", "tests.spine.workers:sleep_forever")
    th = threading.Thread(
        target=lambda: out.append(
            run_many(
                [(it, it.id) for it in items],
                worker,
                records=DictRecords(),
                options=RunOptions(timeout_s=600, **FAST_RETRY),
            )
        )
    )
    th.start()
    assert wait_until(pid_file.exists, timeout=30)
    time.sleep(0.2)
    t0 = time.monotonic()
    request_stop()
    th.join(timeout=30)
    assert not th.is_alive() and time.monotonic() - t0 < 5
    assert stop_requested()
    ((hung, nxt),) = out
    assert hung.status is Status.INTERRUPTED and hung.attempt == 1
    assert nxt.status is Status.NOT_RUN and "interrupted" in nxt.reason
    pids = [int(p) for p in pid_file.read_text().split()]
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout=5)
    assert not (tmp_path / "p2").exists()
    assert not Status.INTERRUPTED.ok and Status.INTERRUPTED.failed


def test_pure_modules_do_not_import_prefect() -> None:
    import subprocess
    import sys

    code = (
        "import sys, salvo.batchcore, salvo.runner, salvo.zygote; "
        "print(any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd(), check=True
    ).stdout
    assert out.strip() == "False"
