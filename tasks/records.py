"""Resume records: finished items stored as Prefect result records, keyed on content."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Union

from filelock import FileLock
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer

from salvo.outcome import ItemResult

#: Where records live: a local folder, or any writable storage block (local or S3).
StateLocation = Union[str, os.PathLike, WritableFileSystem]


def _storage_block(state: StateLocation) -> WritableFileSystem:
    if isinstance(state, WritableFileSystem):
        return state
    text = os.fspath(state)
    if isinstance(state, os.PathLike) or text.startswith(("/", ".", "~", "file://")):
        return LocalFileSystem(basepath=str(Path(text.removeprefix("file://")).expanduser().resolve() / "records"))
    from blocks import resolve_storage  # an s3:// URL or a saved storage block's name

    return resolve_storage(text).child("records")


def _lock_dir(block: WritableFileSystem) -> Path:
    where = getattr(block, "basepath", None) or getattr(block, "url", None)
    if where and "://" not in str(where):
        return Path(where).parent / "locks"
    # Remote storage has no shared lock primitive; lock per machine, beside the temp dir.
    tag = hashlib.blake2b(str(where).encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / "salvo-locks" / tag


def record_store(state: StateLocation) -> ResultStore:
    """A Prefect result store for item records (JSON, so reading one never runs code)."""
    return ResultStore(
        result_storage=_storage_block(state), serializer=JSONSerializer(), cache_result_in_memory=False
    )


def item_lock(store: ResultStore, key: str) -> FileLock:
    """An exclusive per-item lock (flock: the OS frees it when its holder dies, so none go stale)."""
    folder = _lock_dir(store.result_storage)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{key}.lock"))


def _outputs_present(result: ItemResult) -> bool:
    """A record is trusted only while the local outputs it lists still exist."""
    return all(os.path.exists(p) for p in result.outputs if "://" not in p)


def read_record(store: ResultStore, key: str) -> ItemResult | None:
    """The finished result stored under ``key``, or None if there is none to trust."""
    try:
        if not store.exists(key):
            return None
        result = ItemResult.from_dict(store.read(key).result)
    except (ValueError, KeyError, TypeError):  # a record cut short by a crash is no record
        return None
    if not _outputs_present(result):
        return None
    result.cached = True
    return result


def write_record(store: ResultStore, key: str, result: ItemResult, *, holder: str | None = None) -> None:
    """Store a finished (success or skipped) result under ``key``."""
    store.write(result.to_dict(), key=key, holder=holder)
