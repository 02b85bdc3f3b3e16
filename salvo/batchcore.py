"""The body of a batch, without Prefect: which items to run, how each runs, when it is retried.

`tasks/items.py` and `flows/batch.py` wrap these functions; everything here is plain Python,
and every run setting comes in one :class:`salvo.options.RunOptions`, as the flow was given it
so it is tested directly (see ``tests/spine/test_batchcore.py``). Resume records reach this module
only through a :class:`Records` object (``salvo.spine.records.RecordStore`` in production, a dict in tests).

The retry rules (the README's table), applied item by item:

- only outcomes that may pass on another try are retried: ``crashed``, ``exception``, and
  ``error`` with an ordinary exit code;
- never retried: ``success``, ``skipped``, ``silent_failure``, ``timeout``, ``interrupted``,
  bad input (exit 65 / ``InputError``) and a worker that cannot run here (exit 78 / a Python
  worker's ``ImportError``);
- retrying one item never runs another item again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, TypeVar

from salvo import listeners
from salvo.fsutil import PartialScan, disk_full_reason, remove_partial
from salvo.index import RecordWriteError
from salvo.items import Item, Worker
from salvo.options import RunOptions, cpu_workers
from salvo.outcome import ItemResult, Status
from salvo.runner import run_item, stop_requested, wait_unless_stopped

#: Most items one task carries on a Dask cluster: enough to amortise ~86 ms of Dask submission,
#: few enough to balance. Local runs carry one item per task (about 5 ms each on threads).
MAX_ITEMS_PER_TASK = 20
#: Most items one task carries in a large local batch: each task run costs the local Prefect server
#: CPU that competes with the items on a small machine (2,000 tiny items on 2 cores: 50 a task run
#: took 16.6 s against 19.0 s with 20, and 100 gained only 0.4 s more; benchmarks/PROFILE.md).
MAX_LOCAL_ITEMS_PER_TASK = 50
#: A local batch of up to this many items per worker runs one item per task run; a larger one groups them.
LOCAL_TASKS_PER_WORKER = 8

T = TypeVar("T")


class Records(Protocol):
    """Where finished items are recorded for resume."""

    def lock(self, key: str) -> AbstractContextManager[object]:
        """An exclusive per-item lock held while the item is decided and run."""

    def read(self, key: str) -> ItemResult | None:
        """The trusted finished result under ``key``, or None."""

    def write(self, key: str, result: ItemResult) -> None:
        """Record a finished (success or skipped) result."""


def should_retry(result: ItemResult, attempt: int, retries: int) -> bool:
    """Whether try number ``attempt`` (from 1) that gave ``result`` is followed by another."""
    return result.retryable and attempt <= retries and not stop_requested()


def log_path(log_dir: str | None, item_id: str) -> str | None:
    """The item's log file under ``log_dir`` (a safe file name), or None."""
    if not log_dir:
        return None
    return str(Path(log_dir) / (re.sub(r"[^A-Za-z0-9._-]+", "_", item_id) + ".log"))


def clean_partials(item: Item, seen: PartialScan | None = None) -> None:
    """Remove what a killed or failed run of ``item`` left half-written (local outputs only).

    ``seen``: the output folders as listed at the start of this group of items (see `run_many`).
    """
    for out in item.outputs:
        if "://" not in out:
            remove_partial(out, seen=seen)


RunFn = Callable[..., ItemResult]
RetryNote = Callable[[ItemResult, int, float], None]


def _announce_finish(item: Item, result: ItemResult) -> None:
    """Tell the listeners of this context (`salvo.listeners`) that ``item`` ended and was recorded."""
    listeners.announce(listeners.current().item_finished, item, result)


def _announce_start(item_id: str) -> None:
    """Tell the listeners of this context (`salvo.listeners`) that ``item_id`` starts running here."""
    listeners.announce(listeners.current().item_started, item_id)


def run_one(
    item: Item,
    key: str,
    worker: Worker,
    *,
    records: Records,
    options: RunOptions,
    log_dir: str | None = None,
    batch_id: str = "",
    run: RunFn = run_item,
    on_retry: RetryNote | None = None,
    partials: PartialScan | None = None,
) -> ItemResult:
    """Decide and run one item under its lock: reuse its record, or run it (retrying by the rules).

    ``options`` gives the item's timeout, its retries and their delays, and ``force``: with
    ``force``, only records of this same batch are reused; otherwise any trusted record is.
    A finished (success/skipped) result is recorded; a failed one never is, and its partial
    outputs are removed. ``on_retry(result, next_attempt, delay)`` is told before each retry.
    ``partials``: folder listings taken earlier in this group, for the first try's clean-up; not
    used for an item taken over from a run that died (it may have left a partial since).
    """
    result = None
    try:
        with records.lock(key) as held:  # another batch running this item makes us wait, then reuse
            result = records.read(key)
            if result is not None and options.force and result.batch_id != batch_id:
                result = None
            if result is None:
                seen = None if getattr(held, "took_over", None) else partials
                result = _run_with_retries(
                    item, worker, options=options, log_dir=log_dir, run=run, on_retry=on_retry, partials=seen
                )
                result.batch_id = batch_id
                if result.status.ok:
                    records.write(key, result)
    except OSError as exc:  # the records' disk is full (claim or record): the item's one line, no traceback
        why = disk_full_reason(exc)
        if why is None:
            raise
        if isinstance(exc, RecordWriteError):
            why = exc.strerror or why  # a record that could not be written: the message says where it was kept
        elif result is not None and result.status.ok:
            why = f"{why}; its outputs are kept, the next run records it"
        result = result or ItemResult(item.id, Status.ERROR)
        result.status, result.reason, result.batch_id, result.cached = Status.ERROR, why, batch_id, False
    if result.status.failed:
        clean_partials(item)
    _announce_finish(item, result)
    return result


def _run_with_retries(
    item: Item,
    worker: Worker,
    *,
    options: RunOptions,
    log_dir: str | None,
    run: RunFn,
    on_retry: RetryNote | None,
    partials: PartialScan | None = None,
) -> ItemResult:
    attempt = 1
    attempts: list[dict[str, object]] = []  # every try's figures, kept on the last one's result (the trace)
    while True:
        # Left by a run that was killed mid-item (listed once per group), or by the failed try (listed afresh).
        clean_partials(item, partials if attempt == 1 else None)
        _announce_start(item.id)
        result = run(
            item,
            worker,
            timeout_s=options.timeout_s,
            attempt=attempt,
            log_path=log_path(log_dir, item.id),
            kill_grace_s=options.kill_grace_s,
        )
        attempts.append(result.figures())
        result.attempts = attempts
        if not should_retry(result, attempt, options.retries):
            return result
        pause = options.delay_before(attempt + 1)
        if on_retry is not None:
            on_retry(result, attempt + 1, pause)
        if not wait_unless_stopped(pause):
            return result
        attempt += 1


def run_many(pairs: Iterable[tuple[Item, str]], worker: Worker, **kwargs: object) -> list[ItemResult]:
    """:func:`run_one` for each (item, key), in order; once the batch is stopped, the rest are ``not_run``.

    The output folders are listed for partial outputs once for the whole group, not once per item.
    """
    kwargs.setdefault("partials", PartialScan())
    results = []
    for item, key in pairs:
        if stop_requested():
            results.append(ItemResult(item.id, Status.NOT_RUN, reason="not started: the batch was interrupted"))
            continue
        results.append(run_one(item, key, worker, **kwargs))  # type: ignore[arg-type]
    return results


def split_finished(
    items: Iterable[Item],
    key_of: Callable[[Item], str],
    read: Callable[[str], ItemResult | None],
    *,
    force: bool = False,
) -> tuple[dict[str, ItemResult], list[tuple[Item, str]]]:
    """Results of the items an earlier run finished (by id), and the others with their keys."""
    finished: dict[str, ItemResult] = {}
    pending = []
    for it in items:
        key = key_of(it)
        done = None if force else read(key)
        if done is not None:
            finished[it.id] = done
        else:
            pending.append((it, key))
    return finished, pending


def workers(options: RunOptions) -> int:
    """Items in flight at once: ``options.workers``; on a Dask cluster at least one per CPU here; on
    SLURM one per core of the most jobs it may hold."""
    if options.workers == 1 and options.slurm is not None:
        return options.slurm.max_jobs * options.slurm.cores
    if options.dask_address and options.workers == 1:
        return cpu_workers()
    return options.workers


def chunk_size(n_pending: int, options: RunOptions) -> int:
    """Items one task carries.

    Locally, one per task while the batch is small (up to :data:`LOCAL_TASKS_PER_WORKER` tasks a
    worker), so that each item is its own task run; a larger batch groups items, at most
    :data:`MAX_LOCAL_ITEMS_PER_TASK` a task, because a task run costs Prefect about 90 ms of CPU (client
    and server) against a few ms for a tiny item (benchmarks/PROFILE.md); a failed item still gets
    a failed task run of its own (``tasks.items.item_outcome``). On a Dask cluster, enough to
    amortise Dask's submission cost: about four tasks per worker, at most :data:`MAX_ITEMS_PER_TASK`.
    ``fail_fast`` always gives 1, so that nothing queued runs after a failure. An explicit
    ``items_per_task`` wins otherwise.
    """
    if options.fail_fast:
        return 1
    if options.items_per_task:
        return max(1, options.items_per_task)
    per_worker, most = (
        (4, MAX_ITEMS_PER_TASK) if options.on_cluster else (LOCAL_TASKS_PER_WORKER, MAX_LOCAL_ITEMS_PER_TASK)
    )
    return max(1, min(most, math.ceil(n_pending / (per_worker * workers(options)))))


def chunks(seq: Sequence[T], size: int) -> list[list[T]]:
    """``seq`` cut into consecutive lists of ``size`` (the last may be shorter)."""
    size = max(1, size)
    return [list(seq[i : i + size]) for i in range(0, len(seq), size)]


def unfinished(item_id: str, *, interrupted: bool, fail_fast: bool) -> ItemResult:
    """The result of an item the batch never started."""
    why = (
        "the batch was interrupted"
        if interrupted
        else "the batch stopped at the first failure"
        if fail_fast
        else "the batch ended early"
    )
    return ItemResult(item_id, Status.NOT_RUN, reason=f"not started: {why}")


def failure_message(results: Sequence[ItemResult], *, limit: int = 10) -> str:
    """``"2 of 5 items failed: a, b"`` for the failed items of ``results`` (empty if none failed)."""
    failed = [r.item_id for r in results if r.status.failed]
    if not failed:
        return ""
    names = ", ".join(failed[:limit]) + (" ..." if len(failed) > limit else "")
    return f"{len(failed)} of {len(results)} items failed: {names}"
