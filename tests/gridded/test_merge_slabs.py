"""The merge reads and writes a compressed variable in slabs of whole disk chunks, even when one chunk
is larger than the slab budget (netCDF's default chunks of a compressed dvmdostem output are)."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from salvo.gridded.merge import CHUNK_BYTES, MAX_SLAB_BYTES, plan_chunks, slabs

pytestmark = pytest.mark.pure


def test_a_disk_chunk_over_the_budget_is_never_cut() -> None:
    # (1200, 150, 185) float32 with netCDF's default chunks: 7.4 MB a chunk, over the 3 MiB budget.
    assert plan_chunks((1200, 150, 185), itemsize=4, disk=[600, 50, 62], budget=CHUNK_BYTES) == [600, 50, 62]


def test_a_chunk_over_the_largest_slab_is_cut_as_before() -> None:
    huge = [1200, 150, 185]  # 133 MB in one chunk: over MAX_SLAB_BYTES
    assert 1200 * 150 * 185 * 4 > MAX_SLAB_BYTES
    chunks = plan_chunks((1200, 150, 185), itemsize=4, disk=huge, budget=CHUNK_BYTES)
    assert int(np.prod(chunks)) * 4 <= CHUNK_BYTES


def test_slabs_of_a_real_compressed_variable_are_whole_chunks(tmp_path: Path) -> None:
    path = tmp_path / "v.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        for d, n in (("time", 96), ("y", 40), ("x", 50)):
            ds.createDimension(d, n)
        ds.createVariable("v", "f4", ("time", "y", "x"), zlib=True, complevel=1, chunksizes=(48, 20, 25))
    with netCDF4.Dataset(path) as ds:
        var = ds["v"]
        chunk = var.chunking()
        budget = 10_000  # far under one chunk (48 * 20 * 25 * 4 = 96,000 bytes)
        got = list(slabs(var, budget=budget))
    covered = np.zeros((96, 40, 50), dtype=int)
    for sl in got:
        for s, c, n in zip(sl, chunk, (96, 40, 50)):
            assert s.start % c == 0 and (s.stop % c == 0 or s.stop == n), f"{sl} cuts a disk chunk {chunk}"
        covered[sl] += 1
    assert (covered == 1).all(), "the slabs cover the variable exactly once"
