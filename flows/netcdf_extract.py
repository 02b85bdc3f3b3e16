"""netcdf-extract: plot every NetCDF file of a folder, resumably (the seed's batch_extract_results)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from prefect import flow

from flows.batch import BatchOptions, BatchOutcome, finish_batch, run_batch, run_namer, split_finished, tag_current_run
from salvo.extract import discover_inputs, extract_worker, has_existing_output, plan_items
from salvo.items import Item, Worker
from salvo.report import summarize
from salvo.fsutil import atomic_write_text
from salvo.outcome import ItemResult, Status

PIPELINE = "netcdf-extract"


@flow(name=PIPELINE, flow_run_name=run_namer(PIPELINE, "directory"), log_prints=True)
def netcdf_extract(
    directory: str = ".",
    pattern: str = "*.nc",
    output_dir: str | None = None,
    recursive: bool = False,
    skip_existing: bool = False,
    parallel: bool = False,
    max_workers: int | None = None,
    dask_address: str | None = None,
    timeout: float = 900.0,
    retries: int = 2,
    force: bool = False,
    worker_command: str | None = None,
    state: str | None = None,
    fail_on_error: bool = True,
    items_per_task: int | None = None,
) -> dict[str, Any]:
    """Plot each file's time series in a child process; finished files are never redone."""
    tag_current_run(PIPELINE)
    items, worker, options = _plan(directory, pattern, output_dir, recursive, worker_command, state)
    options = dataclasses.replace(options, timeout_s=timeout, max_workers=max_workers, parallel=parallel, dask_address=dask_address,
                                  retries=retries, force=force, items_per_task=items_per_task)
    settled = [ItemResult(it.id, Status.SKIPPED, reason="output exists (--skip-existing)") for it in items if skip_existing and has_existing_output(it)]
    outcome = run_batch(items, worker, pipeline=PIPELINE, options=options, settled=settled)
    return _finish(outcome, Path(output_dir or directory), fail_on_error=fail_on_error)


def _plan(directory: str, pattern: str, output_dir: str | None, recursive: bool, worker_command: str | None, state: str | None) -> tuple[list[Item], Worker, BatchOptions]:
    items = plan_items(discover_inputs(directory, pattern=pattern, recursive=recursive), directory=directory, output_dir=output_dir, worker_command=worker_command)
    root = Path(output_dir or directory)
    return items, extract_worker(worker_command), BatchOptions(state=state or str(root / ".salvo"), settings={"pipeline": PIPELINE})


def _finish(outcome: BatchOutcome, root: Path, *, fail_on_error: bool, artifacts: bool = True) -> dict[str, Any]:
    done = [r.item_id for r in outcome.results if r.status.ok]
    resume = atomic_write_text(root / "batch_resume.txt", "".join(f"{i}\n" for i in done))
    return finish_batch(outcome, pipeline=PIPELINE, report_dir=root, title="NetCDF batch extraction summary", extra_reports={"resume": str(resume)}, fail_on_error=fail_on_error, artifacts=artifacts)


def already_done(directory: str = ".", pattern: str = "*.nc", output_dir: str | None = None, recursive: bool = False,
                 worker_command: str | None = None, state: str | None = None) -> dict[str, Any] | None:
    """The batch's reports if an earlier run finished every item, else None; no flow run needed.

    The command line uses this to answer a fully resumed batch without starting Prefect's API.
    """
    t0 = time.monotonic()
    items, worker, options = _plan(directory, pattern, output_dir, recursive, worker_command, state)
    finished, pending = split_finished(items, worker, options=options)
    if pending or not items:
        return None
    results = [finished[it.id] for it in items]
    summary = summarize(results, pipeline=PIPELINE, wall_time_s=time.monotonic() - t0)
    return _finish(BatchOutcome(results, summary), Path(output_dir or directory), fail_on_error=False, artifacts=False)
