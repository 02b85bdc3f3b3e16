"""Input hashes cached against (size, mtime_ns, inode), as git's index caches them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from salvo import fingerprint
from salvo.fingerprint import fingerprint_path, hash_file

pytestmark = pytest.mark.pure


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hashes.jsonl"
    monkeypatch.setenv("SALVO_HASH_CACHE", str(path))
    _forget()
    yield path
    _forget()


def _forget() -> None:
    """What a new process knows: nothing in memory."""
    fingerprint._memo.clear()
    fingerprint._cache_state.update(loaded=False, where=None, path=None, fh=None, lines=0)


def _old_file(path: Path, data: bytes) -> os.stat_result:
    path.write_bytes(data)
    old = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(old, old))
    return path.stat()


def _rewrite_keeping_stat(path: Path, data: bytes, st: os.stat_result) -> None:
    with open(path, "r+b") as fh:  # same inode, same size
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_unchanged_stat_is_not_read_again_in_this_process_or_the_next(tmp_path: Path, cache: Path) -> None:
    f = tmp_path / "in.nc"
    st = _old_file(f, b"first content")
    first = hash_file(f)
    _rewrite_keeping_stat(f, b"other content", st)  # a change git's index would not see either
    assert hash_file(f) == first
    _forget()
    assert cache.is_file() and hash_file(f) == first  # from the cache file, not from the bytes


def test_a_changed_stat_hashes_the_whole_file_again(tmp_path: Path, cache: Path) -> None:
    f = tmp_path / "in.nc"
    st = _old_file(f, b"first content")
    first = hash_file(f)
    _rewrite_keeping_stat(f, b"other content", st)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert hash_file(f) != first


def test_a_racily_clean_file_is_never_cached(tmp_path: Path, cache: Path) -> None:
    f = tmp_path / "in.nc"
    f.write_bytes(b"just written")  # mtime now: it may change again within the same mtime
    first = hash_file(f)
    st = f.stat()
    _rewrite_keeping_stat(f, b"just chang3d", st)
    assert hash_file(f) != first


def test_files_folders_and_missing_paths(tmp_path: Path, cache: Path) -> None:
    d = tmp_path / "subject"
    (d / "anat").mkdir(parents=True)
    _old_file(d / "anat" / "t1.nii", b"t1")
    _old_file(d / "notes.txt", b"n")
    before = fingerprint_path(d)
    assert fingerprint_path(d) == before and len(before) == 40
    (d / "notes.txt").rename(d / "renamed.txt")  # a name is part of a folder's content
    assert fingerprint_path(d) != before
    assert fingerprint_path(tmp_path / "absent") == "missing"
    assert fingerprint_path(d / "notes.txt" / "below-a-file") == "missing"
    assert fingerprint_path(d / "anat" / "t1.nii") == hash_file(d / "anat" / "t1.nii")


def test_real_netcdf_inputs_hash_to_their_bytes(cache: Path) -> None:
    """dvmdostem's public input files (tests/data, copied with their provenance): the hash is BLAKE2b of
    the bytes, read in 1 MiB blocks for a 1.9 MB file, and a read-only file is cached like any other."""
    import hashlib

    from tests.helpers import PUBLIC_FIXTURES

    files = sorted((PUBLIC_FIXTURES / "dvmdostem-imnaviat").glob("*.nc"))
    assert len(files) >= 4
    for f in files:
        assert fingerprint_path(f) == hashlib.blake2b(f.read_bytes(), digest_size=20).hexdigest()
    _forget()
    assert [fingerprint_path(f) for f in files] == [
        hashlib.blake2b(f.read_bytes(), digest_size=20).hexdigest() for f in files
    ]
    assert sum(1 for _ in cache.open()) == len(files)  # each remembered once, reused by the second pass
