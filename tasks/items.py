"""The one Prefect task every pipeline runs its items with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from salvo.fsutil import remove_partial
from salvo.items import Item, Worker
from salvo.outcome import ItemResult
from salvo.runner import run_item
from tasks.records import StateLocation, item_lock, read_record, record_store, write_record


class RetryableItemsFailed(RuntimeError):
    """Some items of this task ended in an outcome that may pass; Prefect retries the task."""


def _retry_only_retryable(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except RetryableItemsFailed:
        return True
    except BaseException:  # anything else is a bug or a cancellation: not retried
        return False
    return False


def chunk_name(parameters: dict[str, Any]) -> str:
    """Name a task run after its item (or first item and how many more)."""
    items = parameters["items"]
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    return f"{items[0].id}{more}"


def _log_path(log_dir: str | None, item_id: str) -> str | None:
    if not log_dir:
        return None
    return str(Path(log_dir) / (re.sub(r"[^A-Za-z0-9._-]+", "_", item_id) + ".log"))


def _clean_partials(item: Item) -> None:
    for out in item.outputs:
        if "://" not in out:
            remove_partial(out)


def _attempt() -> tuple[int, int]:
    ctx = TaskRunContext.get()
    if ctx is None:  # called as .fn() outside a run
        return 1, 0
    return ctx.task_run.run_count, ctx.task.retries


@task(task_run_name=chunk_name, cache_policy=NONE, persist_result=False, retry_condition_fn=_retry_only_retryable)
def run_items(
    items: list[Item],
    keys: list[str],
    worker: Worker,
    state: StateLocation,
    timeout_s: float | None,
    log_dir: str | None = None,
    batch_id: str = "",
    force: bool = False,
) -> list[ItemResult]:
    """Run items one after another, each in its own child process, recording finished ones.

    With ``force``, only records of this same batch are reused (a retry keeps what the first
    attempt finished); otherwise any record is.
    """
    logger = get_run_logger()
    store = record_store(state)
    attempt, retries = _attempt()
    results = []
    for item, key in zip(items, keys):
        with item_lock(store, key):  # another batch running this item makes us wait, then reuse
            result = read_record(store, key)
            if result is not None and force and result.batch_id != batch_id:
                result = None
            if result is None:
                _clean_partials(item)  # left by a run that was killed mid-item
                result = run_item(item, worker, timeout_s=timeout_s, attempt=attempt, log_path=_log_path(log_dir, item.id))
                result.batch_id = batch_id
                if result.status.ok:
                    write_record(store, key, result)
        if result.status.failed:
            _clean_partials(item)
            tail = f"\n{result.stderr_tail}" if result.stderr_tail else ""
            logger.error("%s: %s: %s%s", item.id, result.status.value, result.reason, tail)
        results.append(result)
    pending_retry = [r.item_id for r in results if r.retryable]
    if pending_retry and attempt <= retries:
        raise RetryableItemsFailed(f"{len(pending_retry)} item(s) may pass on retry: {', '.join(pending_retry[:5])}")
    return results
