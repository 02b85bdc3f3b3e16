"""The shared scan: one pass over the input writes every job's matching rows to its own small file.

Twenty jobs over one input then cost one full scan plus twenty small reads, not twenty full scans.
The scan is lazy: the first job that needs it runs it under a file lock, the others reuse it, and a
resumed batch whose jobs are all done never pays for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from filelock import FileLock

from salvo.fsutil import atomic_dir, atomic_write_text
from salvo.jobs.naf import NafCode, parse_naf
from salvo.jobs.stream import (
    ACTIVE_COLUMN,
    BatchMasks,
    Coalescer,
    iter_batches,
    naf_expression,
    open_dataset,
    plain_schema,
    plan_batches,
)

COMPLETE = "_COMPLETE.json"


@dataclass(frozen=True)
class ScanJob:
    """One job's share of the scan: its name and filters."""

    niche: str
    naf: tuple[NafCode, ...]
    active_only: bool
    limit: int | None = None  # the job keeps only its first `limit` rows: stop dealing it more


def input_fingerprint(path: str | Path) -> str:
    """Size, mtime and inode of the input: changes whenever its content is replaced or edited."""
    st = os.stat(path)
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def write_plan(path: str | Path, *, input_path: str | Path, jobs: list[ScanJob]) -> Path:
    """Record which jobs share the scan of ``input_path`` (read by each job's worker)."""
    doc = {
        "input": str(Path(input_path).resolve()),
        "jobs": [
            {"niche": j.niche, "naf": [c.compact for c in j.naf], "active_only": j.active_only, "limit": j.limit}
            for j in jobs
        ],
    }
    return atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True))


def read_plan(path: str | Path) -> tuple[str, list[ScanJob]]:
    """The input and jobs of a plan written by :func:`write_plan`."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    jobs = [
        ScanJob(j["niche"], tuple(parse_naf(c) for c in j["naf"]), bool(j["active_only"]), j.get("limit"))
        for j in doc["jobs"]
    ]
    return doc["input"], jobs


def prefer_shared_scan(input_path: str | Path, jobs: list[ScanJob]) -> bool:
    """Whether one shared scan reads less than one pruned scan per job, judged on row-group statistics.

    On a file in SIREN order (the SIRENE stock) every row group may hold every code, so pruned scans
    would read the file once per job. On a file clustered by NAF code they read a few row groups each,
    and the shared scan's extra pass and scratch files are not worth it.
    """
    total, pruned = 0, 0
    for fragment in open_dataset(input_path).get_fragments():
        if not isinstance(fragment, ds.ParquetFileFragment):
            return len(jobs) > 1  # a CSV file is read whole by each job: one shared pass is always less
        total += fragment.num_row_groups
        for j in jobs:
            expr = naf_expression(j.naf)
            if j.active_only:
                expr = expr & (pc.field(ACTIVE_COLUMN) == "A")
            pruned += len(fragment.subset(filter=expr).row_groups)
    return len(jobs) > 1 and pruned > total


def _scan_key(input_path: str, jobs: list[ScanJob]) -> str:
    desc = json.dumps(
        [input_fingerprint(input_path), [[j.niche, [c.compact for c in j.naf], j.active_only, j.limit] for j in jobs]]
    )
    return hashlib.sha256(desc.encode()).hexdigest()[:16]


def _run_scan(input_path: str, jobs: list[ScanJob], dest: Path, *, max_ram_mb: float) -> dict[str, int]:
    dataset = open_dataset(input_path)
    # Half the budget for the batch being read, half for the rows buffered per job before writing.
    batch_rows = plan_batches(dataset, columns=None, max_ram_mb=max_ram_mb, share=0.5)
    # The union filter is pushed down; rows are then dealt to each job with its own mask.
    union = naf_expression([c for j in jobs for c in j.naf])
    if all(j.active_only for j in jobs):
        union = union & (pc.field(ACTIVE_COLUMN) == "A")
    per_job = max(256, batch_rows // max(len(jobs), 1))
    # Scratch files read once: no compression or dictionaries, which made writing them the bottleneck.
    writers = {
        j.niche: pq.ParquetWriter(
            dest / f"{j.niche}.parquet",
            plain_schema(dataset.schema),
            compression="none",
            use_dictionary=False,
            write_statistics=False,
        )
        for j in jobs
    }
    buffers = {j.niche: Coalescer(per_job) for j in jobs}
    counts = {j.niche: 0 for j in jobs}
    try:
        for batch in iter_batches(dataset, filter=union, columns=None, batch_rows=batch_rows, prune_only=True):
            open_jobs = [j for j in jobs if j.limit is None or counts[j.niche] < j.limit]
            if not open_jobs:
                break  # every job has all the rows it keeps: the rest of the file is never read
            masks = BatchMasks(batch)
            for j in open_jobs:
                part = batch.filter(masks.mask(j.naf, active_only=j.active_only))
                if j.limit is not None:
                    part = part.slice(0, j.limit - counts[j.niche])
                if part.num_rows == 0:
                    continue
                counts[j.niche] += part.num_rows
                full = buffers[j.niche].add(part)
                if full is not None:
                    writers[j.niche].write_table(full)
        for j in jobs:
            rest = buffers[j.niche].flush()
            if rest is not None:
                writers[j.niche].write_table(rest)
    finally:
        for w in writers.values():
            w.close()
    return counts


def ensure_scan(plan_file: str | Path, *, cache_dir: str | Path, max_ram_mb: float) -> tuple[Path, dict[str, int]]:
    """The folder of per-job partitions for ``plan_file``, scanning the input once if nobody has yet."""
    input_path, jobs = read_plan(plan_file)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = _scan_key(input_path, jobs)
    dest = cache / key
    with FileLock(str(cache / f"{key}.lock")):
        if not (dest / COMPLETE).is_file():
            with atomic_dir(dest) as tmp:
                counts = _run_scan(input_path, jobs, tmp, max_ram_mb=max_ram_mb)
                atomic_write_text(tmp / COMPLETE, json.dumps({"rows": counts, "input": input_path}))
            # An older scan of another input or plan is now useless.
            for other in cache.iterdir():
                if other.is_dir() and other.name != key and not other.name.startswith("."):
                    shutil.rmtree(other, ignore_errors=True)
    counts = json.loads((dest / COMPLETE).read_text(encoding="utf-8"))["rows"]
    return dest, counts
