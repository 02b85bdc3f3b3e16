"""Prefect tasks of the job-batch pipeline: thin wrappers over salvo.jobs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from salvo.fsutil import atomic_write_text
from salvo.items import Item, Worker
from salvo.jobs.batch import RenderedJob, job_entries, job_items, job_worker, render_jobs, scan_paths
from salvo.outcome import ItemResult


@task(name="render-jobs", cache_policy=NONE, persist_result=False)
def prepare_jobs(
    naf: list[str],
    *,
    input: str,
    output_dir: str,
    template: str | None,
    profile: str,
    jobs_dir: str,
    sample: int | None,
    max_ram_mb: int,
    job_command: str | None,
) -> tuple[list[RenderedJob], list[Item], Worker]:
    """Render, validate and write every job file; return the jobs, their items and the worker."""
    jobs = render_jobs(naf, template=template, profile=profile, jobs_dir=jobs_dir)
    items = job_items(
        jobs, input=input, output_dir=output_dir, max_ram_mb=max_ram_mb, sample=sample, job_command=job_command
    )
    return jobs, items, job_worker(job_command)


@task(name="report-jobs", cache_policy=NONE, persist_result=False)
def report_jobs(
    jobs: list[RenderedJob], results: list[ItemResult], *, output_dir: str
) -> tuple[list[dict[str, Any]], str]:
    """Write ``batch_results.json`` (one entry per code) and drop the shared scan once all succeeded."""
    entries = job_entries(jobs, results, output_dir=output_dir)
    path = atomic_write_text(Path(output_dir) / "batch_results.json", json.dumps(entries, indent=2))
    if all(r.status.ok for r in results):
        # Every job is recorded as done: its scratch partitions will never be read again.
        shutil.rmtree(scan_paths(output_dir)[1], ignore_errors=True)
    return entries, str(path)
