"""Run a batch of items inside a flow: resume, group into tasks, run in parallel, report."""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from salvo.fingerprint import item_key
from salvo.items import Item, Worker
from salvo.outcome import ItemResult, Status
from salvo.report import Summary, summarize, summary_markdown, table_rows, write_reports
from salvo.runner import DEFAULT_TIMEOUT_S
from tasks.items import run_items
from tasks.records import StateLocation, read_record, record_store

#: Most items one task carries: enough to amortise ~86 ms of Dask submission, few enough to balance.
MAX_ITEMS_PER_TASK = 20


@dataclass
class BatchOptions:
    """How to run a batch; `settings` is hashed into every item's resume key."""

    state: StateLocation
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    max_workers: int | None = None
    parallel: bool = False
    dask_address: str | None = None
    retries: int = 2
    retry_delays: Sequence[float] = (2.0, 10.0)
    force: bool = False
    fail_fast: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    log_dir: str | None = None
    items_per_task: int | None = None
    on_result: Callable[[ItemResult], None] | None = None


@dataclass
class BatchOutcome:
    """Every item's result, in input order, and their summary."""

    results: list[ItemResult]
    summary: Summary


def _task_runner(opts: BatchOptions) -> Any:
    workers = opts.max_workers or os.cpu_count() or 1
    if opts.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=opts.dask_address)
    if opts.parallel:
        from prefect_dask import DaskTaskRunner

        # Threads are enough: every item already runs in its own child process, and threads
        # share this process's Prefect API instead of starting one each (see PREFECT_NOTES).
        return DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": workers, "processes": False, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=1)


def _workers(opts: BatchOptions) -> int:
    return (opts.max_workers or os.cpu_count() or 1) if (opts.parallel or opts.dask_address) else 1


def _chunks(pending: list[tuple[Item, str]], opts: BatchOptions) -> list[list[tuple[Item, str]]]:
    workers = _workers(opts)
    if opts.fail_fast:
        size = 1  # stop as soon as one item fails
    elif opts.items_per_task:
        size = opts.items_per_task
    else:
        size = max(1, min(MAX_ITEMS_PER_TASK, math.ceil(len(pending) / (4 * workers))))
    return [pending[i : i + size] for i in range(0, len(pending), size)]


class _Progress:
    """A progress artifact, updated at most once a second."""

    def __init__(self, pipeline: str, total: int) -> None:
        self.total, self.done, self.last = total, 0, 0.0
        self.id = create_progress_artifact(0.0, key=f"{pipeline}-progress", description=f"{pipeline}: items finished")

    def advance(self, n: int, *, final: bool = False) -> None:
        self.done += n
        if final or time.monotonic() - self.last > 1.0:
            update_progress_artifact(self.id, 100.0 * self.done / max(1, self.total))
            self.last = time.monotonic()


_progress_hook: Callable[[ItemResult], None] | None = None


def set_progress_hook(hook: Callable[[ItemResult], None] | None) -> None:
    """A callback for every finished item of every batch in this process (the CLI's progress bar)."""
    global _progress_hook
    _progress_hook = hook


def split_finished(items: Sequence[Item], worker: Worker, *, options: BatchOptions) -> tuple[dict[str, ItemResult], list[tuple[Item, str]]]:
    """Results of the items an earlier run finished (by id), and the others with their keys.

    Needs no flow run and no API: only the records, so a caller can learn that nothing is left.
    """
    store = record_store(options.state)
    finished: dict[str, ItemResult] = {}
    pending = []
    for it in items:
        key = item_key(it, worker=worker, settings=options.settings)
        done = None if options.force else read_record(store, key)
        if done is not None:
            finished[it.id] = done
        else:
            pending.append((it, key))
    return finished, pending


def run_batch(items: Sequence[Item], worker: Worker, *, pipeline: str, options: BatchOptions, settled: Sequence[ItemResult] = ()) -> BatchOutcome:
    """Run every item not already finished; return all results in input order.

    ``settled`` holds results decided before running (for example "output exists"); those items
    are not run.
    """
    logger = get_run_logger()
    t0, batch_id = time.monotonic(), uuid.uuid4().hex
    on_result = options.on_result or _progress_hook
    if on_result is not None and hasattr(on_result, "start"):
        on_result.start(len(items))
    by_id: dict[str, ItemResult] = {r.item_id: r for r in settled}
    finished, pending = split_finished([it for it in items if it.id not in by_id], worker, options=options)
    by_id.update(finished)
    logger.info("%s: %d items, %d already settled, %d to run", pipeline, len(items), len(by_id), len(pending))
    progress = _Progress(pipeline, len(items))
    progress.advance(len(by_id))
    for r in by_id.values():
        if on_result:
            on_result(r)
    chunks = _chunks(pending, options)
    task = run_items.with_options(retries=options.retries, retry_delay_seconds=list(options.retry_delays) or 0)
    stop = False
    with _task_runner(options) as runner:
        futures: dict[Any, list[tuple[Item, str]]] = {}
        queue = list(reversed(chunks))
        window = _workers(options) if options.fail_fast else len(chunks)  # fail fast: nothing queued past the running items
        while queue or futures:
            while queue and not stop and len(futures) < window:
                chunk = queue.pop()
                params = {"items": [c[0] for c in chunk], "keys": [c[1] for c in chunk], "worker": worker,
                          "state": options.state, "timeout_s": options.timeout_s, "log_dir": options.log_dir,
                          "batch_id": batch_id, "force": options.force}
                futures[runner.submit(task, params)] = chunk
            if not futures:
                break
            for fut in as_completed(list(futures)):
                chunk = futures.pop(fut)
                for r in _chunk_results(fut, chunk):
                    if r.cached and r.batch_id == batch_id:
                        r.cached = False  # written by an earlier attempt of this same batch
                    by_id[r.item_id] = r
                    stop = stop or (options.fail_fast and r.status.failed)
                    if on_result:
                        on_result(r)
                progress.advance(len(chunk))
                if options.fail_fast:
                    break  # decide about the next item before submitting it
    results = [by_id.get(it.id) or ItemResult(it.id, Status.NOT_RUN, reason="not started: the batch stopped at the first failure") for it in items]
    progress.advance(0, final=True)
    summary = summarize(results, pipeline=pipeline, wall_time_s=time.monotonic() - t0)
    return BatchOutcome(results=results, summary=summary)


def _chunk_results(future: Any, chunk: list[tuple[Item, str]]) -> list[ItemResult]:
    """A task's results; a task that itself failed turns into `exception` for each of its items."""
    try:
        return list(future.result())
    except Exception as exc:  # the task crashed outside run_item (worker death, cancellation)
        return [ItemResult(it.id, Status.EXCEPTION, reason=f"{type(exc).__name__}: {exc}") for it, _ in chunk]


def publish_artifacts(outcome: BatchOutcome, *, pipeline: str, reports: dict[str, str] | None = None) -> None:
    """The table of items and the markdown summary, in the Prefect UI."""
    create_table_artifact(table_rows(outcome.results), key=f"{pipeline}-items", description=f"{pipeline}: every item and its status")
    create_markdown_artifact(summary_markdown(outcome.summary, reports=reports), key=f"{pipeline}-summary", description=f"{pipeline}: summary")


def finish_batch(outcome: BatchOutcome, *, pipeline: str, report_dir: str | os.PathLike[str], title: str, extra_reports: dict[str, str] | None = None, fail_on_error: bool = True, artifacts: bool = True) -> dict[str, Any]:
    """Write the reports, publish the artifacts, and end the flow run Failed if any item failed."""
    reports = {**write_reports(outcome.results, outcome.summary, folder=report_dir, title=title), **(extra_reports or {})}
    if artifacts:
        publish_artifacts(outcome, pipeline=pipeline, reports=reports)
    doc = {"summary": outcome.summary.to_dict(), "items": [r.to_dict() for r in outcome.results], "reports": reports}
    if fail_on_error and not outcome.summary.ok:
        raise BatchFailed(doc)
    return doc


def run_namer(pipeline: str, *params: str) -> Callable[[], str]:
    """A flow_run_name function: the pipeline, the first given parameter's last path part, the time."""

    def name() -> str:
        from prefect.runtime import flow_run

        values = [flow_run.parameters.get(p) for p in params]
        where = next((str(v) for v in values if v), "")
        label = os.path.basename(os.path.normpath(os.path.abspath(where))) if where else ""
        return "-".join(x for x in (pipeline, label, time.strftime("%Y%m%d-%H%M%S")) if x)

    return name


def tag_current_run(*tags: str) -> None:
    """Add tags to the running flow run, so the UI can filter runs by pipeline."""
    from prefect import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(ctx.flow_run.id, tags=sorted(set(ctx.flow_run.tags) | set(tags)))


class BatchFailed(RuntimeError):
    """Raised by a pipeline flow after its reports are written, so that the flow run ends Failed."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        s = doc["summary"]
        names = ", ".join(s["failed_items"][:10]) + (" ..." if len(s["failed_items"]) > 10 else "")
        super().__init__(f"{s['failed']} of {s['total']} items failed: {names}")

    @property
    def summary(self) -> dict[str, Any]:
        """The same document the flow returns when nothing failed."""
        return self.doc

    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchFailed, (self.doc,))
