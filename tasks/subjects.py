"""Prefect tasks of the subject batch: thin wrappers around ``salvo.subjects``."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from salvo.index import flush_all
from salvo.outcome import ItemResult
from salvo.report import Summary, skip_on_full_disk
from salvo.subjects.plan import SubjectPlan, plan_subjects
from salvo.subjects.manifest import RUNS_DIR
from salvo.html_report import Section
from salvo.pipelines import PIPELINES
from salvo.subjects.report import METRICS_CSV, subject_rows, subject_sections, write_metrics_csv

PIPELINE = PIPELINES["subjects"].flow_name


@task(cache_policy=NONE, persist_result=False)
def plan_subject_batch(
    manifest: str | None,
    bids_dir: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    options: dict[str, Any],
    pipeline_command: str | None,
    out_dir: str | None = None,
    pipeline: str | None = None,
) -> SubjectPlan:
    """Load the manifest or discover the BIDS units; validate everything (output layout included)
    before anything runs."""
    return plan_subjects(
        manifest=manifest,
        bids_dir=bids_dir,
        include=include,
        exclude=exclude,
        options=options,
        pipeline_command=pipeline_command,
        out_dir=out_dir,
        pipeline=pipeline,
    )


@contextlib.contextmanager
def run_state(out_dir: str) -> Iterator[str]:
    """A folder for the spine's records of this run only: resume across runs goes by ``_done.json``."""
    folder = Path(out_dir) / RUNS_DIR / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True)
    try:
        yield str(folder)
    finally:
        flush_all(quiet=True)  # the index lines of this run's records, before their folder goes (not after)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # only when no other run is using it


@task(cache_policy=NONE, persist_result=False)
def write_subject_reports(
    results: list[ItemResult], *, out_dir: str, config_hash: str, timeout_min: float, summary: Summary
) -> tuple[dict[str, str], list[Section]]:
    """Write ``batch_metrics.csv``; return its path and the subjects' sections of the run report
    (their table with logs and metrics, durations, metric plots, QC gallery)."""
    rows = subject_rows(results, out_dir=out_dir, timeout_min=timeout_min)
    written: dict[str, str] = {}
    with skip_on_full_disk(written, "metrics"):  # a full disk: one warning line, the batch's outcome stands
        written["metrics"] = str(write_metrics_csv(rows, Path(out_dir) / METRICS_CSV))
    return written, subject_sections(rows, config_hash=config_hash, out_dir=out_dir)


@task(cache_policy=NONE, persist_result=False)
def publish_subject_summary(
    lines: list[str], summary_block: list[str], *, config_hash: str, reports: dict[str, str]
) -> None:
    """The console's per-subject lines and summary, as a markdown artifact in the Prefect UI."""
    body = "\n".join([f"Config hash: {config_hash}", ""] + lines + summary_block)
    links = "\n".join(f"- {kind}: [{path}](file://{path})" for kind, path in reports.items())
    create_markdown_artifact(
        f"# Subject batch\n\n```text\n{body}\n```\n\n{links}\n",
        key=f"{PIPELINE}-report",
        description="subject-batch: per-subject lines and report files",
    )
