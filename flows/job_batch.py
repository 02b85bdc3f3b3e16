"""job-batch: one YAML job per NAF code from a template, run over a SIRENE Parquet (the seed's builder_cli batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.batch import BatchOptions, batch_state, finish_batch, run_batch, run_namer, tag_current_run
from tasks.jobs import prepare_jobs, report_jobs

PIPELINE = "job-batch"


@flow(name=PIPELINE, flow_run_name=run_namer(PIPELINE, "output_dir"), log_prints=True)
def job_batch(
    naf: list[str],
    input: str,
    output_dir: str = "out",
    template: str | None = None,
    profile: str = "quick",
    jobs_dir: str = "jobs_generated",
    sample: int | None = None,
    workers: int = 1,
    max_ram_mb: int = 512,
    continue_on_error: bool = False,
    timeout: float = 3600.0,
    job_command: str | None = None,
    force: bool = False,
    retries: int = 0,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Render a job per code, run them fail-fast (or all), and return the summary with one entry per code."""
    tag_current_run(PIPELINE)
    jobs, items, worker = prepare_jobs(
        naf, input=input, output_dir=output_dir, template=template, profile=profile, jobs_dir=jobs_dir,
        sample=sample, max_ram_mb=max_ram_mb, job_command=job_command,
    )
    state = Path(output_dir) / ".salvo"
    options = BatchOptions(
        state=str(state), timeout_s=timeout, max_workers=workers, parallel=workers > 1, dask_address=dask_address,
        retries=retries, force=force, fail_fast=not continue_on_error, settings={"pipeline": PIPELINE},
        log_dir=str(state / "logs"),
    )
    outcome = run_batch(items, worker, pipeline=PIPELINE, options=options)
    entries, results_path = report_jobs(jobs, outcome.results, output_dir=output_dir)
    doc = finish_batch(outcome, pipeline=PIPELINE, report_dir=output_dir, title="Job batch summary",
                       extra_reports={"jobs": results_path}, fail_on_error=False)
    return batch_state({**doc, "jobs": entries})  # the CLI prints the per-code entries of a failed batch too
