"""salvo.ncfile: the size a NetCDF header implies, against files netCDF4 wrote, and every cut of them caught."""

from __future__ import annotations

import os
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from salvo import ncfile
from salvo.ncfile import CutShortError, check_whole, classic_layout, hdf5_implied_size

from tests.helpers import PUBLIC_FIXTURES

from .ncforms import CLASSIC_FORMATS, convert, cut

pytestmark = pytest.mark.pure
DVM = PUBLIC_FIXTURES / "dvmdostem-imnaviat"

#: Shapes of files: dims (None: the record dimension), variables (dtype, dims), records written, global attributes.
SPECS = {
    "fixed-odd-sizes": ({"y": 3, "x": 5}, {"a": ("i1", ("y", "x")), "b": ("f8", ("x",)), "c": ("i2", ("y",))}, 0, 0),
    "one-record-var-bytes": ({"t": None, "x": 3}, {"a": ("i1", ("t", "x"))}, 5, 0),
    "one-record-var-shorts": ({"t": None, "x": 3}, {"a": ("i2", ("t", "x")), "f": ("f4", ("x",))}, 7, 0),
    "one-record-var-floats": ({"t": None, "x": 3}, {"f": ("f4", ("x",)), "a": ("f4", ("t", "x"))}, 4, 0),
    "several-record-vars": (
        {"t": None, "x": 3, "y": 2},
        {"a": ("i1", ("t", "x")), "b": ("f8", ("t", "y", "x")), "c": ("S1", ("t",)), "f": ("i4", ("x",))},
        4,
        0,
    ),
    "zero-records": ({"t": None, "x": 3}, {"a": ("i1", ("t", "x")), "f": ("i4", ("x",))}, 0, 0),
    "record-var-alone": ({"t": None}, {"a": ("f8", ("t",))}, 3, 0),
    "no-variables": ({"t": None, "x": 3}, {}, 0, 2),
    "scalar": ({}, {"s": ("f4", ())}, 0, 0),
    "header-over-8-KiB": ({"t": None, "x": 3}, {"a": ("f4", ("t", "x"))}, 2, 30),
    "empty-fixed-var": ({"z": 0, "x": 2}, {"e": ("f4", ("z", "x")), "g": ("i4", ("x",))}, 0, 0),
}


def _write(path: Path, fmt: str, spec) -> Path:
    dims, variables, nrec, nattrs = spec
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        for i in range(nattrs):  # before the variables: no re-definition moves the data afterwards
            ds.setncattr(f"note{i}", "x" * 1000)
        for name, size in dims.items():
            ds.createDimension(name, size)
        for name, (dtype, vdims) in variables.items():
            var = ds.createVariable(name, dtype, vdims)
            shape = [nrec if ds.dimensions[d].isunlimited() else len(ds.dimensions[d]) for d in vdims]
            if 0 not in shape:
                var[...] = np.arange(int(np.prod(shape)), dtype="i4").reshape(shape).astype(dtype)
    return path


@pytest.mark.parametrize("fmt", CLASSIC_FORMATS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_implied_size_is_the_size_netcdf4_wrote(tmp_path, fmt, name):
    path = _write(tmp_path / f"{name}.nc", fmt, SPECS[name])
    layout = classic_layout(path)
    size = path.stat().st_size
    assert layout.format == fmt and not layout.cut_short
    assert layout.numrecs == SPECS[name][2]
    if name == "header-over-8-KiB":
        # netCDF-C writes a large header through its I/O buffer and leaves unused bytes past the data
        assert layout.implied_size <= size
    elif name == "one-record-var-shorts":
        # the last value of a lone 2-byte record variable is written rounded up to 4 bytes
        assert layout.implied_size <= size < layout.implied_size + 4
    else:
        assert layout.implied_size == size
    check_whole(path)


@pytest.mark.parametrize("fmt", CLASSIC_FORMATS)
@pytest.mark.parametrize(
    "name", ["fixed-odd-sizes", "several-record-vars", "one-record-var-bytes", "zero-records", "header-over-8-KiB"]
)
def test_every_cut_that_loses_a_byte_of_the_header_or_data_is_caught(tmp_path, fmt, name):
    path = _write(tmp_path / "whole.nc", fmt, SPECS[name])
    whole = path.read_bytes()
    layout = classic_layout(path)
    step = 1 if len(whole) < 2000 else 97
    for n in [*range(1, len(whole), step), len(whole) - 1]:
        part = tmp_path / f"cut-{n}.nc"
        part.write_bytes(whole[:n])
        if n >= layout.data_end:  # only the alignment padding after the last value is missing
            check_whole(part)
            continue
        with pytest.raises(CutShortError) as caught:
            check_whole(part)
        exc = caught.value
        assert exc.path == str(part) and exc.size == n and exc.expected > n
        if n >= layout.header_size:
            assert str(exc) == f"{part} is cut short: {n} of {layout.implied_size} bytes"
        else:
            assert f"{part} is cut short: {n} of at least " in str(exc)
        part.unlink()


def test_a_streaming_file_is_checked_up_to_its_records(tmp_path):
    """numrecs = 0xFFFFFFFF (streaming): the records are what the file holds; header and fixed part still checked."""
    path = _write(tmp_path / "s.nc", "NETCDF3_CLASSIC", SPECS["several-record-vars"])
    data = bytearray(path.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    layout = classic_layout(path)
    assert layout.streaming and layout.numrecs == 4
    check_whole(path)
    fixed_end = max(v.begin + v.data_bytes for v in layout.variables if not v.record)
    with pytest.raises(CutShortError):
        check_whole(cut(path, tmp_path / "c.nc", fixed_end - 1))


@pytest.mark.parametrize("name", ["co2.nc", "projected-climate.nc", "run-mask.nc", "vegetation.nc"])
def test_the_public_files_are_netcdf4_and_whole(name):
    with netCDF4.Dataset(DVM / name) as ds:
        assert ds.data_model == "NETCDF4"  # what the dvmdostem fixtures are: the classic copies below are made here
    assert classic_layout(DVM / name) is None
    assert hdf5_implied_size(DVM / name) == (DVM / name).stat().st_size
    check_whole(DVM / name)


@pytest.mark.parametrize("fmt", CLASSIC_FORMATS)
def test_public_climate_file_in_each_classic_format_cut_in_header_fixed_and_record_data(tmp_path, fmt):
    path = convert(DVM / "projected-climate.nc", tmp_path / "climate.nc", fmt)
    layout = classic_layout(path)
    check_whole(path)
    assert layout.implied_size == path.stat().st_size and layout.numrecs == 1020
    fixed = [v for v in layout.variables if not v.record and v.data_bytes]
    records = layout.data_end - min(v.begin for v in layout.variables if v.record)
    points = {
        "header": layout.header_size // 2,
        "fixed data": fixed[-1].begin + fixed[-1].data_bytes // 2,
        "record data": layout.data_end - records // 3,
        "last byte": layout.data_end - 1,
    }
    for where, n in points.items():
        part = cut(path, tmp_path / f"{where.replace(' ', '-')}.nc", n)
        with pytest.raises(CutShortError, match=rf"^{part} is cut short: {n} of (at least )?\d+ bytes$"):
            check_whole(part)


def test_public_file_as_netcdf4_cut_anywhere_is_caught_from_the_superblock(tmp_path):
    src = DVM / "projected-climate.nc"
    size = src.stat().st_size
    for n in (3, 8, 9, 10, 20, 40, 100, 4096, size // 2, size - 1):
        part = cut(src, tmp_path / f"cut-{n}.nc", n)
        with pytest.raises(CutShortError, match=rf"^{part} is cut short: {n} of (at least )?\d+ bytes$"):
            check_whole(part)


def test_not_netcdf_is_left_to_the_library(tmp_path):
    for name, data in (("empty.nc", b""), ("text.nc", b"hello world, not a netCDF file\n")):
        (tmp_path / name).write_bytes(data)
        check_whole(tmp_path / name)
    assert ncfile.cut_short([tmp_path / "empty.nc", tmp_path / "text.nc"]) == []


def test_only_the_header_is_read(tmp_path):
    """The check reads the header's blocks, not the data (a 20 MiB file: a few KiB read)."""
    path = tmp_path / "big.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("t", None)
        ds.createDimension("x", 1 << 18)
        ds.createVariable("v", "f4", ("t", "x"))[0:20, :] = np.ones((20, 1 << 18), dtype="f4")
    before = _read_bytes()
    check_whole(path)
    assert _read_bytes() - before < 64 << 10


def _read_bytes() -> int:
    with open(f"/proc/{os.getpid()}/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))
