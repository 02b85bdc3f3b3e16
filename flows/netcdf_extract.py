"""netcdf-extract: plot every NetCDF file of a folder, resumably (the seed's batch_extract_results)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from prefect import flow

from flows.batch import BatchOptions, BatchOutcome, finish_batch, run_batch, run_namer, tag_current_run
from flows.extract_settled import PIPELINE, TITLE, already_done, plan_for  # noqa: F401 - already_done re-exported
from salvo.extract import Plan, has_existing_output, remember_resume_lists, report_dir, write_resume_file
from salvo.fingerprint import item_key
from salvo.items import Worker
from salvo.options import RunOptions
from salvo.outcome import ItemResult, Status
from tasks.records import record_store, write_record



@flow(name=PIPELINE, flow_run_name=run_namer(PIPELINE), log_prints=True)
def netcdf_extract(
    directory: str = ".",
    pattern: str = "*.nc",
    output_dir: str | None = None,
    recursive: bool = False,
    skip_existing: bool = False,
    worker_command: str | None = None,
    state: str | None = None,
    fail_on_error: bool = True,
    dpi: int | None = None,
    resume: bool = False,
    run: RunOptions | None = None,
) -> dict[str, Any]:
    """Plot each file's time series in a child process; finished files are never redone.

    With ``resume``, files a seed-era ``batch_resume.txt`` lists, whose plots exist, are imported as
    finished (recorded, not run again). ``run``: timeout, workers, retries, force (unset fields:
    this pipeline's defaults).
    """
    tag_current_run(PIPELINE)
    run = RunOptions.of(PIPELINE, run)
    plan, worker, options = plan_for(directory, pattern, output_dir, recursive, worker_command, state, dpi, resume and not run.force)
    options = dataclasses.replace(options, run=run)
    settled = list(plan.settled)
    _record_imported(plan, worker, options, report_dir(directory, output_dir))
    done = {r.item_id for r in settled}
    settled += [ItemResult(it.id, Status.SKIPPED, reason="output exists (--skip-existing)") for it in plan.items
                if skip_existing and it.id not in done and has_existing_output(it)]
    options.on_result = _ResumeSaver(report_dir(directory, output_dir), [it.id for it in plan.items])
    outcome = run_batch(plan.items, worker, pipeline=PIPELINE, options=options, settled=settled)
    return _finish(outcome, report_dir(directory, output_dir), fail_on_error=fail_on_error)


def _record_imported(plan: Plan, worker: Worker, options: BatchOptions, root: Path) -> None:
    """Items imported from a seed-era batch_resume.txt get a resume record, so later runs (with or
    without --resume) keep them finished, and an edited input is processed again as usual."""
    imported = [r for r in plan.settled if r.status is Status.SUCCESS]
    if imported:
        store = record_store(options.state)
        items = {it.id: it for it in plan.items}
        for r in imported:
            write_record(store, item_key(items[r.item_id], worker=worker, settings=options.settings), dataclasses.replace(r, cached=False))
    if plan.resume_lists:  # imported once: an input edited later is processed again, as any other
        remember_resume_lists(root, [p.read_text(encoding="utf-8", errors="replace") for p in plan.resume_lists])


class _ResumeSaver:
    """Rewrites batch_resume.txt as files finish, as the seed did every 5 files, so that it is there
    after a crash or Ctrl-C: every `EVERY` finished files, but not more often than every `MIN_S`
    seconds (a rewrite is the whole file: once per 5 of 10,000 tiny items made it quadratic)."""

    EVERY, MIN_S = 5, 1.0

    def __init__(self, root: Path, order: list[str]) -> None:
        self.root, self.order, self.done, self.unsaved, self.last = root, order, set(), 0, 0.0

    def __call__(self, result: ItemResult) -> None:
        self.unsaved += 1
        if result.status.ok:
            self.done.add(result.item_id)
        if self.unsaved >= self.EVERY and time.monotonic() - self.last >= self.MIN_S:
            write_resume_file(self.root, [i for i in self.order if i in self.done])
            self.unsaved, self.last = 0, time.monotonic()


def _finish(outcome: BatchOutcome, root: Path, *, fail_on_error: bool) -> Any:
    resume = write_resume_file(root, [r.item_id for r in outcome.results if r.status.ok])
    return finish_batch(outcome, pipeline=PIPELINE, report_dir=root, title=TITLE, extra_reports={"resume": str(resume)}, fail_on_error=fail_on_error, as_state=True)
