"""Run a batch of items inside a flow: resume, group into tasks, run in parallel, report."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from deployments.prefect_patches import NO_TELEMETRY, result_record_data, set_environment_defaults
from salvo import batchcore, listeners
from salvo.items import Item, Worker
from salvo.outcome import ItemResult, Status
from salvo.html_report import warm_up
from deployments.runs import run_name
from salvo.report import summarize, summary_markdown, table_rows
from salvo.options import RunOptions
from salvo.runner import request_stop, responsive_threads, stop_requested
from tasks.items import run_items
from flows.run_header import batch_document
from salvo.spine.settled import BatchOptions, BatchOutcome  # noqa: F401 - re-exported
from tasks.state import split_finished, stop_on_storage_loss

#: Most items one task carries on a Dask cluster (re-exported for callers of the old name).
MAX_ITEMS_PER_TASK = batchcore.MAX_ITEMS_PER_TASK


def _task_runner(run: RunOptions) -> Any:
    """Dask only for an existing cluster; local runs use threads (about 5 ms per task run).

    Every item already runs in its own child process, so threads are enough locally, and they
    share this process's Prefect API; a local Dask cluster would add ~86 ms per task, its log
    lines and a dashboard (see PREFECT_NOTES).
    """
    if run.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=run.dask_address)
    if run.slurm is not None:
        from prefect_dask import DaskTaskRunner

        from salvo.cluster import slurm_cluster_kwargs

        # Items go to Dask workers that are SLURM jobs, submitted while items wait (at most max_jobs).
        return DaskTaskRunner(
            cluster_class="dask_jobqueue.SLURMCluster",
            cluster_kwargs=slurm_cluster_kwargs(run.slurm),
            adapt_kwargs={"minimum": 0, "maximum": run.slurm.max_jobs},
        )
    return ThreadPoolTaskRunner(max_workers=batchcore.workers(run))


class _Progress:
    """A progress artifact, updated at most every ``EVERY_S`` seconds (a synchronous API call made by
    the loop that submits tasks: more often, and the workers wait for it)."""

    EVERY_S = 5.0

    def __init__(self, pipeline: str, total: int) -> None:
        self.total, self.done, self.last = total, 0, 0.0
        self.id = create_progress_artifact(0.0, key=f"{pipeline}-progress", description=f"{pipeline}: items finished")

    def advance(self, n: int, *, final: bool = False) -> None:
        self.done += n
        if final or time.monotonic() - self.last > self.EVERY_S:
            update_progress_artifact(self.id, 100.0 * self.done / max(1, self.total))
            self.last = time.monotonic()


class _ResultHooks:
    """Every finished item goes to the display (the caller's `salvo.listeners`), then to the pipeline's own listener."""

    def __init__(self, *hooks: Callable[[ItemResult], None] | None) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def __call__(self, result: ItemResult) -> None:
        for h in self.hooks:
            h(result)

    def __bool__(self) -> bool:
        return bool(self.hooks)


def run_batch(
    items: Sequence[Item], worker: Worker, *, pipeline: str, options: BatchOptions, settled: Sequence[ItemResult] = ()
) -> BatchOutcome:
    """Run every item not already finished; return all results in input order.

    ``settled`` holds results decided before running (for example "output exists"); those items
    are not run. Each item is a task run of its own locally (failed items are failed task runs);
    on a Dask cluster a task carries a few items. At most twice as many tasks as workers are in
    flight, so that a stop (Ctrl-C, see :func:`salvo.runner.request_stop`) or a first failure
    with ``fail_fast`` leaves the rest unstarted (``not_run``).
    """
    warm_up()  # the reports' plotting library loads while the items run
    logger = get_run_logger()
    t0, batch_id = time.monotonic(), uuid.uuid4().hex
    # The display sees an item before a listener may stop the batch; a lost records storage stops it (StorageLost).
    shown = listeners.current()  # the caller's display, if any (`cli.common.run_flow`)
    on_result = _ResultHooks(*shown.results, options.on_result, stop_on_storage_loss(options.state))
    listeners.announce(shown.batch_started, len(items))
    by_id: dict[str, ItemResult] = {r.item_id: r for r in settled}
    finished, pending = split_finished([it for it in items if it.id not in by_id], worker, options=options)
    by_id.update(finished)
    logger.info("%s: %d items, %d already settled, %d to run", pipeline, len(items), len(by_id), len(pending))
    progress = _Progress(pipeline, len(items))
    progress.advance(len(by_id))
    for r in by_id.values():
        if on_result:
            on_result(r)
    run = options.run
    queue = list(reversed(batchcore.chunks(pending, batchcore.chunk_size(len(pending), run))))
    params = {"worker": worker, "state": options.state, "run": run, "log_dir": options.log_dir, "batch_id": batch_id}
    workers = batchcore.workers(run)
    # Nothing queued far past the running items (a stop leaves the rest unstarted); locally a deeper
    # window keeps the worker threads fed while this loop records results.
    window = workers if run.fail_fast else (2 if run.on_cluster else 4) * workers
    stop = False
    with _task_runner(run) as runner, _stop_items_if_killed(), responsive_threads():
        futures: dict[Any, list[tuple[Item, str]]] = {}
        while queue or futures:
            stop = stop or stop_requested()
            while queue and not stop and len(futures) < window:
                chunk = queue.pop()
                chunk_params = {"items": [c[0] for c in chunk], "keys": [c[1] for c in chunk]}
                if not run.on_cluster:  # Prefect walks a local task's parameters three times for futures; none here
                    chunk_params = {k: quote(v) for k, v in chunk_params.items()}  # (Dask gets them plain)
                futures[runner.submit(run_items, {**chunk_params, **params})] = chunk
            if not futures:
                break
            fut = next(as_completed(list(futures)))
            chunk = futures.pop(fut)
            for r in _chunk_results(fut, chunk):
                if r.cached and r.batch_id == batch_id:
                    r.cached = False  # written by an earlier attempt of this same batch
                by_id[r.item_id] = r
                stop = stop or (run.fail_fast and r.status.failed)
                if on_result:
                    on_result(r)
            progress.advance(len(chunk))
    interrupted = stop_requested()
    results = [
        by_id.get(it.id) or batchcore.unfinished(it.id, interrupted=interrupted, fail_fast=run.fail_fast)
        for it in items
    ]
    progress.advance(0, final=True)
    summary = summarize(results, pipeline=pipeline, wall_time_s=time.monotonic() - t0)
    logs = {it.id: p for it in items if (p := batchcore.log_path(options.log_dir, it.id))}
    return BatchOutcome(results=results, summary=summary, logs=logs)


@contextlib.contextmanager
def _stop_items_if_killed() -> Any:
    """A SIGTERM (Prefect's ``TerminationSignal``) or a ``KeyboardInterrupt`` leaving the loop kills the
    running items at once: otherwise the task runner's exit waits for them to finish, for hours maybe."""
    try:
        yield
    except Exception:
        raise
    except BaseException:
        request_stop()
        raise


def _state_data(future: Any) -> Any:
    """The results a local task run's final state holds (``persist_result=False``: they never left
    this process), read without ``future.result()``, which goes through Prefect's event-loop
    thread (0.67 ms a call against 0.003 ms; 14% of the dispatch loop's time on tiny items)."""
    future.wait()
    state = future.state
    return result_record_data(getattr(state, "data", None))


def _chunk_results(future: Any, chunk: list[tuple[Item, str]]) -> list[ItemResult]:
    """A task's results (its state's data, Completed or Failed); a task that crashed gives `exception` for each item."""
    try:
        data = _state_data(future)
        if not (isinstance(data, list) and len(data) == len(chunk)):  # a Dask future, a crash: Prefect's own reader
            data = future.result(raise_on_failure=False)
    except BaseException as exc:  # noqa: BLE001 - a lost Dask worker, a cancellation
        data = exc
    if isinstance(data, list) and all(isinstance(r, ItemResult) for r in data) and len(data) == len(chunk):
        return data
    reason = f"{type(data).__name__}: {data}" if isinstance(data, BaseException) else "the task ended without results"
    _end_lost_task_run(future, reason)
    return [ItemResult(it.id, Status.EXCEPTION, reason=reason) for it, _ in chunk]


def _end_lost_task_run(future: Any, reason: str) -> None:
    """End Crashed the task run of a task that gave no results, if it is still PENDING or RUNNING.

    When Dask gives up on a task whose workers died (``KilledWorker``), nothing ever ends its task
    run: Prefect shows it RUNNING forever (see PREFECT_NOTES). A task that Dask ran again elsewhere
    keeps its task run id and ends it itself, so it never gets here.
    """
    task_run_id = getattr(future, "task_run_id", None)
    if task_run_id is None:
        return
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    why = (
        "its Dask worker died and Dask gave up on it"
        if reason.startswith("KilledWorker")
        else "it ended without results"
    )
    try:
        with get_client(sync_client=True) as client:
            try:
                state = client.read_task_run(task_run_id).state
            except ObjectNotFound:  # it never started on a worker: there is no task run to end
                return
            if state is None or not state.is_final():
                client.set_task_run_state(task_run_id, Crashed(message=f"{why}: {reason}"[:500]), force=True)
    except Exception as exc:  # noqa: BLE001 - the batch's outcome does not depend on the UI's state
        get_run_logger().warning("could not end task run %s: %s", task_run_id, exc)


def publish_artifacts(outcome: BatchOutcome, *, pipeline: str, reports: dict[str, str] | None = None) -> None:
    """The table of items and the markdown summary, in the Prefect UI."""
    create_table_artifact(
        table_rows(outcome.results), key=f"{pipeline}-items", description=f"{pipeline}: every item and its status"
    )
    create_markdown_artifact(
        summary_markdown(outcome.summary, reports=reports),
        key=f"{pipeline}-summary",
        description=f"{pipeline}: summary",
    )


def finish_batch(
    outcome: BatchOutcome,
    *,
    pipeline: str,
    report_dir: str | os.PathLike[str],
    title: str,
    extra_reports: dict[str, str] | None = None,
    artifacts: bool = True,
    header: dict[str, Any] | None = None,
    sections: Sequence[Any] = (),
    also_as: Sequence[str] = (),
    link_base: str | None = None,
) -> dict[str, Any]:
    """Write the reports and publish the artifacts; return the batch's document.

    A flow then ends with ``return batch_state(doc)`` (after adding what its pipeline adds to the
    document). ``header``, ``sections``, ``also_as``, ``link_base``: the pipeline's additions to its
    run report (see ``salvo.spine.settled.batch_document``).
    """
    doc = batch_document(
        outcome,
        report_dir=report_dir,
        title=title,
        extra_reports=extra_reports,
        header=header,
        sections=sections,
        also_as=also_as,
        link_base=link_base,
    )
    if artifacts:
        publish_artifacts(outcome, pipeline=pipeline, reports=doc["reports"])
    return doc


def batch_state(doc: dict[str, Any], *, fail_on_error: bool = True) -> State:
    """How every pipeline flow ends: ``return batch_state(doc)`` (no exception, so no traceback in the logs).

    ``Completed(data=doc)`` when nothing failed; ``Failed("N of M items failed: a, b, ...")`` when an
    item failed; ``Cancelled("interrupted: ...")`` when the batch was stopped (Ctrl-C). A failed or
    cancelled state carries ``BatchFailed(doc)`` as its data, so that calling the flow directly
    raises ``BatchFailed`` (with ``.summary``) as before, and ``state.result(raise_on_failure=False)``
    gives it back with the document. ``fail_on_error=False`` (netcdf-extract's flow parameter):
    always ``Completed(data=doc)``.
    """
    s = doc["summary"]
    if not fail_on_error or s.get("ok", not s["failed"]):
        return Completed(data=doc)
    exc = BatchFailed(doc)
    # The report's path ends the message: a failure notification (`salvo notify`) quotes the message.
    report = (doc.get("reports") or {}).get("html") or (doc.get("reports") or {}).get("text")
    where = f"; report: {report}" if report else ""
    if s.get("counts", {}).get(Status.INTERRUPTED.value) or stop_requested():
        return Cancelled(message=f"interrupted: {exc}{where}", data=exc)
    return Failed(message=f"{exc}{where}", data=exc)


def run_namer(pipeline: str) -> Callable[[], str]:
    """A flow_run_name function: ``PIPELINE-INPUT-TIME`` (:func:`deployments.runs.run_name`, the same
    name the local server gives the run while it waits), with relative inputs made absolute."""

    def name() -> str:
        import datetime as dt

        from prefect.runtime import flow_run

        given = {k: (os.path.abspath(v) if isinstance(v, str) and v else v) for k, v in flow_run.parameters.items()}
        return run_name(pipeline, given, dt.datetime.now().astimezone())

    return name


def tag_current_run(*tags: str) -> None:
    """Add tags to the running flow run, so the UI can filter runs by pipeline. Every pipeline flow
    calls it first.

    It also writes ``DO_NOT_TRACK=1`` unless set (`deployments.prefect_patches.NO_TELEMETRY`): Prefect
    reads it each time it would send a telemetry event (the first flow run's, at its end), and a
    process that imported Prefect before `flows` (a script, a test) had no import hook to write it.
    """
    from prefect import get_client
    from prefect.context import FlowRunContext

    set_environment_defaults({"DO_NOT_TRACK": NO_TELEMETRY["DO_NOT_TRACK"]})

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(ctx.flow_run.id, tags=sorted(set(ctx.flow_run.tags) | set(tags)))


class BatchFailed(RuntimeError):
    """The data of a failed batch's final state (`batch_state`): calling the flow directly raises it,
    after its reports are written; ``.doc`` is the batch's document."""

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
