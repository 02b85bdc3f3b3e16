"""The records index: one read of the whole location per batch, on a local folder and on S3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salvo.index import COMPACT_ABOVE, INDEX_DIR, RecordIndex, flush_all
from salvo.storage import open_storage


def _target(loc):  # noqa: ANN001, ANN202
    return open_storage(loc.url, endpoint_url=loc.endpoint_url).child("records")


def _result(i: int, **extra: object) -> dict:
    return {"item_id": f"item-{i}", "status": "success", "outputs": [], **extra}


def test_a_new_reader_sees_every_record_and_indexes_the_ones_it_read_alone(storage_location) -> None:  # noqa: ANN001
    target = _target(storage_location)
    writer = RecordIndex(target)
    for i in range(30):
        writer.put(f"{i:040x}", _result(i))
    # Nothing flushed yet: the records alone are the truth (a SIGKILL here loses no finished item).
    assert RecordIndex(target).snapshot() == {f"{i:040x}": _result(i) for i in range(30)}
    segments = target.list(INDEX_DIR)
    assert segments  # the reader wrote what it had to read on its own, or the writer flushed
    assert RecordIndex(target).snapshot() == {f"{i:040x}": _result(i) for i in range(30)}
    assert RecordIndex(target).get(f"{3:040x}", fresh=True) == _result(3)
    assert RecordIndex(target).get("nope") is None


@pytest.mark.pure
def test_an_indexed_record_is_not_read_again_while_its_stat_is_unchanged(tmp_path: Path) -> None:
    target = open_storage(str(tmp_path / "state")).child("records")
    RecordIndex(target).put("a" * 40, _result(1, metrics={"v": "first"}))
    flush_all()
    path = Path(target.path("a" * 40))
    st = path.stat()
    # Same size, same inode, same mtime, other bytes: only a reader that trusts its index misses it.
    data = path.read_bytes()
    path.write_bytes(data.replace(b"first", b"other"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert RecordIndex(target).snapshot()["a" * 40]["metrics"] == {"v": "first"}
    # Any change of the stat (a new record) and the record itself is read.
    path.write_bytes(data.replace(b"first", b"third"))
    assert RecordIndex(target).snapshot()["a" * 40]["metrics"] == {"v": "third"}


def test_many_segments_are_compacted_into_one(storage_location) -> None:  # noqa: ANN001
    target = _target(storage_location)
    store = RecordIndex(target)
    n = COMPACT_ABOVE + 4
    for i in range(n):
        store.put(f"{i:040x}", _result(i))
        flush_all()  # one segment per record
    assert len(target.list(INDEX_DIR)) >= n
    first = RecordIndex(target).snapshot()
    after = target.list(INDEX_DIR)
    assert len(after) == 1 and after[0].startswith("compact-")
    assert first == RecordIndex(target).snapshot() == {f"{i:040x}": _result(i) for i in range(n)}


@pytest.mark.pure
def test_a_removed_record_is_no_longer_resumed(tmp_path: Path) -> None:
    target = open_storage(str(tmp_path / "state")).child("records")
    store = RecordIndex(target)
    store.put("b" * 40, _result(2))
    store.put("c" * 40, _result(3))
    flush_all()
    os.unlink(target.path("b" * 40))  # the user deletes one record to redo its item
    assert set(RecordIndex(target).snapshot()) == {"c" * 40}
