"""A batch of NAF jobs: render job files, turn them into spine items, and report per code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from salvo.errors import InputError, UsageError
from salvo.fsutil import atomic_write_text
from salvo.items import Item, Worker, template_fields
from salvo.jobs.naf import NAF_COLUMN, NafCode, parse_naf_list
from salvo.jobs.scan import ScanJob, prefer_shared_scan, write_plan
from salvo.jobs.schema import JobSpec, parse_job
from salvo.jobs.derive import COMMUNE_COLUMN, DATE_COLUMN, POSTCODE_COLUMN
from salvo.jobs.stream import ACTIVE_COLUMN, csv_header, is_csv
from salvo.jobs.template import read_template, render_template
from salvo.outcome import ItemResult
from salvo.validate import regular_file

#: Placeholders a ``--job-command`` may use.
COMMAND_FIELDS = (
    "job_file",
    "input",
    "output_dir",
    "job_output_dir",
    "naf_code",
    "niche_name",
    "profile",
    "sample",
    "max_ram_mb",
)
MIN_RAM_MB = 128


@dataclass(frozen=True)
class RenderedJob:
    """One code's job: its file on disk and what it says."""

    naf: NafCode
    path: Path
    spec: JobSpec


def render_jobs(
    codes: Sequence[str],
    *,
    template: str | Path | None,
    profile: str,
    jobs_dir: str | Path,
    write: bool = True,
) -> list[RenderedJob]:
    """Parse every code, render and validate every job, then write the files (nothing is written on error)."""
    nafs = parse_naf_list(codes)
    jobs_dir = Path(jobs_dir).resolve()  # absolute: resume must not depend on the working folder
    text = read_template(template)
    source_name = str(template) if template else "job_template.yaml"
    jobs, texts, niches = [], [], {}
    for naf in nafs:
        path = Path(jobs_dir) / f"{naf.niche_name}.yaml"
        rendered = render_template(text, naf=naf, profile=profile, source=source_name)
        spec = parse_job(rendered, source=f"{path} (rendered from {source_name})")
        if spec.niche in niches:
            raise UsageError(
                f"{path}: field 'niche': {spec.niche!r} is also the niche of {niches[spec.niche]}; "
                "use {niche_name} in the template so each code has its own output folder"
            )
        niches[spec.niche] = path
        jobs.append(RenderedJob(naf=naf, path=path, spec=spec))
        texts.append(rendered)
    if write:
        for job, rendered in zip(jobs, texts):
            # Rewrite only on change: an unchanged job file keeps its identity for resume.
            if not job.path.is_file() or job.path.read_text(encoding="utf-8") != rendered:
                atomic_write_text(job.path, rendered)
    return jobs


def check_job_command(command: str) -> None:
    """Refuse a ``--job-command`` with an unknown placeholder before anything runs."""
    for name in template_fields(command):
        if name not in COMMAND_FIELDS:
            raise UsageError(
                f"unknown placeholder {{{name}}} in --job-command; allowed: "
                + ", ".join("{" + f + "}" for f in COMMAND_FIELDS)
            )


def job_worker(job_command: str | None) -> Worker:
    """The built-in builder (a Python worker) or the user's command."""
    if job_command:
        check_job_command(job_command)
        # Staged: the command writes next to its final folder, which appears only on success.
        return Worker(
            "python",
            "salvo.jobs.command:run_job_command",
            verify="salvo.jobs.command:check_job_command_output",
            version="1",
            preload=("salvo.jobs.command",),
            stage=("output_dir", "job_output_dir"),
        )
    return Worker(
        "python",
        "salvo.jobs.builder:run_job",
        verify="salvo.jobs.builder:verify_job",
        version="1",
        preload=("salvo.jobs.builder",),
        stage=("output_dir",),
    )


def scan_paths(output_dir: str | Path) -> tuple[Path, Path]:
    """(plan file, scan cache folder) of the shared scan for a batch writing to ``output_dir``."""
    root = Path(output_dir) / ".salvo" / "scan"
    return root / "plan.json", root / "cache"


def job_items(
    jobs: Sequence[RenderedJob],
    *,
    input: str | Path,
    output_dir: str | Path,
    max_ram_mb: int,
    sample: int | None,
    job_command: str | None = None,
) -> list[Item]:
    """One spine item per job; resume keys on the job file's and the input's content."""
    if max_ram_mb < MIN_RAM_MB:
        raise UsageError(
            f"--max-ram-mb {max_ram_mb} is too small: the Parquet reader alone needs about {MIN_RAM_MB} MB"
        )
    check_input(input)
    items = []
    input, output_dir = Path(input).resolve(), Path(output_dir).resolve()
    plan_file, scan_dir = scan_paths(output_dir)
    scan_jobs = [
        ScanJob(j.spec.niche, j.spec.naf, j.spec.active_only, sample if sample is not None else j.spec.sample_rows)
        for j in jobs
    ]
    shared = not job_command and prefer_shared_scan(input, scan_jobs)
    if shared:
        write_plan(plan_file, input_path=input, jobs=scan_jobs)
    else:
        plan_file.unlink(missing_ok=True)  # an older batch's plan must not override this choice
    for job in jobs:
        final = Path(output_dir) / job.spec.niche
        if job_command:
            params: dict[str, Any] = {
                "job_file": str(job.path),
                "input": str(input),
                "output_dir": str(output_dir),
                "job_output_dir": str(final),
                "naf_code": job.naf.compact,
                "niche_name": job.spec.niche,
                "profile": job.spec.profile.name,
                "sample": "" if sample is None else str(sample),
                "max_ram_mb": str(max_ram_mb),
                "command": job_command,
            }
        else:
            # Params key resume, so they stay the same whether or not this run shares a scan.
            params = {
                "job_file": str(job.path),
                "input": str(input),
                "output_dir": str(output_dir),
                "max_ram_mb": max_ram_mb,
                "sample": sample,
                "plan_file": str(plan_file),
                "scan_dir": str(scan_dir),
            }
        items.append(Item(id=job.naf.compact, inputs=(str(job.path), str(input)), params=params, outputs=(str(final),)))
    return items


#: Columns whose type is checked up front: (name, what it must be, type test).
_TYPED_COLUMNS = (
    (NAF_COLUMN, "text", lambda t: _is_text(t)),
    (ACTIVE_COLUMN, "text", lambda t: _is_text(t)),
    (
        DATE_COLUMN,
        "a date, a timestamp or YYYY-MM-DD text",
        lambda t: _is_text(t) or pa.types.is_date(t) or pa.types.is_timestamp(t),
    ),
    (COMMUNE_COLUMN, "text (or whole numbers)", lambda t: _is_text(t) or pa.types.is_integer(t)),
    (POSTCODE_COLUMN, "text (or whole numbers)", lambda t: _is_text(t) or pa.types.is_integer(t)),
    ("trancheEffectifsEtablissement", "text (or whole numbers)", lambda t: _is_text(t) or pa.types.is_integer(t)),
)


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def check_input(path: str | Path) -> None:
    """Refuse an input that is missing, neither Parquet nor CSV, lacks SIRENE's NAF and state
    columns, or holds a column the jobs read in a type they cannot read (one line naming it)."""
    if not Path(path).exists():
        raise UsageError(f"--input {path}: no such file")
    p = regular_file(path, "--input")
    try:
        if is_csv(p):
            names = csv_header(p)
            types = dict.fromkeys(names, pa.string())
        else:
            schema = pq.ParquetFile(p).schema_arrow
            names, types = schema.names, dict(zip(schema.names, schema.types))
    except InputError as exc:
        raise UsageError(f"--input {str(exc)}") from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise UsageError(f"--input {p}: not a Parquet file, nor a CSV file named *.csv ({exc})") from None
    for col in (NAF_COLUMN, ACTIVE_COLUMN):
        if col not in names:
            raise UsageError(f"--input {p}: column {col!r} is missing; is this a SIRENE establishments file?")
    for col, what, ok in _TYPED_COLUMNS:
        if col in types and not ok(types[col]):
            raise UsageError(f"--input {p}: column {col!r} is {types[col]}, not {what}")


def _rows_of(folder: Path) -> int | None:
    try:
        return pq.ParquetFile(folder / "dataset.parquet").metadata.num_rows
    except (OSError, pa.ArrowInvalid):
        return None


def job_entries(
    jobs: Sequence[RenderedJob], results: Sequence[ItemResult], *, output_dir: str | Path
) -> list[dict[str, Any]]:
    """The per-code entries of ``--json``: code, status, duration, rows, outputs, error, warnings."""
    by_id = {r.item_id: r for r in results}
    output_dir = Path(output_dir).resolve()
    entries = []
    for job in jobs:
        r = by_id[job.naf.compact]
        folder = Path(output_dir) / job.spec.niche
        rows = r.metrics.get("rows")
        if rows is None and r.status.ok:
            rows = _rows_of(folder)
        warnings = list(r.metrics.get("warnings", []))
        if rows == 0 and not warnings:
            warnings.append(f"NAF {job.naf.dotted} matched no row")
        entries.append(
            {
                "code": job.naf.compact,
                "naf": job.naf.dotted,
                "level": job.naf.level,
                "status": r.status.value,
                "duration_s": r.duration_s,
                "rows": rows,
                "job_file": str(job.path),
                "output_dir": str(folder),
                "outputs": list(r.outputs),
                "error": r.reason if r.status.failed or r.status.value == "not_run" else "",
                "warnings": warnings,
                "resumed": r.cached,
                "peak_rss_mb": r.peak_rss_mb,
            }
        )
    return entries
