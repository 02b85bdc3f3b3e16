"""Streaming over a SIRENE Parquet: pushed-down filters, record batches sized to a RAM budget."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from salvo.errors import InputError
from salvo.jobs.naf import NAF_COLUMN, NafCode

ACTIVE_COLUMN = "etatAdministratifEtablissement"
#: Live copies of a batch's worth of data while it is filtered, derived and written (CSV + Parquet).
COPIES_PER_BATCH = 8
MIN_BATCH_ROWS = 1_024
#: Measured: the Parquet reader keeps about this much whatever the batch size (pages, dictionaries).
READER_BASE_MB = 40.0
READER_PER_COLUMN_MB = 1.5
MAX_BATCH_ROWS = 1 << 20
#: Columns a job filter reads besides the kept ones.
FILTER_COLUMNS = (NAF_COLUMN, ACTIVE_COLUMN)


def naf_expression(codes: Sequence[NafCode]) -> ds.Expression:
    """A filter selecting rows under any of ``codes``: equality for a subclass, a range for a prefix.

    A range (not ``starts_with``) lets Parquet row-group statistics prune groups that cannot match.
    """
    field = pc.field(NAF_COLUMN)
    expr = None
    for code in codes:
        if code.is_prefix:
            low, high = code.prefix_bounds()
            term = (field >= low) & (field < high)
        else:
            term = field == code.dotted
        expr = term if expr is None else expr | term
    if expr is None:
        raise ValueError("naf_expression needs at least one code")
    return expr


def job_expression(codes: Sequence[NafCode], *, active_only: bool) -> ds.Expression:
    """The full pushed-down filter of one job."""
    expr = naf_expression(codes)
    if active_only:
        expr = expr & (pc.field(ACTIVE_COLUMN) == "A")
    return expr


def naf_mask(values: pa.Array, codes: Sequence[NafCode]) -> pa.Array:
    """Whether each SIRENE NAF value falls under any of ``codes`` (null values: False)."""
    mask = None
    for code in codes:
        if code.is_prefix:
            low, high = code.prefix_bounds()
            term = pc.and_(pc.greater_equal(values, low), pc.less(values, high))
        else:
            term = pc.equal(values, code.dotted)
        mask = term if mask is None else pc.or_(mask, term)
    return pc.fill_null(mask, False)


class BatchMasks:
    """Masks of many jobs over one batch: the NAF column is dictionary-encoded once, each job's
    codes are tested on the few distinct values, and the answer is spread back by index."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        encoded = pc.dictionary_encode(batch.column(NAF_COLUMN))
        self._values, self._indices = encoded.dictionary, encoded.indices
        self._active = pc.fill_null(pc.equal(batch.column(ACTIVE_COLUMN), "A"), False)

    def mask(self, codes: Sequence[NafCode], *, active_only: bool) -> pa.Array:
        """Rows of the batch under ``codes`` (and active, if asked)."""
        rows = pc.fill_null(pc.take(naf_mask(self._values, codes), self._indices), False)
        return pc.and_(rows, self._active) if active_only else rows


def open_dataset(path: str | Path) -> ds.Dataset:
    """Open a Parquet file (or folder) as a dataset; an InputError if it is not one."""
    try:
        return ds.dataset(str(path), format="parquet")
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a readable Parquet dataset: {exc}") from None


def check_columns(dataset: ds.Dataset, columns: Iterable[str], *, source: str) -> None:
    """Raise InputError naming the first required column the dataset lacks."""
    names = set(dataset.schema.names)
    for col in columns:
        if col not in names:
            raise InputError(f"{source}: column {col!r} is missing from the input Parquet")


def row_bytes(dataset: ds.Dataset, columns: Sequence[str] | None, *, sample_rows: int = 4_096) -> float:
    """Decoded Arrow bytes per row of ``columns``, measured on the first rows of the first file.

    Parquet footers understate this for dictionary-encoded strings (they count the indices), so a
    small sample is decoded instead.
    """
    for path in dataset.files:
        pf = pq.ParquetFile(path, memory_map=False, pre_buffer=False)
        if pf.metadata.num_rows == 0:
            continue
        batch = next(pf.iter_batches(batch_size=sample_rows, columns=list(columns) if columns is not None else None, use_threads=False))
        return max(16.0, 1.25 * batch.nbytes / max(batch.num_rows, 1))
    return 16.0


def batch_rows_for(max_ram_mb: float, *, bytes_per_row: float, reserve_mb: float = 0.0) -> int:
    """Rows per record batch so that every live copy of one batch fits in ``max_ram_mb``."""
    budget = max(max_ram_mb - reserve_mb, max_ram_mb / 8) * 2**20
    rows = int(budget / (COPIES_PER_BATCH * bytes_per_row))
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, rows))


def reader_reserve_mb(n_columns: int) -> float:
    """Memory the Parquet reader holds whatever the batch size: page and dictionary buffers per column."""
    return READER_BASE_MB + READER_PER_COLUMN_MB * n_columns


def plan_batches(dataset: ds.Dataset, *, columns: Sequence[str] | None, max_ram_mb: float) -> int:
    """Rows per batch for this dataset under ``max_ram_mb`` (the reader's own buffers reserved)."""
    per_row = row_bytes(dataset, columns)
    n = len(dataset.schema.names) if columns is None else len(columns)
    return batch_rows_for(max_ram_mb, bytes_per_row=per_row, reserve_mb=reader_reserve_mb(n))


def iter_batches(
    dataset: ds.Dataset,
    *,
    filter: ds.Expression | None,
    columns: Sequence[str] | None,
    batch_rows: int,
    prune_only: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Matching rows, batch by batch, holding about one batch in memory.

    Push-down happens at two levels: each Parquet fragment is subset to the row groups whose
    statistics can match ``filter`` (the rest are never read), and only ``columns`` plus the
    filter's own columns are decoded. The surviving row groups are then streamed page by page.
    (The dataset Scanner's own read-ahead and thread pool held 2-3x more memory in our measurements.)
    With ``prune_only`` the filter only skips row groups; the caller filters rows itself.
    """
    names = list(columns) if columns is not None else list(dataset.schema.names)
    needed = list(names)
    if filter is not None and not prune_only:
        for col in FILTER_COLUMNS:
            if col in dataset.schema.names and col not in needed:
                needed.append(col)
    for fragment in dataset.get_fragments():
        if filter is not None:
            fragment = fragment.subset(filter=filter)
        groups = [rg.id for rg in fragment.row_groups]
        if not groups:
            continue
        pf = pq.ParquetFile(fragment.path, memory_map=False, pre_buffer=False, buffer_size=1 << 16)
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=needed, use_threads=False):
            if filter is not None and not prune_only:
                table = pa.Table.from_batches([batch]).filter(filter)
                if table.num_rows == 0:
                    continue
                batch = table.combine_chunks().to_batches()[0]
            if batch.num_rows:
                yield batch.select(names) if needed != names else batch


class Coalescer:
    """Gathers small filtered batches into tables of about ``rows`` rows (bounded memory)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._parts: list[pa.RecordBatch] = []
        self._count = 0

    def add(self, batch: pa.RecordBatch) -> pa.Table | None:
        """Buffer ``batch``; return a table once enough rows are buffered."""
        self._parts.append(batch)
        self._count += batch.num_rows
        return self.flush() if self._count >= self.rows else None

    def flush(self) -> pa.Table | None:
        """Whatever is buffered, as one table (None when empty)."""
        if not self._parts:
            return None
        table = pa.Table.from_batches(self._parts)
        self._parts, self._count = [], 0
        return table
