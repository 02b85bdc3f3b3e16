"""An assembly chunk's contract: rows for exactly its samples (one per level and repetition), as its worker reported."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from salvo.contract import check_assembly_chunk
from salvo.items import Item

pytestmark = pytest.mark.pure


def _chunk(tmp_path: Path, samples: list[int], reps: int = 5) -> Item:
    rows = [{"sample": s, "rep": r, "value": float(s * 10 + r)} for s in samples for r in range(reps)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chunk.parquet")
    return Item(id="c", params={"start": 0, "stop": 2, "storage_url": str(tmp_path), "output": "chunk.parquet"})


def test_a_chunk_with_every_sample_of_its_range_and_several_rows_each_holds(tmp_path: Path) -> None:
    item = _chunk(tmp_path, [0, 1])
    assert check_assembly_chunk(item, SimpleNamespace(metrics={"rows": 10})) is None


def test_a_chunk_lacking_a_sample_or_holding_anothers_or_miscounted_fails(tmp_path: Path) -> None:
    assert "lacks sample 1" in check_assembly_chunk(_chunk(tmp_path, [0]), SimpleNamespace(metrics={}))
    assert "holds sample 2 of another chunk" in check_assembly_chunk(
        _chunk(tmp_path, [0, 1, 2]), SimpleNamespace(metrics={})
    )
    assert "reported 9 rows" in check_assembly_chunk(_chunk(tmp_path, [0, 1]), SimpleNamespace(metrics={"rows": 9}))
    (tmp_path / "chunk.parquet").write_bytes(b"PAR1 cut")
    item = Item(id="c", params={"start": 0, "stop": 2, "storage_url": str(tmp_path), "output": "chunk.parquet"})
    assert "cannot be read" in check_assembly_chunk(item, SimpleNamespace(metrics={}))
