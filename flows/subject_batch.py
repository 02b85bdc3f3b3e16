"""The ``subject-batch`` flow: one child process per subject, locked, promoted atomically, reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.batch import BatchOptions, batch_state, finish_batch, run_batch, run_namer, tag_current_run
from salvo.options import MAX_TIMEOUT_S, RunOptions
from salvo.subjects.console import SubjectMonitor
from salvo.subjects.report import REPORT_HTML
from salvo.subjects.plan import build_items, build_worker, check_run_settings
from tasks.subjects import PIPELINE, plan_subject_batch, publish_subject_summary, run_state, write_subject_reports


@flow(name=PIPELINE, flow_run_name=run_namer(PIPELINE))
def subject_batch(
    out: str,
    manifest: str | None = None,
    bids_dir: str | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    options: dict[str, Any] | None = None,
    pipeline_command: str | None = None,
    echo: bool = False,
    run: RunOptions | None = None,
    pipeline: str = "builtin",
) -> dict[str, Any]:
    """Run every subject of a manifest or BIDS folder; skip those done with the same config hash.

    Give ``manifest`` or ``bids_dir``: an empty string counts as not given, so a deployment can
    ship ``""`` for both and each run names its own source. A bad parameter fails the run before
    any subject starts, with a message naming the parameter. ``run``: timeout (two hours unless
    given), workers, retries, force (re-run subjects done with the same config hash and inputs).
    ``pipeline``: ``builtin`` (DIPY: mask, denoise, tensor, FA/MD/RGB maps) or ``csttool`` (the
    installed csttool's steps; ``options["steps"]`` picks them); ignored with ``pipeline_command``.
    """
    tag_current_run(PIPELINE)
    run = RunOptions.of(PIPELINE, run)
    timeout_minutes = (run.timeout_s or MAX_TIMEOUT_S) / 60.0  # None: no limit, so no subject ends "exceeded" it
    check_run_settings(
        out=out,
        timeout_minutes=timeout_minutes,
        parallel=run.workers,
        retries=run.retries,
        names={"timeout_minutes": "run.timeout_s", "parallel": "run.workers", "retries": "run.retries"},
    )
    out_dir = str(Path(out).expanduser().resolve())
    plan = plan_subject_batch(
        manifest, bids_dir, include or [], exclude or [], options or {}, pipeline_command, out_dir, pipeline
    )
    ids = [s.id for s in plan.subjects]
    monitor = SubjectMonitor(ids, out_dir=out_dir, config_hash=plan.config_hash, timeout_min=timeout_minutes, echo=echo)
    monitor.announce()
    with run_state(out_dir) as state:
        batch = BatchOptions(
            state=state,
            # resume goes by each subject's _done.json and config hash, checked under its lock
            run=run.model_copy(update={"force": True}),
            log_dir=None,  # each subject logs to OUT/<id>/logs/<id>.log itself (the seed's layout)
            on_result=monitor,
        )
        outcome = run_batch(
            build_items(plan, out_dir=out_dir, force=run.force), build_worker(plan), pipeline=PIPELINE, options=batch
        )
    subject_reports, sections = write_subject_reports(
        outcome.results,
        out_dir=out_dir,
        config_hash=plan.config_hash,
        timeout_min=timeout_minutes,
        summary=outcome.summary,
    )
    # One page: run_report.html with the subjects' table, logs, plots and QC gallery;
    # batch_report.html (the seed's name) is the same page.
    doc = finish_batch(
        outcome,
        pipeline=PIPELINE,
        report_dir=out_dir,
        title=f"Subject batch: {out_dir}",
        extra_reports={**subject_reports, "batch_report": str(Path(out_dir) / REPORT_HTML)},
        sections=sections,
        also_as=(REPORT_HTML,),
    )
    doc["summary"].update(config_hash=plan.config_hash, out_dir=out_dir)
    block = monitor.finish(outcome.results)
    publish_subject_summary(monitor.lines, block, config_hash=plan.config_hash, reports=doc["reports"])
    return batch_state(doc)
