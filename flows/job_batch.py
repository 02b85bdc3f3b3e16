"""job-batch: one YAML job per NAF code from a template, run over a SIRENE Parquet (the seed's builder_cli batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.batch import BatchOptions, batch_state, finish_batch, run_batch, run_namer, tag_current_run
from salvo.options import RunOptions
from salvo.pipelines import PIPELINES
from tasks.jobs import prepare_jobs, report_jobs

PIPELINE = PIPELINES["jobs"].flow_name


@flow(name=PIPELINE, flow_run_name=run_namer(PIPELINE), log_prints=True)
def job_batch(
    naf: list[str],
    input: str,
    output_dir: str = "out",
    template: str | None = None,
    profile: str = "quick",
    jobs_dir: str = "jobs_generated",
    sample: int | None = None,
    max_ram_mb: int = 512,
    job_command: str | None = None,
    run: RunOptions | None = None,
) -> dict[str, Any]:
    """Render a job per code, run them, and return the summary with one entry per code.

    Stops at the first failed job, as the seed did, unless ``run.fail_fast`` is false (the CLI's
    ``--continue-on-error``).
    """
    tag_current_run(PIPELINE)
    run = RunOptions.of(PIPELINE, run)
    jobs, items, worker = prepare_jobs(
        naf,
        input=input,
        output_dir=output_dir,
        template=template,
        profile=profile,
        jobs_dir=jobs_dir,
        sample=sample,
        max_ram_mb=max_ram_mb,
        job_command=job_command,
    )
    state = Path(output_dir) / ".salvo"
    options = BatchOptions(state=str(state), run=run, settings={"pipeline": PIPELINE}, log_dir=str(state / "logs"))
    outcome = run_batch(items, worker, pipeline=PIPELINE, options=options)
    entries, results_path = report_jobs(jobs, outcome.results, output_dir=output_dir)
    doc = finish_batch(
        outcome,
        pipeline=PIPELINE,
        report_dir=output_dir,
        title="Job batch summary",
        extra_reports={"jobs": results_path},
        header={"memory_limit_mb": max_ram_mb},
    )  # each job plans its memory for --max-ram-mb
    return batch_state({**doc, "jobs": entries})  # the CLI prints the per-code entries of a failed batch too
