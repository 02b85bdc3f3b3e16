"""The built-in builder job: one job file -> ``dataset.csv``, ``dataset.parquet`` and ``logs/``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from salvo.errors import InputError, UsageError
from salvo.fsutil import atomic_dir, atomic_write_text
from salvo.jobs.derive import add_derived, derived_inputs
from salvo.jobs.naf import NAF_COLUMN
from salvo.jobs.scan import ensure_scan, read_plan
from salvo.jobs.schema import JobSpec, load_job
from salvo.jobs.stream import (
    ACTIVE_COLUMN,
    Coalescer,
    check_columns,
    iter_batches,
    job_expression,
    lean_allocation,
    open_dataset,
    plain_schema,
    plan_batches,
)

DEFAULT_MAX_RAM_MB = 512
CSV_NAME, PARQUET_NAME, LOGS_NAME = "dataset.csv", "dataset.parquet", "logs"


def _columns(spec: JobSpec, schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(columns to read, columns to keep) for the job's profile."""
    keep = list(spec.profile.columns) if spec.profile.columns is not None else list(schema.names)
    read = list(keep)
    derived = []
    for name in spec.profile.derived:
        inputs = derived_inputs(name, schema.names)
        if inputs is None:
            continue
        derived.append(name)
        read += [c for c in inputs if c not in read]
    return read, keep + derived


class _Writers:
    """CSV and Parquet writers opened on the first batch, so both share its schema."""

    def __init__(self, folder: Path, formats: tuple[str, ...]) -> None:
        self.folder, self.formats = folder, formats
        self.csv: pacsv.CSVWriter | None = None
        self.parquet: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.csv is None and self.parquet is None:
            if "csv" in self.formats:
                self.csv = pacsv.CSVWriter(self.folder / CSV_NAME, table.schema)
            if "parquet" in self.formats:
                self.parquet = pq.ParquetWriter(self.folder / PARQUET_NAME, table.schema)
        if self.csv is not None:
            self.csv.write_table(table)
        if self.parquet is not None:
            self.parquet.write_table(table)

    def close(self) -> None:
        for w in (self.csv, self.parquet):
            if w is not None:
                w.close()


def _source(
    spec: JobSpec, *, input: str, limit: int | None, plan_file: str | None, scan_dir: str | None, max_ram_mb: float
):
    """(dataset, filter, how) for this job: its share of the shared scan when planned, else the input."""
    if plan_file and scan_dir and Path(plan_file).is_file():
        planned_input, jobs = read_plan(plan_file)
        # Use the scan only if it dealt this job exactly its rows (the job file may have been edited).
        planned = [
            j
            for j in jobs
            if j.niche == spec.niche
            and j.naf == spec.naf
            and j.active_only == spec.active_only
            and (j.limit is None or (limit is not None and j.limit >= limit))
        ]
        if planned_input == str(Path(input).resolve()) and planned:
            folder, _ = ensure_scan(plan_file, cache_dir=scan_dir, max_ram_mb=max_ram_mb)
            return open_dataset(folder / f"{spec.niche}.parquet"), None, "shared scan"
    dataset = open_dataset(input)
    return dataset, job_expression(spec.naf, active_only=spec.active_only, columns=dataset.schema.names), "direct scan"


def run_job(
    job_file: str,
    *,
    input: str,
    output_dir: str,
    max_ram_mb: float = DEFAULT_MAX_RAM_MB,
    sample: int | None = None,
    plan_file: str | None = None,
    scan_dir: str | None = None,
) -> dict[str, Any]:
    """Run one job file over the input; return its outputs and metrics (rows, warnings).

    Memory: the whole process grows by less than ``max_ram_mb`` over its idle size (see docs/jobs.md).
    """
    with lean_allocation():
        try:
            return _run_job(
                job_file,
                input=input,
                output_dir=output_dir,
                max_ram_mb=max_ram_mb,
                sample=sample,
                plan_file=plan_file,
                scan_dir=scan_dir,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            # The same input fails the same way on every try: bad input (exit 65), never retried.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{input}: cannot be read as SIRENE establishments: {first}") from None


def _run_job(
    job_file: str,
    *,
    input: str,
    output_dir: str,
    max_ram_mb: float,
    sample: int | None,
    plan_file: str | None,
    scan_dir: str | None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        spec = load_job(job_file)
    except UsageError as exc:
        raise InputError(str(exc)) from None
    if not Path(input).exists():
        raise InputError(f"input {input} does not exist")
    check_columns(open_dataset(input), [NAF_COLUMN, ACTIVE_COLUMN, *(spec.profile.columns or ())], source=input)
    limit = sample if sample is not None else spec.sample_rows
    dataset, expr, how = _source(
        spec, input=input, limit=limit, plan_file=plan_file, scan_dir=scan_dir, max_ram_mb=max_ram_mb
    )
    read, keep = _columns(spec, dataset.schema)
    batch_rows = plan_batches(dataset, columns=read, max_ram_mb=max_ram_mb)
    final = Path(output_dir) / spec.niche
    rows, batches = 0, 0
    with atomic_dir(final) as tmp:
        writers = _Writers(tmp, spec.formats)
        buffer = Coalescer(batch_rows)
        try:
            for batch in iter_batches(dataset, filter=expr, columns=read, batch_rows=batch_rows):
                if limit is not None and rows + batch.num_rows > limit:
                    batch = batch.slice(0, limit - rows)
                batch = add_derived(batch, names=spec.profile.derived).select(keep)
                rows += batch.num_rows
                batches += 1
                full = buffer.add(batch)
                if full is not None:
                    writers.write(full)
                if limit is not None and rows >= limit:
                    break
            rest = buffer.flush()
            if rest is None and rows == 0:
                # Still write files with the right header and schema, so downstream readers work.
                empty = pa.RecordBatch.from_pylist(
                    [], schema=pa.schema([plain_schema(dataset.schema).field(c) for c in read])
                )
                rest = pa.Table.from_batches([add_derived(empty, names=spec.profile.derived).select(keep)])
            if rest is not None:
                writers.write(rest)
        finally:
            writers.close()
        warnings = []
        if rows == 0:
            codes = ", ".join(c.dotted for c in spec.naf)
            warnings.append(
                f"NAF {codes} matched no row" + (" (active establishments only)" if spec.active_only else "")
            )
        metrics = {
            "niche": spec.niche,
            "rows": rows,
            "batches": batches,
            "batch_rows": batch_rows,
            "max_ram_mb": max_ram_mb,
            "sample": limit,
            "profile": spec.profile.name,
            "source": how,
            "warnings": warnings,
            "build_s": round(time.perf_counter() - t0, 3),
        }
        logs = tmp / LOGS_NAME
        logs.mkdir()
        atomic_write_text(logs / "build.json", json.dumps(metrics, indent=1))
        atomic_write_text(
            logs / "build.log",
            f"job {job_file}\ninput {input} ({how})\nfilters naf={[c.dotted for c in spec.naf]} "
            f"active_only={spec.active_only}\nprofile {spec.profile.name}: sample={limit} columns={keep}\n"
            f"rows {rows} in {batches} batches of <= {batch_rows} (max_ram_mb={max_ram_mb})\n"
            + "".join(f"warning: {w}\n" for w in warnings),
        )
    outputs = [str(final / name) for name in (CSV_NAME, PARQUET_NAME) if name.split(".")[1] in spec.formats]
    return {"outputs": outputs + [str(final / LOGS_NAME)], "metrics": metrics}


def count_rows(path: str | Path) -> int | None:
    """Rows of a dataset file: Parquet from its footer, CSV by streaming it (header excluded); None if unreadable."""
    p = Path(path)
    try:
        if p.suffix == ".parquet":
            return pq.ParquetFile(p).metadata.num_rows
        import csv

        with open(p, newline="", encoding="utf-8", errors="replace") as fh:
            header = next(csv.reader(fh), [])
        rows = 0
        as_text = pacsv.ConvertOptions(column_types={name: pa.string() for name in header})  # no type guessing
        with pacsv.open_csv(p, convert_options=as_text) as reader:
            for batch in reader:
                rows += batch.num_rows
        return rows
    except (OSError, pa.ArrowInvalid):
        return None


def check_outputs(job_file: str | Path, *, output_dir: str | Path, reported: int | None = None) -> str | None:
    """Why the job's outputs are incomplete (a reason string), or None when they are all there.

    The jobs output contract: every dataset file the job's formats ask for, each holding the rows
    the job reported (``reported``, else its ``build.json``).
    """
    try:
        spec = load_job(job_file)
    except UsageError as exc:
        return str(exc)
    folder = Path(output_dir) / spec.niche
    if not (folder / LOGS_NAME / "build.json").is_file():
        return f"{folder / LOGS_NAME / 'build.json'} is missing"
    logged = json.loads((folder / LOGS_NAME / "build.json").read_text(encoding="utf-8")).get("rows")
    expected = logged if reported is None else reported
    if reported is not None and logged != reported:
        return f"{folder / LOGS_NAME / 'build.json'} says {logged} rows, the job reported {reported}"
    for fmt, name in (("csv", CSV_NAME), ("parquet", PARQUET_NAME)):
        if fmt not in spec.formats:
            continue
        if not (folder / name).is_file():
            return f"{folder / name} is missing"
        got = count_rows(folder / name)
        if got is None:
            return f"{folder / name} is not readable"
        if got != expected:
            return f"{folder / name} has {got} rows, the job reported {expected}"
    return None


def verify_job(item: Any, result: Any) -> str | None:
    """Spine output contract (on the staged folder): a built job whose files are missing or disagree
    with the rows it reported is a silent failure."""
    reported = (getattr(result, "metrics", None) or {}).get("rows")
    return check_outputs(
        item.params["job_file"],
        output_dir=item.params["output_dir"],
        reported=reported if isinstance(reported, int) else None,
    )
