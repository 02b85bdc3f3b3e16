"""--max-ram-mb is a real bound: a job over an input bigger than the bound stays under it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from salvo.jobs.batch import job_items, job_worker, render_jobs
from salvo.jobs.synth import write_synthetic_sirene
from salvo.outcome import Status
from salvo.runner import run_item

BOUND_MB = 128


def _run(tmp_path: Path, sirene: Path, name: str) -> tuple[float, int]:
    jobs = render_jobs(["68.20B"], template=None, profile="deep", jobs_dir=tmp_path / f"jobs-{name}")
    item = job_items(jobs, input=sirene, output_dir=tmp_path / f"out-{name}", max_ram_mb=BOUND_MB, sample=None)[0]
    result = run_item(item, job_worker(None), timeout_s=300)
    assert result.status is Status.SUCCESS, result.reason + result.stderr_tail
    return result.peak_rss_mb, result.metrics["rows"]


def test_a_job_stays_under_max_ram_mb_on_an_input_larger_than_it(tmp_path: Path) -> None:
    big = write_synthetic_sirene(tmp_path / "big.parquet", rows=1_000_000, seed=7)
    small = write_synthetic_sirene(tmp_path / "small.parquet", rows=2_000, seed=7)
    assert pq.read_table(big).nbytes / 2**20 > BOUND_MB, "the test input must not fit in the bound once decoded"
    # Same worker, same forked warm process, tiny input: what the interpreter and libraries cost.
    baseline, _ = _run(tmp_path, small, "small")
    peak, rows = _run(tmp_path, big, "big")
    expected = pq.read_table(big, columns=["activitePrincipaleEtablissement", "etatAdministratifEtablissement"],
                             filters=[("activitePrincipaleEtablissement", "==", "68.20B"), ("etatAdministratifEtablissement", "==", "A")]).num_rows
    assert rows == expected > 100_000
    assert peak - baseline < BOUND_MB, f"peak RSS grew by {peak - baseline:.0f} MiB over the {BOUND_MB} MiB bound"
