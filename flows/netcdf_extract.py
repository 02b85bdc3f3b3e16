"""netcdf-extract: plot every NetCDF file of a folder, resumably (the seed's batch_extract_results)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.batch import BatchOptions, BatchOutcome, batch_state, finish_batch, run_batch, run_namer, tag_current_run
from salvo.spine.extract_settled import PIPELINE, TITLE, already_done, plan_for  # noqa: F401 - already_done re-exported
from salvo.extract import Plan, has_existing_output, remember_resume_lists, resume_entry, write_resume_file
from salvo.extract.journal import ResumeJournal
from salvo.extract.seed_layout import mark_layout, seed_layout_line, write_links
from salvo.fingerprint import item_key
from salvo.items import Worker
from salvo.listeners import Listeners, listening
from salvo.options import RunOptions
from salvo.outcome import ItemResult, Status
from salvo.report import skip_on_full_disk
from salvo.spine.records import write_record
from tasks.state import record_store


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
    seed_layout: bool | None = None,
    worker_script: str | None = None,
    workdir: str | None = None,
) -> dict[str, Any]:
    """Plot each file's time series in a child process; finished files are never redone.

    With ``resume``, files a seed-era ``batch_resume.txt`` lists, whose plots exist, are imported as
    finished (recorded, not run again). ``run``: timeout, workers, retries, force (unset fields:
    this pipeline's defaults).

    ``seed_layout``: run the seed's own worker unchanged, ``python extract_results.py FILE`` (or
    ``worker_script``) in ``workdir`` (default: the current folder), its plots in ``<stem>/`` there;
    None (the default) uses that layout when the working folder shows it (see
    ``salvo.extract.seed_layout.detect``); False never.
    """
    tag_current_run(PIPELINE)
    run = RunOptions.of(PIPELINE, run)
    plan, worker, options = plan_for(
        directory,
        pattern,
        output_dir,
        recursive,
        worker_command,
        state,
        dpi,
        resume and not run.force,
        seed_layout=seed_layout,
        worker_script=worker_script,
        workdir=workdir,
    )
    options = dataclasses.replace(options, run=run)
    root: Path = plan.root  # type: ignore[assignment]
    if plan.seed_layout:
        get_run_logger().info("%s", seed_layout_line(plan))
        mark_layout(options.state)
        write_links(root, plan.items)
    settled = list(plan.settled)
    _record_imported(plan, worker, options, root)
    done = {r.item_id for r in settled}
    settled += [
        ItemResult(it.id, Status.SKIPPED, reason="output exists (--skip-existing)")
        for it in plan.items
        if skip_existing and it.id not in done and has_existing_output(it)
    ]
    journal = ResumeJournal(
        root, {it.id: resume_entry(it) for it in plan.items}, {it.id: it.outputs[0] for it in plan.items}
    )
    options.on_result = journal
    try:
        with listening(Listeners(item_finished=(journal.on_finish,))):
            outcome = run_batch(plan.items, worker, pipeline=PIPELINE, options=options, settled=settled)
    finally:
        journal.close()
    return _finish(outcome, plan, fail_on_error=fail_on_error)


def _record_imported(plan: Plan, worker: Worker, options: BatchOptions, root: Path) -> None:
    """Items imported from a seed-era batch_resume.txt get a resume record, so later runs (with or
    without --resume) keep them finished, and an edited input is processed again as usual."""
    imported = [r for r in plan.settled if r.status is Status.SUCCESS]
    if imported:
        store = record_store(options.state)
        items = {it.id: it for it in plan.items}
        for r in imported:
            write_record(
                store,
                item_key(items[r.item_id], worker=worker, settings=options.settings),
                dataclasses.replace(r, cached=False),
            )
    if plan.resume_lists:  # imported once: an input edited later is processed again, as any other
        remember_resume_lists(root, [p.read_text(encoding="utf-8", errors="replace") for p in plan.resume_lists])


def _finish(outcome: BatchOutcome, plan: Plan, *, fail_on_error: bool) -> Any:
    """The reports, and batch_resume.txt rewritten whole (atomically, in input order)."""
    root: Path = plan.root  # type: ignore[assignment]
    entries = {it.id: resume_entry(it) for it in plan.items}
    written: dict[str, str] = {}
    with skip_on_full_disk(written, "resume"):  # a full disk: one warning line; the records are what counts
        written["resume"] = str(write_resume_file(root, [entries[r.item_id] for r in outcome.results if r.status.ok]))
    doc = finish_batch(outcome, pipeline=PIPELINE, report_dir=root, title=TITLE, extra_reports=written)
    return batch_state(doc, fail_on_error=fail_on_error)
