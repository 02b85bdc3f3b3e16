"""Is a NetCDF file whole? A check that reads only the header (a few KiB), never the data.

The netCDF library opens a classic-format file that was cut short (an interrupted copy or
download, a model killed while writing) without complaint and returns whatever lies past the end
of the file; so a cut file must be caught before it is used.

- Classic formats (CDF-1 ``NETCDF3_CLASSIC``, CDF-2 ``NETCDF3_64BIT_OFFSET``, CDF-5
  ``NETCDF3_64BIT_DATA``): the header is parsed (magic, ``numrecs``, dimensions, global
  attributes, variables with their ``begin``). The size it implies is what the netCDF-C library
  itself computes when it closes a file (``NC_calcsize``): without record variables, the largest
  ``begin + vsize`` of the fixed-size variables (``vsize`` rounded up to 4 bytes); with record
  variables, the first record variable's ``begin`` plus ``numrecs`` times the record size (each
  record variable's size rounded up to 4, except when there is only one record variable: no
  padding then). A file is cut short when it ends before its last value's last byte; a file
  missing only the final alignment padding (at most 3 bytes, after the last value) holds every
  value and is not refused. A header that ends before it is complete is cut short too; the size
  reported is then "at least" the bytes the header needed so far. A file written in streaming
  mode (``numrecs`` = ``0xFFFFFFFF``) does not say how many records it has: its header and
  fixed-size variables are checked, and the records are what the file holds.
- NetCDF4 (HDF5) files: the superblock's end-of-file address is compared with the file size (the
  netCDF library refuses most cut HDF5 files by itself; this names the problem).
- Anything else (not a NetCDF file at all): `None`, left to the library to refuse.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

#: Bytes read at a time while parsing a header; large headers are read further (with seeks past big attributes).
_BLOCK = 8192
#: External size in bytes of each netCDF type (1-6 classic, 7-11 CDF-5 only).
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_ABSENT, _DIMENSION, _VARIABLE, _ATTRIBUTE = 0, 0x0A, 0x0B, 0x0C
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FORMATS = {1: "NETCDF3_CLASSIC", 2: "NETCDF3_64BIT_OFFSET", 5: "NETCDF3_64BIT_DATA"}


class CutShortError(ValueError):
    """A NetCDF file is shorter than its header says: ``<file> is cut short: N of M bytes``."""

    def __init__(self, path: str | os.PathLike[str], size: int, expected: int, *, at_least: bool = False) -> None:
        self.path, self.size, self.expected, self.at_least = os.fspath(path), size, expected, at_least
        super().__init__(f"{self.path} is cut short: {size} of {'at least ' if at_least else ''}{expected} bytes")


class _Truncated(Exception):
    """The header itself ends early; ``needed`` is the offset the parser had to reach."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


@dataclass(frozen=True)
class VarLayout:
    """Where one variable of a classic-format file lives."""

    name: str
    nc_type: int
    shape: tuple[int, ...]  # the record dimension counts as 1
    record: bool
    vsize: int  # bytes per record (record variable) or in all (fixed), rounded up to 4 as the header has it
    begin: int

    @property
    def data_bytes(self) -> int:
        """Bytes of values per record (record variable) or in all (fixed), without padding."""
        n = 1
        for d in self.shape:
            n *= d
        return n * _TYPE_SIZE[self.nc_type]


@dataclass
class Layout:
    """What a file's header says about its size."""

    format: str
    file_size: int
    header_size: int = 0
    numrecs: int = 0
    streaming: bool = False
    recsize: int = 0
    variables: list[VarLayout] = field(default_factory=list)
    implied_size: int = 0  # the size netCDF-C gives a whole file (padding included)
    data_end: int = 0  # one past the last value's last byte: a file shorter than this misses data

    @property
    def cut_short(self) -> bool:
        """Whether the file ends before its last value does."""
        return self.file_size < self.data_end


class _Reader:
    """Big-endian reads at a moving offset, fetching the file in blocks only as the parser needs them."""

    def __init__(self, fh, size: int) -> None:
        self.fh, self.size, self.pos = fh, size, 0
        self.buf, self.buf_at = b"", 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > self.size:
            raise _Truncated(end)
        if not (self.buf_at <= self.pos and end <= self.buf_at + len(self.buf)):
            self.fh.seek(self.pos)
            self.buf, self.buf_at = self.fh.read(max(n, _BLOCK)), self.pos
            if len(self.buf) < n:
                raise _Truncated(end)
        out = self.buf[self.pos - self.buf_at : end - self.buf_at]
        self.pos = end
        return out

    def skip(self, n: int) -> None:
        """Move past ``n`` bytes without reading them (large attribute values)."""
        if self.pos + n > self.size:
            raise _Truncated(self.pos + n)
        self.pos += n

    def uint(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def classic_layout(path: str | os.PathLike[str]) -> Layout | None:
    """Parse a classic-format header (CDF-1, -2, -5); `None` if the file is not one. Raises `CutShortError`."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        magic = fh.read(4)
        if len(magic) < 4:
            if magic and b"CDF".startswith(magic[:3]):  # the first bytes of a classic file, and nothing more
                raise CutShortError(path, size, 8, at_least=True)
            return None
        if magic[:3] != b"CDF" or magic[3] not in FORMATS:
            return None
        version = magic[3]
        r = _Reader(fh, size)
        r.pos = 4
        try:
            return _parse(r, version, size)
        except _Truncated as exc:
            raise CutShortError(path, size, exc.needed, at_least=True) from None


def _parse(r: _Reader, version: int, size: int) -> Layout:
    count = 8 if version == 5 else 4  # NON_NEG: element counts, dim lengths, vsize
    offset = 4 if version == 1 else 8  # OFFSET: begin
    layout = Layout(format=FORMATS[version], file_size=size)
    raw = r.take(count)
    layout.streaming = raw == b"\xff" * count
    numrecs = int.from_bytes(raw, "big")

    def name() -> str:
        n = r.uint(count)
        return r.take(_pad4(n))[:n].decode("utf-8", "replace")

    def list_head(tag: int) -> int:
        got, n = r.uint(4), r.uint(count)
        if got not in (tag, _ABSENT) or (got == _ABSENT and n):
            raise ValueError(f"not a valid netCDF header (tag {got:#x} where {tag:#x} was expected)")
        return n

    def attributes() -> None:
        for _ in range(list_head(_ATTRIBUTE)):
            name()
            nc_type, n = r.uint(4), r.uint(count)
            if nc_type not in _TYPE_SIZE:
                raise ValueError(f"not a valid netCDF header (attribute type {nc_type})")
            r.skip(_pad4(n * _TYPE_SIZE[nc_type]))

    dims: list[int] = []
    for _ in range(list_head(_DIMENSION)):
        name()
        dims.append(r.uint(count))
    attributes()
    for _ in range(list_head(_VARIABLE)):
        vname = name()
        dimids = [r.uint(count) for _ in range(r.uint(count))]
        attributes()
        nc_type, _vsize, begin = r.uint(4), r.uint(count), r.uint(offset)
        if nc_type not in _TYPE_SIZE or any(d >= len(dims) for d in dimids):
            raise ValueError(f"not a valid netCDF header (variable {vname!r})")
        record = bool(dimids) and dims[dimids[0]] == 0
        shape = tuple(1 if (record and i == 0) else dims[d] for i, d in enumerate(dimids))
        var = VarLayout(vname, nc_type, shape, record, 0, begin)
        var = VarLayout(vname, nc_type, shape, record, _pad4(var.data_bytes), begin)  # vsize as the spec computes it
        layout.variables.append(var)
    layout.header_size = r.pos
    fixed = [v for v in layout.variables if not v.record]
    recs = [v for v in layout.variables if v.record]
    layout.recsize = recs[0].data_bytes if len(recs) == 1 else sum(v.vsize for v in recs)
    begin_rec = min((v.begin for v in recs), default=0)
    if layout.streaming:  # the records are what the file holds
        numrecs = max(0, size - begin_rec) // layout.recsize if recs and layout.recsize else 0
    layout.numrecs = numrecs
    ends = [layout.header_size] + [v.begin + v.vsize for v in fixed]
    data_ends = [layout.header_size] + [v.begin + v.data_bytes for v in fixed if v.data_bytes]
    if recs and numrecs:
        ends.append(begin_rec + numrecs * layout.recsize)
        data_ends += [v.begin + (numrecs - 1) * layout.recsize + v.data_bytes for v in recs if v.data_bytes]
    layout.implied_size, layout.data_end = max(ends), max(data_ends)
    return layout


def hdf5_implied_size(path: str | os.PathLike[str]) -> int | None:
    """The size an HDF5 file's superblock says the file has (base address + end-of-file address); None if not HDF5.

    Raises `CutShortError` when even the superblock is cut.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        at = 0
        while at == 0 or at < size:  # the superblock sits at 0, 512, 1024, 2048, ... (after a user block)
            fh.seek(at)
            head = fh.read(96)
            if head[:8] == _HDF5_MAGIC:
                break
            if at == 0 and head and len(head) < 8 and _HDF5_MAGIC.startswith(head):
                raise CutShortError(path, size, 8 + 40, at_least=True)  # signature and the superblock's fields
            at = 512 if at == 0 else at * 2
            if at > size or at > (1 << 30):
                return None
        else:
            return None
        if len(head) <= 9:  # the signature, and not the superblock's version and sizes
            raise CutShortError(path, size, at + 48, at_least=True)
        version = head[8]
        if version in (0, 1):
            fixed = 24 + (4 if version == 1 else 0)  # signature .. consistency flags (v1: indexed storage K + reserved)
            if len(head) < fixed:
                raise CutShortError(path, size, at + fixed, at_least=True)
            so = head[13]
            need = fixed + 4 * so
        elif version in (2, 3):
            so, fixed = head[9], 12
            need = fixed + 3 * so
        else:
            return None
        if so not in (2, 4, 8):
            return None
        if len(head) < need:
            raise CutShortError(path, size, at + need, at_least=True)
        fmt = {2: "<H", 4: "<I", 8: "<Q"}[so]  # HDF5 is little-endian
        base = struct.unpack_from(fmt, head, fixed)[0]
        eof = struct.unpack_from(fmt, head, fixed + 2 * so)[0]  # base, free-space/extension, end of file
        if eof == (1 << (8 * so)) - 1 or base == (1 << (8 * so)) - 1:  # HDF5's "undefined address"
            return None
        return base + eof


def check_whole(path: str | os.PathLike[str]) -> None:
    """Raise `CutShortError` if the NetCDF file at ``path`` is shorter than its header says (reads the header only).

    A file that is not NetCDF, or whose header does not parse, passes: the netCDF library refuses it itself.
    """
    try:
        layout = classic_layout(path)
    except ValueError as exc:
        if isinstance(exc, CutShortError):
            raise
        return
    if layout is not None:
        if layout.cut_short:
            raise CutShortError(path, layout.file_size, layout.implied_size)
        return
    implied = hdf5_implied_size(path)
    size = Path(path).stat().st_size
    if implied is not None and size < implied:
        raise CutShortError(path, size, implied)


def cut_short(paths) -> list[CutShortError]:
    """The files among ``paths`` that are cut short (each checked; the others left out)."""
    found = []
    for p in paths:
        try:
            check_whole(p)
        except CutShortError as exc:
            found.append(exc)
    return found
