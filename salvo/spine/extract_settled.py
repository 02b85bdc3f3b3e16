"""netcdf-extract's planning and its fully resumed answer, without Prefect (see ``salvo.spine.settled``).

``salvo extract`` on a folder whose every file an earlier run finished answers from the records
here, with no flow run and no ``import prefect``; the flow (``flows.netcdf_extract``) plans
with the same function.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from salvo.spine.settled import BatchOptions, BatchOutcome, batch_document, split_finished
from salvo.extract import STATE_DIR, Plan, batch_worker, plan_batch, resume_entry, write_resume_file
from salvo.batchcore import log_path
from salvo.items import Worker
from salvo.pipelines import PIPELINES
from salvo.spine.records import StateLocation, is_block_name
from salvo.report import skip_on_full_disk, summarize

PIPELINE = PIPELINES["extract"].flow_name
TITLE = "NetCDF batch extraction summary"


def plan_for(
    directory: str,
    pattern: str,
    output_dir: str | None,
    recursive: bool,
    worker_command: str | None,
    state: str | None,
    dpi: int | None = None,
    resume: bool = False,
    seed_layout: bool | None = False,
    worker_script: str | None = None,
    workdir: str | None = None,
) -> tuple[Plan, Worker, BatchOptions]:
    """Plan the batch; ``seed_layout`` None detects the seed's own layout in ``workdir`` (default: the cwd)."""
    worker_command = worker_command or None  # a deployment's empty parameter means the built-in plotter
    planned = plan_batch(
        directory,
        pattern=pattern,
        output_dir=output_dir,
        recursive=recursive,
        worker_command=worker_command,
        state=state,
        dpi=dpi,
        resume=resume,
        cwd=workdir,
        seed_layout=seed_layout,
        worker_script=worker_script or None,
    )
    return planned, batch_worker(planned, worker_command), _options(planned, state)


def _options(plan: Plan, state: str | None) -> BatchOptions:
    root = plan.root
    # Each file's worker output (stdout and stderr) goes to .salvo/logs/<file>.log: the report's log column.
    return BatchOptions(
        state=state or str(root / STATE_DIR),
        settings={"pipeline": PIPELINE},  # type: ignore[operator]
        log_dir=str(root / STATE_DIR / "logs"),
    )  # type: ignore[operator]


def already_done(
    directory: str = ".",
    pattern: str = "*.nc",
    output_dir: str | None = None,
    recursive: bool = False,
    worker_command: str | None = None,
    state: str | None = None,
    dpi: int | None = None,
    planned: Plan | None = None,
    seed_layout: bool | None = False,
    worker_script: str | None = None,
    workdir: str | None = None,
    load_block: Callable[[str], StateLocation] | None = None,
) -> dict[str, Any] | None:
    """The batch's reports if an earlier run finished every item, else None; no flow run needed.

    The command line uses this to answer a fully resumed batch without starting Prefect's API;
    ``planned`` is its own ``plan_batch`` of the same arguments (without ``resume``), not made twice.
    ``load_block`` loads a ``state`` that names a saved storage block (Prefect's API: the caller's).
    """
    t0 = time.monotonic()
    if planned is None:
        plan, worker, options = plan_for(
            directory,
            pattern,
            output_dir,
            recursive,
            worker_command,
            state,
            dpi,
            seed_layout=seed_layout,
            worker_script=worker_script,
            workdir=workdir,
        )
    else:
        plan, worker, options = planned, batch_worker(planned, worker_command or None), _options(planned, state)
    if plan.settled or not plan.items:  # an unreadable input is an error to report: that needs a run
        return None
    if load_block is not None and is_block_name(options.state):
        options = dataclasses.replace(options, state=load_block(options.state))
    finished, pending = split_finished(plan.items, worker, options=options)
    if pending:
        return None
    results = [finished[it.id] for it in plan.items]
    summary = summarize(results, pipeline=PIPELINE, wall_time_s=time.monotonic() - t0)
    root = plan.root
    entries = {it.id: resume_entry(it) for it in plan.items}
    written: dict[str, str] = {}
    with skip_on_full_disk(written, "resume"):  # a full disk: one warning line; the records are what counts
        written["resume"] = str(write_resume_file(root, [entries[r.item_id] for r in results if r.status.ok]))  # type: ignore[arg-type]
    logs = {it.id: p for it in plan.items if (p := log_path(options.log_dir, it.id))}  # earlier runs' logs, where kept
    return batch_document(BatchOutcome(results, summary, logs), report_dir=root, title=TITLE, extra_reports=written)
