"""run_batch in a real flow against the session's Prefect API: one task run per item, its own state,
per-item retries counted by invocation markers, and a failed batch that ends without a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from flows.batch import BatchFailed, BatchOptions, batch_state, finish_batch, run_batch
from salvo.items import Item, Worker
from salvo.options import RunOptions
from tests.helpers import markers, wait_until

COUNTED = Worker("python", "tests.spine.workers:counted")


def _run(**given: Any) -> RunOptions:
    """Two workers, no pause between retries, 30 s per item unless given."""
    return RunOptions(**{"timeout_s": 30.0, "workers": 2, "retry_delays_s": (0.0,), **given})


@flow(name="spine-test")
def spine_flow(items: list[Item], state: str, report_dir: str, run: RunOptions | None = None) -> Any:
    options = BatchOptions(state=state, run=run or _run(), settings={"pipeline": "spine-test"})
    outcome = run_batch(items, COUNTED, pipeline="spine-test", options=options)
    return batch_state(finish_batch(outcome, pipeline="spine-test", report_dir=report_dir, title="spine test"))


def _items(tmp_path: Path, spec: dict[str, str]) -> list[Item]:
    calls, out = str(tmp_path / "calls"), str(tmp_path / "out")
    items = []
    for name, behaviour in spec.items():
        params: dict[str, Any] = {"counter_dir": calls, "name": name, "behaviour": behaviour}
        if behaviour == "write_output":
            params["out_dir"] = out
        items.append(Item(name, params=params))
    return items


async def _read(flow_run_id: Any) -> tuple[Any, list[Any], list[Any]]:
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        tasks = await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        return run, tasks, logs


def test_each_item_is_its_own_task_run_and_failures_end_without_traceback(tmp_path: Path) -> None:
    spec = {"ok_a": "write_output", "crash": "segfault", "corrupt": "bad_input", "hung": "hang", "ok_b": "write_output"}
    state = spine_flow(
        _items(tmp_path, spec),
        str(tmp_path / "state"),
        str(tmp_path / "reports"),
        run=_run(timeout_s=1.5),
        return_state=True,
    )
    assert state.is_failed()
    assert state.message.startswith("3 of 5 items failed: crash, corrupt, hung; report: ")
    assert state.message.endswith("run_report.html")
    asyncio.run(APILogHandler.aflush())
    run, tasks, logs = asyncio.run(_read(state.state_details.flow_run_id))
    assert run.state.is_failed() and run.state.message == state.message
    by_name = {t.name: t.state.type.value for t in tasks}
    assert by_name == {
        "ok_a": "COMPLETED",
        "ok_b": "COMPLETED",
        "crash": "FAILED",
        "corrupt": "FAILED",
        "hung": "FAILED",
    }
    failed_msgs = {t.name: t.state.message for t in tasks if t.state.is_failed()}
    assert failed_msgs["hung"].startswith("hung: timeout:") and failed_msgs["corrupt"].startswith(
        "corrupt: error: bad input"
    )
    # Retries follow the rules item by item: only the crash ran again, nothing else did.
    counts = {name: len(markers(tmp_path / "calls", name)) for name in spec}
    assert counts == {"ok_a": 1, "crash": 3, "corrupt": 1, "hung": 1, "ok_b": 1}
    text = "\n".join(log.message for log in logs)
    assert "crash: crashed" in text and "retry 1 of 2" in text
    assert "Traceback" not in text and "BatchFailed" not in text and "unexpected exception" not in text
    doc = state.result(raise_on_failure=False).summary
    assert doc["summary"]["failed"] == 3 and Path(doc["reports"]["text"]).exists()


def test_resumed_items_are_counted_not_run_and_the_direct_call_raises_batch_failed(tmp_path: Path) -> None:
    spec = {"ok": "write_output", "bad": "bad_input"}
    items, st, rep = _items(tmp_path, spec), str(tmp_path / "state"), str(tmp_path / "reports")
    with pytest.raises(BatchFailed) as info:
        spine_flow(items, st, rep)
    assert info.value.summary["summary"]["failed_items"] == ["bad"]
    state = spine_flow(items, st, rep, return_state=True)
    doc = state.result(raise_on_failure=False).summary
    assert doc["summary"]["resumed"] == 1
    _, tasks, _ = asyncio.run(_read(state.state_details.flow_run_id))
    assert [t.name for t in tasks] == ["bad"]  # the resumed item is no task run, only counted
    assert {n: len(markers(tmp_path / "calls", n)) for n in spec} == {"ok": 1, "bad": 2}


def test_a_failed_item_of_a_grouped_task_is_a_failed_task_run_of_its_own(tmp_path: Path) -> None:
    spec = {"a": "write_output", "b": "fail", "c": "write_output", "d": "write_output"}
    state = spine_flow(
        _items(tmp_path, spec),
        str(tmp_path / "state"),
        str(tmp_path / "reports"),
        run=_run(retries=1, items_per_task=2),
        return_state=True,
    )
    assert state.is_failed() and state.message.startswith("1 of 4 items failed: b; report: ")
    _, tasks, _ = asyncio.run(_read(state.state_details.flow_run_id))
    # No green task run holds a failure: the group that carried b is red and names it, b has a red run of its own,
    # and a, which succeeded in that red group, a green run of its own.
    assert {t.name: t.state.type.value for t in tasks} == {
        "a (+1 more)": "FAILED",
        "a": "COMPLETED",
        "b": "FAILED",
        "c (+1 more)": "COMPLETED",
    }
    (b,) = [t for t in tasks if t.name == "b"]
    assert b.state.message.startswith("b: error:")
    (group,) = [t for t in tasks if t.name == "a (+1 more)"]
    assert group.state.message == "1 of 2 items failed: b"
    (green,) = [t for t in tasks if t.state.is_completed() and t.name != "a"]
    assert green.state.message == "2 items succeeded: c, d"
    assert {n: len(markers(tmp_path / "calls", n)) for n in spec} == {"a": 1, "b": 2, "c": 1, "d": 1}


def test_a_large_local_batch_groups_items_and_every_failed_item_is_its_own_task_run(tmp_path: Path) -> None:
    spec = {f"i{n:02d}": ("fail" if n in (7, 30) else "write_output") for n in range(40)}
    state = spine_flow(
        _items(tmp_path, spec),
        str(tmp_path / "state"),
        str(tmp_path / "reports"),
        run=_run(retries=0),
        return_state=True,
    )
    assert state.is_failed() and state.message.startswith("2 of 40 items failed: i07, i30; report: ")
    # Task runs reach the API as events, a moment after the flow returns: 14 groups, and a run of its own for
    # each of the 6 items of the two red groups (2 failed, 4 succeeded).
    own = ("i06", "i07", "i08", "i30", "i31", "i32")
    seen: list[Any] = []
    wait_until(
        lambda: (
            len(seen.__setitem__(slice(None), asyncio.run(_read(state.state_details.flow_run_id))[1]) or seen) >= 20
        ),
        timeout=60,
        interval=0.5,
    )
    tasks = seen
    groups = [t for t in tasks if t.name not in own]
    assert len(groups) == 14  # 40 items, 3 a task (about eight tasks per worker)
    assert sum(1 for t in groups if t.name.endswith("(+2 more)")) == 13
    # The two groups that carried a failure are red (naming it), as are the failures' own runs.
    assert sorted(t.name for t in tasks if not t.state.is_completed()) == [
        "i06 (+2 more)",
        "i07",
        "i30",
        "i30 (+2 more)",
    ]
    assert all(t.state.is_failed() for t in tasks if not t.state.is_completed())
    # The items the green runs carry (named in their messages) are exactly the successful ones: the groups'
    # and, for the successes of the red groups, their own green runs.
    carried = {
        i
        for t in groups
        if t.state.is_completed()
        for i in (t.state.message.split(": ", 1)[1].split(", ") if t.state.message else [t.name])
    }
    assert carried == set(spec) - set(own)
    assert {t.name for t in tasks if t.name in own and t.state.is_completed()} == {"i06", "i08", "i31", "i32"}
    assert all(len(markers(tmp_path / "calls", n)) == 1 for n in spec)


def test_a_clean_batch_completes_with_its_document(tmp_path: Path) -> None:
    state = spine_flow(
        _items(tmp_path, {"x": "write_output"}), str(tmp_path / "state"), str(tmp_path / "reports"), return_state=True
    )
    assert state.is_completed()
    assert state.result()["summary"]["ok"] is True


def test_batch_state() -> None:
    ok = {"summary": {"ok": True, "failed": 0, "total": 2, "failed_items": [], "counts": {"success": 2}}}
    assert batch_state(ok).is_completed() and batch_state(ok).data == ok
    bad = {
        "summary": {"ok": False, "failed": 1, "total": 2, "failed_items": ["b"], "counts": {"success": 1, "error": 1}}
    }
    s = batch_state(bad)
    assert s.is_failed() and s.message == "1 of 2 items failed: b" and s.data.summary is bad
    stopped = {
        "summary": {
            "ok": False,
            "failed": 1,
            "total": 2,
            "failed_items": ["b"],
            "counts": {"success": 1, "interrupted": 1},
        }
    }
    assert batch_state(stopped).is_cancelled() and batch_state(stopped).message.startswith("interrupted: ")


def test_a_batch_stopped_between_two_items_is_not_green() -> None:
    """Ctrl-C between two items: none failed, but some never started; the batch is not ok and not Completed."""
    from salvo.outcome import ItemResult, Status
    from salvo.report import summarize

    results = [
        ItemResult("a", Status.SUCCESS),
        ItemResult("b", Status.NOT_RUN, reason="not started: the batch was interrupted"),
    ]
    summary = summarize(results, pipeline="p")
    assert summary.failed == 0 and not summary.ok
    state = batch_state({"summary": summary.to_dict()})
    assert not state.is_completed()
