"""The one Prefect task every pipeline runs its items with."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from contextlib import AbstractContextManager
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger
from prefect.states import Cancelled, Completed, Failed, State
from prefect.utilities.annotations import quote

from salvo.batchcore import failure_message, run_many
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.outcome import ItemResult
from salvo.spine.records import StateLocation, item_lock, read_record, write_record
from tasks.state import record_store


class _NoEmptyExcInfo(logging.Filter):
    """Prefect logs a task run that returned a Failed state with ``exc_info=True`` and no exception,
    which prints a stray ``NoneType: None``; a failed item is an expected outcome, not a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


logging.getLogger("prefect.task_runs").addFilter(_NoEmptyExcInfo())


def chunk_name(parameters: dict[str, Any]) -> str:
    """Name a task run after its item (or first item and how many more)."""
    items = parameters["items"]
    items = items.unwrap() if isinstance(items, quote) else items  # as submitted, before Prefect unwraps it
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    return f"{items[0].id}{more}"


class ItemResults(list):
    """A task's results; short in Prefect's log lines, which print the state with its data."""

    def __repr__(self) -> str:
        return "[" + ", ".join(f"{r.item_id}: {r.status.value}" for r in self) + "]"


class PrefectRecords:
    """The batch's resume records (``salvo.spine.records``), as :mod:`salvo.batchcore` uses them."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def lock(self, key: str) -> AbstractContextManager[object]:
        return item_lock(self.store, key)

    def read(self, key: str) -> ItemResult | None:
        return read_record(self.store, key)

    def write(self, key: str, result: ItemResult) -> None:
        write_record(self.store, key, result)


_stores: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_stores_lock = threading.Lock()


def _batch_store(state: StateLocation, batch_id: str) -> Any:
    """One record store per batch and state location in this process.

    Opening a store loads its index (tens of ms for a few hundred records); with one task run per
    item, opening it per task would make a batch quadratic. A held claim keeps reads fresh.
    """
    if not batch_id or not isinstance(state, (str, os.PathLike)):
        return record_store(state)
    key = (batch_id, os.fspath(state))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = record_store(state)
            while len(_stores) > 8:
                _stores.popitem(last=False)
        return store


@task(task_run_name=chunk_name, cache_policy=NONE, persist_result=False, retries=0)
def run_items(
    items: list[Item],
    keys: list[str],
    worker: Worker,
    state: StateLocation,
    run: RunOptions,
    log_dir: str | None = None,
    batch_id: str = "",
) -> State:
    """Run items one after another, each in its own child process, recording finished ones.

    ``run`` is the batch's run settings as the flow was given them (timeout, retries, force).

    Each item is retried on its own, by the rules of :mod:`salvo.batchcore` (Prefect's task
    retries would run every item of the task again). Its state is :func:`task_state`: Completed
    only when every item it carries succeeded. Either way the state's data is the list of results.
    """
    logger = get_run_logger()

    def note_retry(result: ItemResult, attempt: int, delay: float) -> None:
        logger.warning(
            "%s: %s: %s; retry %d of %d in %g s",
            result.item_id,
            result.status.value,
            result.reason,
            attempt - 1,
            run.retries,
            delay,
        )

    results = ItemResults(
        run_many(
            zip(items, keys),
            worker,
            records=PrefectRecords(_batch_store(state, batch_id)),
            options=run,
            log_dir=log_dir,
            batch_id=batch_id,
            on_retry=note_retry,
        )
    )
    for r in results:
        if r.status.failed:
            tail = f"\n{r.stderr_tail}" if r.stderr_tail else ""
            logger.error("%s: %s: %s%s", r.item_id, r.status.value, r.reason, tail)
    return task_state(results)


def task_state(results: list[ItemResult]) -> State:
    """The state of a task run carrying ``results``: green only when every item in it succeeded.

    ``Completed`` when each item is ``success`` or ``skipped``; ``Failed`` naming the failed items
    when one failed or was interrupted (a group's failed items also get a failed task run of their
    own, named after them, :func:`item_outcome`); ``Cancelled`` when nothing failed but an item
    never ran (Ctrl-C, a fail-fast stop). The data is the list of results either way.
    """
    message = failure_message(results)
    not_run = [r.item_id for r in results if r.status.value == "not_run"]
    if not message and not not_run:
        ids = ", ".join(r.item_id for r in results)
        text = f"{len(results)} items succeeded: {ids}"[:500] if len(results) > 1 else None
        return Completed(message=text, data=results)
    more = " ..." if len(not_run) > 10 else ""
    cut = f"{len(not_run)} not run: " + ", ".join(not_run[:10]) + more if not_run else ""
    if len(results) == 1 and message:
        r = results[0]
        return Failed(message=f"{r.item_id}: {r.status.value}: {r.reason}"[:500], data=results)
    # A group that is not green: each of its items that ran gets a task run of its own, named after it,
    # red for a failure and green for a success, so that the items under green task runs are exactly
    # the items that succeeded (the group itself is red or cancelled).
    for r in results:
        if r.status.failed or r.status.ok:
            item_outcome(r, return_state=True)
    if not message:
        return Cancelled(message=f"interrupted: {cut}"[:500], data=results)
    return Failed(message="; ".join(x for x in (message, cut) if x)[:500], data=results)


def _outcome_name(parameters: dict[str, Any]) -> str:
    return parameters["result"].item_id


@task(task_run_name=_outcome_name, cache_policy=NONE, persist_result=False, retries=0)
def item_outcome(result: ItemResult) -> State:
    """The outcome of an item that ran inside a task carrying several that is not green: it runs
    nothing, it shows the item as a task run of its own, Completed for a success, Failed with its
    reason for a failure."""
    if result.status.ok:
        return Completed(message=f"{result.item_id}: {result.status.value}"[:500], data=ItemResults([result]))
    return Failed(message=f"{result.item_id}: {result.status.value}: {result.reason}"[:500], data=ItemResults([result]))
