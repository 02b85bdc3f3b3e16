"""Demo of the job-batch pipeline: a small synthetic SIRENE file, four NAF jobs, one resumed re-run."""

from __future__ import annotations

import pathlib


def run_demo(root: pathlib.Path) -> list[str]:
    """Make sample data under ``root``, run the job-batch flow twice, and say where everything is."""
    from cli.common import run_flow
    from flows.job_batch import job_batch
    from salvo.jobs.synth import write_synthetic_sirene

    root = pathlib.Path(root)
    sirene = write_synthetic_sirene(root / "sirene_demo.parquet", rows=20_000, seed=42)
    params = dict(
        naf=["6920Z", "43.29A", "43", "05.10Z"],
        input=str(sirene),
        output_dir=str(root / "jobs_out"),
        jobs_dir=str(root / "jobs_generated"),
        profile="standard",
    )
    first = run_flow(job_batch, **params)
    second = run_flow(job_batch, **params)  # every job is already done: all resumed
    lines = [
        f"jobs: synthetic SIRENE input {sirene} (20,000 establishments)",
        f"jobs: job files in {root / 'jobs_generated'}",
    ]
    for e in first["jobs"]:
        note = f"; warning: {e['warnings'][0]}" if e["warnings"] else ""
        lines.append(f"jobs: {e['code']:<6} {e['status']}, {e['rows']} rows -> {e['output_dir']}{note}")
    lines.append(
        f"jobs: re-run resumed {second['summary']['resumed']} of {second['summary']['total']} jobs without redoing them"
    )
    for kind, path in first.get("reports", {}).items():
        lines.append(f"jobs: {kind} report {path}")
    return lines
