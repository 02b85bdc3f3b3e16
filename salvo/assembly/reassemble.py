"""Re-assembly: every completed assembly of a result, one file at a time, into one dataset.

Only ``completed`` assemblies are read; ``started`` (running or interrupted) and ``failed`` ones
are reported and left out. Each assembly appears once, with an ``assembly_id`` column added.
All schemas must agree; the first that differs is named in the error. Writing to Parquet streams
record batches, so memory does not grow with the number of assemblies.

Pickles (the seed's ``.pkl`` files) are refused unless ``allow_pickle=True``: unpickling a file
from shared storage can run arbitrary code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salvo.assembly.ids import data_file_name
from salvo.assembly.ledger import LedgerRow, read_ledger
from salvo.errors import UsageError
from salvo.storage import StorageTarget

BATCH_ROWS = 65_536
#: How many assemblies a re-assembly reads ahead of the one being written.
PREFETCH = 3


class SchemaMismatch(UsageError):
    """An assembly's columns or types differ from the others'."""


class PickleRefused(UsageError):
    """A data file is a pickle and ``allow_pickle`` was not given."""


class MissingData(RuntimeError):
    """The ledger says ``completed`` but the data file is not there."""


@dataclass(frozen=True)
class Part:
    """One assembly's data file to read."""

    assembly_id: str
    rel: str
    kind: str  # "parquet" or "pickle"


@dataclass
class ReassemblyReport:
    """What a re-assembly read, what it left out and why, and where it wrote."""

    result_name: str
    included: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # assembly id -> reason
    rows: int = 0
    output: str | None = None
    seeds: dict[str, int | None] = field(default_factory=dict)  # included assembly id -> seed
    config_hashes: dict[str, str] = field(default_factory=dict)  # included assembly id -> hash

    def repeated_seeds(self) -> dict[int, list[str]]:
        """Included assemblies that share a seed and a config: their samples are the same."""
        groups: dict[tuple[int, str], list[str]] = {}
        for aid in self.included:
            seed = self.seeds.get(aid)
            if seed is not None:
                groups.setdefault((seed, self.config_hashes.get(aid, "")), []).append(aid)
        return {seed: ids for (seed, _), ids in groups.items() if len(ids) > 1}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "result_name": self.result_name,
            "included": list(self.included),
            "excluded": dict(self.excluded),
            "n_included": len(self.included),
            "n_excluded": len(self.excluded),
            "rows": self.rows,
            "output": self.output,
            "seeds": {aid: self.seeds.get(aid) for aid in self.included},
            "repeated_seeds": {str(k): v for k, v in self.repeated_seeds().items()},
        }


def _reason(row: LedgerRow) -> str:
    if row.status == "started":
        return "started (interrupted)" if row.interrupted else "started (not finished)"
    return f"failed: {row.message}" if row.message else "failed"


def plan_reassembly(
    exp: StorageTarget,
    result_name: str,
    *,
    allow_pickle: bool = False,
    seeds: Iterable[int] | None = None,
) -> tuple[list[Part], ReassemblyReport]:
    """Which files to read for ``result_name``, in ledger order, and what is left out.

    With ``seeds``, only assemblies generated with one of those base seeds are read.
    """
    report = ReassemblyReport(result_name)
    parts: list[Part] = []
    seen: set[str] = set()
    present = set(exp.list(""))
    wanted = None if seeds is None else {int(s) for s in seeds}
    for row in read_ledger(exp):
        if row.result_name and row.result_name != result_name:
            continue
        if row.assembly_id in seen:
            continue  # never count an assembly twice
        if wanted is not None and row.seed not in wanted:
            report.excluded[row.assembly_id] = (
                f"seed {row.seed} not selected" if row.seed is not None else "no recorded seed"
            )
            continue
        if row.status != "completed":
            report.excluded[row.assembly_id] = _reason(row)
            continue
        parquet = row.result_file or data_file_name(result_name, row.assembly_id)
        pickle = data_file_name(result_name, row.assembly_id, ext="pkl")
        if parquet in present and parquet.endswith(".parquet"):
            part = Part(row.assembly_id, parquet, "parquet")
        elif pickle in present or parquet.endswith(".pkl"):
            if not allow_pickle:
                raise PickleRefused(
                    f"assembly {row.assembly_id} is stored as a pickle ({pickle}); loading it can "
                    "run code: pass --allow-pickle (allow_pickle=True) only if you trust it"
                )
            part = Part(row.assembly_id, pickle if pickle in present else parquet, "pickle")
        elif not row.result_name:
            continue  # a legacy row of another result in a shared ledger
        else:
            raise MissingData(
                f"assembly {row.assembly_id} is completed but its data file {parquet} is missing from {exp.url}"
            )
        seen.add(row.assembly_id)
        parts.append(part)
        report.seeds[row.assembly_id] = row.seed
        report.config_hashes[row.assembly_id] = row.config_hash
    return parts, report


def _clean(schema: pa.Schema) -> pa.Schema:
    keep = [f.remove_metadata() for f in schema if f.name != "assembly_id"]
    return pa.schema(keep)


def describe_difference(expected: pa.Schema, got: pa.Schema) -> str:
    """A short human description of how ``got`` differs from ``expected``."""
    want = {f.name: f.type for f in expected}
    have = {f.name: f.type for f in got}
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if missing:
        return f"missing column(s) {', '.join(missing)}"
    if extra:
        return f"extra column(s) {', '.join(extra)}"
    for name, typ in want.items():
        if have[name] != typ:
            return f"column {name!r} is {have[name]} instead of {typ}"
    return "columns are in a different order"


def check_schema(part: Part, schema: pa.Schema, reference: tuple[str, pa.Schema] | None) -> tuple[str, pa.Schema]:
    """Raise ``SchemaMismatch`` naming ``part`` if ``schema`` differs from the reference's."""
    clean = _clean(schema)
    if reference is None:
        return part.assembly_id, clean
    ref_id, ref = reference
    if not clean.equals(ref):
        raise SchemaMismatch(
            f"schema of assembly {part.assembly_id} ({part.rel}) differs from "
            f"assembly {ref_id}: {describe_difference(ref, clean)}"
        )
    return reference


def _load(exp: StorageTarget, part: Part) -> pa.Table:
    """One assembly's whole table (memory is bounded by one assembly, not by how many)."""
    with exp.open_read(part.rel) as fh:
        if part.kind == "pickle":
            return pa.Table.from_pandas(pd.read_pickle(fh), preserve_index=False)
        return pq.ParquetFile(fh).read(use_threads=False)  # 1.5-3x cheaper than read_table


def _id_column(assembly_id: str, n: int) -> pa.Array:
    """``assembly_id`` repeated ``n`` times, built from buffers (no Python list of strings)."""
    raw = assembly_id.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw * n))


def parquet_writer(sink: Any, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer that dictionary-encodes only text columns (3x faster on numbers)."""
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return pq.ParquetWriter(sink, schema, use_dictionary=text or False)


def _with_id(batch: pa.RecordBatch, schema: pa.Schema, assembly_id: str) -> pa.RecordBatch:
    columns = [batch.column(f.name) for f in schema]
    ids = _id_column(assembly_id, batch.num_rows)
    full = schema.append(pa.field("assembly_id", pa.string()))
    return pa.RecordBatch.from_arrays([*columns, ids], schema=full)


def _footer_schema(exp: StorageTarget, part: Part) -> pa.Schema:
    with exp.open_read(part.rel) as fh:
        return pq.read_schema(fh)


def _precheck(exp: StorageTarget, parts: list[Part]) -> None:
    """Compare every Parquet footer before writing anything (footers are small; read in parallel,
    which hides S3 latency)."""
    footers = [p for p in parts if p.kind == "parquet"]
    reference = None
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="salvo-footers") as pool:
        for part, schema in zip(footers, pool.map(lambda p: _footer_schema(exp, p), footers)):
            reference = check_schema(part, schema, reference)


def iter_reassembled(exp: StorageTarget, parts: list[Part], *, prefetch: int = PREFETCH) -> Iterator[pa.RecordBatch]:
    """Record batches of every part in order, ``assembly_id`` added, schemas checked.

    Background threads read up to ``prefetch`` assemblies ahead, so reading overlaps with the
    caller's writing (and with S3 latency) while memory stays bounded by a few assemblies.
    """
    _precheck(exp, parts)
    reference: tuple[str, pa.Schema] | None = None
    queue = iter(parts)
    with ThreadPoolExecutor(max_workers=max(1, prefetch), thread_name_prefix="salvo-reassemble") as pool:
        pending: deque[tuple[Part, Future[pa.Table]]] = deque(
            (p, pool.submit(_load, exp, p)) for p in islice(queue, max(1, prefetch))
        )
        while pending:
            part, future = pending.popleft()
            following = next(queue, None)
            if following is not None:
                pending.append((following, pool.submit(_load, exp, following)))
            table = future.result()
            reference = check_schema(part, table.schema, reference)
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                yield _with_id(batch, reference[1], part.assembly_id)
            del table, future


def reassemble_frame(
    exp: StorageTarget,
    result_name: str,
    *,
    allow_pickle: bool = False,
    seeds: Iterable[int] | None = None,
) -> tuple[pd.DataFrame, ReassemblyReport]:
    """Every completed assembly of ``result_name`` as one DataFrame, and the report."""
    parts, report = plan_reassembly(exp, result_name, allow_pickle=allow_pickle, seeds=seeds)
    batches = list(iter_reassembled(exp, parts))
    report.included = [p.assembly_id for p in parts]
    if not batches:
        return pd.DataFrame(), report
    table = pa.Table.from_batches(batches)
    report.rows = table.num_rows
    return table.to_pandas(), report


def reassemble_to_parquet(
    exp: StorageTarget,
    result_name: str,
    *,
    out: StorageTarget,
    out_rel: str,
    allow_pickle: bool = False,
    seeds: Iterable[int] | None = None,
) -> ReassemblyReport:
    """Stream every completed assembly of ``result_name`` into one Parquet object, atomically."""
    parts, report = plan_reassembly(exp, result_name, allow_pickle=allow_pickle, seeds=seeds)
    if not parts:
        chosen = f" with seed {', '.join(map(str, seeds))}" if seeds is not None else ""
        raise UsageError(f"no completed assembly of {result_name!r}{chosen} in {exp.url}")
    with out.open_write(out_rel) as fh:
        writer: pq.ParquetWriter | None = None
        try:
            for batch in iter_reassembled(exp, parts):
                if writer is None:
                    writer = parquet_writer(fh, batch.schema)
                writer.write_batch(batch)
                report.rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
    report.included = [p.assembly_id for p in parts]
    report.output = out.uri(out_rel)
    return report
