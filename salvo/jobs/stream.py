"""Streaming over a SIRENE Parquet: pushed-down filters, record batches sized to a RAM budget."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from salvo.errors import InputError
from salvo.jobs.naf import NAF_COLUMN, NafCode

ACTIVE_COLUMN = "etatAdministratifEtablissement"
#: The whole job process may grow by at most ``max_ram_mb``; it plans for this share of it, and the
#: rest is the margin for what planning cannot see (allocator slack, code pages, Python objects).
TARGET_SHARE = 0.6
#: Live copies of a batch's worth of decoded data while it is read, filtered, derived, coalesced and
#: written (CSV + Parquet): measured at 7-8 on the 1M-row synthetic input, rounded up.
COPIES_PER_BATCH = 10
#: Writers, compute kernels and Python objects, whatever the batch size.
FIXED_MB = 12.0
#: The least the reader is assumed to hold, when it cannot be measured (no /proc).
READER_BASE_MB = 24.0
MIN_BATCH_ROWS = 1_024
MAX_BATCH_ROWS = 1 << 20
#: Which nomenclature a row's NAF code belongs to; only ``NAFRev2`` rows match a job, where the
#: input has this column (older rows carry NAFRev1, NAF1993 or NAP codes that look alike).
NOMENCLATURE_COLUMN = "nomenclatureActivitePrincipaleEtablissement"
NAF_REV2 = "NAFRev2"
#: Columns a job filter reads besides the kept ones.
FILTER_COLUMNS = (NAF_COLUMN, ACTIVE_COLUMN, NOMENCLATURE_COLUMN)
#: Suffixes of inputs read as CSV (every column as text, like INSEE's official file).
CSV_SUFFIXES = (".csv", ".csv.gz")


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


def job_expression(codes: Sequence[NafCode], *, active_only: bool, columns: Iterable[str] = ()) -> ds.Expression:
    """The full pushed-down filter of one job over a file with ``columns`` (NAF rév. 2 rows only,
    when the file says which nomenclature each row uses)."""
    expr = naf_expression(codes)
    if active_only:
        expr = expr & (pc.field(ACTIVE_COLUMN) == "A")
    if NOMENCLATURE_COLUMN in set(columns):
        expr = expr & (pc.field(NOMENCLATURE_COLUMN) == NAF_REV2)
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
        self._rev2 = None
        if NOMENCLATURE_COLUMN in batch.schema.names:
            self._rev2 = pc.fill_null(pc.equal(batch.column(NOMENCLATURE_COLUMN), NAF_REV2), False)

    def mask(self, codes: Sequence[NafCode], *, active_only: bool) -> pa.Array:
        """Rows of the batch under ``codes`` (NAF rév. 2 rows only, and active, if asked)."""
        rows = pc.fill_null(pc.take(naf_mask(self._values, codes), self._indices), False)
        if self._rev2 is not None:
            rows = pc.and_(rows, self._rev2)
        return pc.and_(rows, self._active) if active_only else rows


def is_csv(path: str | Path) -> bool:
    """Whether ``path`` is read as CSV: named ``*.csv`` (or ``*.csv.gz``) and not Parquet inside."""
    p = Path(path)
    if not p.name.lower().endswith(CSV_SUFFIXES) or p.is_dir():
        return False
    try:
        with open(p, "rb") as fh:
            return fh.read(4) != b"PAR1"
    except OSError:
        return True


def csv_header(path: str | Path) -> list[str]:
    """The column names on the first line of a CSV file (an InputError if there is none)."""
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(1 << 20)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: the first line is not UTF-8 text; is this a CSV file?") from None
    names = next(csv.reader([text]), [])
    if len(names) < 2:
        raise InputError(f"{path}: the first line is not a comma-separated header")
    return names


def _csv_convert(columns: Iterable[str], include: Sequence[str] | None = None) -> pacsv.ConvertOptions:
    # Every column as text, empty fields as empty strings: exactly what INSEE's file holds.
    return pacsv.ConvertOptions(
        column_types={n: pa.string() for n in columns},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        include_columns=list(include) if include is not None else None,
    )


def open_dataset(path: str | Path) -> ds.Dataset:
    """Open a Parquet file (or folder), or a CSV file (every column as text), as a dataset;
    an InputError if it is neither."""
    try:
        if is_csv(path):
            names = csv_header(path)
            return ds.dataset(str(path), format=ds.CsvFileFormat(convert_options=_csv_convert(names)))
        return ds.dataset(str(path), format="parquet")
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a readable Parquet dataset: {exc}") from None


def _csv_row_bytes(path: str | Path) -> float:
    """Raw bytes per line of a CSV file, from its first MiB."""
    with pa.input_stream(str(path), compression="detect") as stream:
        head = stream.read(1 << 20)
    return max(16.0, len(head) / max(head.count(b"\n"), 1))


def _csv_batches(path: str, *, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Stream a CSV file in blocks of about ``batch_rows`` lines, decoding only ``columns``."""
    block = int(min(64 << 20, max(1 << 16, batch_rows * _csv_row_bytes(path))))
    try:
        reader = pacsv.open_csv(
            pa.input_stream(path, compression="detect"),
            read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
            convert_options=_csv_convert(columns, include=columns),
        )
        for batch in reader:
            yield batch
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not a readable CSV file: {str(exc).splitlines()[0]}") from None


def check_columns(dataset: ds.Dataset, columns: Iterable[str], *, source: str) -> None:
    """Raise InputError naming the first required column the dataset lacks."""
    names = set(dataset.schema.names)
    for col in columns:
        if col not in names:
            raise InputError(f"{source}: column {col!r} is missing from the input")


def _rss_mb() -> float | None:
    """Resident memory of this process now (Linux), or None."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def release_memory() -> None:
    """Hand freed Arrow memory back to the OS: the pool in use and the C++ default pool (which the
    Parquet reader's page buffers come from). Called between batches, so that peak memory follows
    what is live, not what the allocators kept."""
    pools = [pa.default_memory_pool()]
    for make in (getattr(pa, "mimalloc_memory_pool", None), getattr(pa, "jemalloc_memory_pool", None)):
        try:
            pools.append(make())
        except Exception:  # backend not built into this pyarrow
            continue
    for pool in pools:
        pool.release_unused()


@contextlib.contextmanager
def lean_allocation() -> Iterator[None]:
    """Allocate this job's Arrow buffers with the system allocator, with large blocks mapped and
    unmapped directly (glibc), so memory freed after a batch leaves the process at once.

    mimalloc and jemalloc keep freed memory for reuse; in our measurements that alone made the
    process grow by 1.5-2x what was live. The previous pool is restored on exit.
    """
    libc = None
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 64 * 1024)  # a fixed threshold also turns off glibc's growing one
        mallopt(_M_TRIM_THRESHOLD, 1 << 20)
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@dataclass(frozen=True)
class ReadCost:
    """What reading ``columns`` of an input costs: decoded bytes per row, and the reader's own memory."""

    bytes_per_row: float
    reader_mb: float


def read_cost(dataset: ds.Dataset, columns: Sequence[str] | None, *, sample_rows: int = 4_096) -> ReadCost:
    """Measure, by decoding the first rows of the first file, what reading ``columns`` costs.

    Parquet footers understate decoded sizes (dictionary-encoded strings count their indices), so
    a sample is decoded instead. The reader's own memory (a page and a dictionary per column, plus
    decompression buffers) does not depend on the batch size; it is measured as the growth of this
    process while the sample is read (which over-counts a little: first-use code pages).
    """
    for path in dataset.files:
        release_memory()
        before = _rss_mb()
        if isinstance(dataset.format, ds.CsvFileFormat):
            names = list(columns) if columns is not None else dataset.schema.names
            batch = next(_csv_batches(path, columns=names, batch_rows=sample_rows), None)
            if batch is None:
                continue
            # The raw block and its parsed form are live beside each decoded batch.
            raw = 2 * _csv_row_bytes(path)
        else:
            pf = pq.ParquetFile(path, memory_map=False, pre_buffer=False, buffer_size=1 << 16)
            if pf.metadata.num_rows == 0:
                continue
            batch = next(
                pf.iter_batches(
                    batch_size=sample_rows, columns=list(columns) if columns is not None else None, use_threads=False
                )
            )
            raw = 0.0
        after = _rss_mb()
        per_row = max(16.0, 1.25 * batch.nbytes / max(batch.num_rows, 1) + raw)
        if before is None or after is None:
            reader = READER_BASE_MB
        else:
            reader = max(READER_BASE_MB, after - before - batch.nbytes / 2**20)
        del batch
        release_memory()
        return ReadCost(per_row, reader)
    return ReadCost(16.0, READER_BASE_MB)


def row_bytes(dataset: ds.Dataset, columns: Sequence[str] | None, *, sample_rows: int = 4_096) -> float:
    """Decoded Arrow bytes per row of ``columns`` (see :func:`read_cost`)."""
    return read_cost(dataset, columns, sample_rows=sample_rows).bytes_per_row


def batch_rows_for(max_ram_mb: float, *, bytes_per_row: float, reserve_mb: float = 0.0) -> int:
    """Rows per record batch so that every live copy of one batch, plus ``reserve_mb``, fits in the
    planned share of ``max_ram_mb``; 0 when even the smallest batch does not fit."""
    budget = (max_ram_mb * TARGET_SHARE - reserve_mb - FIXED_MB) * 2**20
    rows = int(budget / (COPIES_PER_BATCH * bytes_per_row))
    if rows < MIN_BATCH_ROWS:
        return 0
    return min(MAX_BATCH_ROWS, rows)


def plan_batches(dataset: ds.Dataset, *, columns: Sequence[str] | None, max_ram_mb: float, share: float = 1.0) -> int:
    """Rows per batch for this input under ``max_ram_mb`` (``share``: the part of the batch budget
    one stream may use); an InputError when the reader alone would not leave room for a batch."""
    cost = read_cost(dataset, columns)
    rows = batch_rows_for(max_ram_mb, bytes_per_row=cost.bytes_per_row / share, reserve_mb=cost.reader_mb)
    if rows == 0:
        n = len(dataset.schema.names) if columns is None else len(columns)
        need = (
            cost.reader_mb + FIXED_MB + COPIES_PER_BATCH * MIN_BATCH_ROWS * cost.bytes_per_row / share / 2**20
        ) / TARGET_SHARE
        raise InputError(
            f"--max-ram-mb {max_ram_mb:g} is too small for this input: reading its {n} columns takes about "
            f"{cost.reader_mb:.0f} MB before any row is kept; give at least {need:.0f}"
        )
    return rows


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
        if isinstance(fragment, ds.ParquetFileFragment):
            if filter is not None:
                fragment = fragment.subset(filter=filter)
            groups = [rg.id for rg in fragment.row_groups]
            if not groups:
                continue
            pf = pq.ParquetFile(fragment.path, memory_map=False, pre_buffer=False, buffer_size=1 << 16)
            source = pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=needed, use_threads=False)
        else:
            source = _csv_batches(fragment.path, columns=needed, batch_rows=batch_rows)
        for batch in source:
            batch = _plain(batch)
            if filter is not None and not (prune_only and isinstance(fragment, ds.ParquetFileFragment)):
                table = pa.Table.from_batches([batch]).filter(filter)
                if table.num_rows == 0:
                    continue
                batch = table.combine_chunks().to_batches()[0]
            if batch.num_rows:
                yield batch.select(names) if needed != names else batch
            del batch
            release_memory()


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with dictionary columns as their value type (what :func:`iter_batches` yields)."""
    return pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema])


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with dictionary columns (pandas categoricals) decoded, so filters compare plain values."""
    if not any(pa.types.is_dictionary(f.type) for f in batch.schema):
        return batch
    arrays = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


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
