"""Keys that change when an item's input content, its worker or its settings change.

Content hashes are cached against each file's ``(size, mtime_ns, inode)``, the way git's index
caches them: a file whose stat is unchanged is not read again, in this process or the next ones
(the cache persists in ``SALVO_HASH_CACHE``, default ``~/.cache/salvo/hashes.jsonl``). Whenever
the stat changes, the whole file is hashed again. A file modified within ``RACY_S`` seconds of
being hashed could change again without its stat changing, so such a hash is never cached
(git's "racily clean" rule).
"""

from __future__ import annotations

import contextlib
import hashlib
import errno
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from salvo.items import Item, Worker

_CHUNK = 1 << 20
#: A hash is cached only for files whose mtime is at least this much older than the hashing.
RACY_S = 2.0
#: Prefix of a key given to an item whose inputs cannot be read (see :func:`item_key`).
UNHASHABLE_PREFIX = "unhashable-"
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)
# Content hashes by (path, size, mtime_ns, inode): a file is read once, not once per use.
_memo: dict[tuple[str, int, int, int], str] = {}
_cache_lock = threading.Lock()
_cache_state: dict[str, Any] = {"loaded": False, "path": None, "fh": None, "lines": 0}


def _cache_path() -> Path | None:
    env = os.environ.get("SALVO_HASH_CACHE")
    if env is not None:
        return Path(env) if env.strip() and env.strip() != "off" else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "salvo" / "hashes.jsonl"


def _load_cache() -> None:
    """Load the persistent cache into ``_memo`` once (latest line per file wins)."""
    where = (os.environ.get("SALVO_HASH_CACHE"), os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))
    if _cache_state["loaded"] and _cache_state.get("where") == where:
        return  # the same settings as last time: no path to build again (this runs once per input)
    path = _cache_path()
    _cache_state.update(loaded=True, where=where, path=path, fh=None, lines=0)
    if path is None:
        return
    with contextlib.suppress(OSError):
        with open(path, "rb") as fh:
            for line in fh:
                _cache_state["lines"] += 1
                try:
                    p, size, mtime, ino, digest = orjson.loads(line)  # a fifth of json.loads's time
                except (ValueError, TypeError):
                    continue  # a line cut short by a crash
                if isinstance(p, str) and isinstance(digest, str):
                    _memo[(p, int(size), int(mtime), int(ino))] = digest
    if _cache_state["lines"] > 4 * max(1000, len(_memo)):
        _compact_cache(path)


def _compact_cache(path: Path) -> None:
    """Rewrite the cache with one line per file (stale lines of changed files go)."""
    latest: dict[str, tuple[tuple[str, int, int, int], str]] = {}
    for k, digest in _memo.items():
        latest[k[0]] = (k, digest)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        with open(tmp, "w") as fh:
            for (p, size, mtime, ino), digest in latest.values():
                fh.write(json.dumps([p, size, mtime, ino, digest]) + "\n")
        os.replace(tmp, path)
        _cache_state["lines"] = len(latest)
    with contextlib.suppress(OSError):
        tmp.unlink()


def _remember(key: tuple[str, int, int, int], digest: str) -> None:
    path = _cache_state["path"]
    if path is None:
        return
    try:
        if _cache_state["fh"] is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _cache_state["fh"] = open(path, "ab", buffering=0)  # O_APPEND: one write() per line
        _cache_state["fh"].write((json.dumps([*key, digest]) + "\n").encode())
        _cache_state["lines"] += 1
    except OSError:
        _cache_state["path"] = None  # a cache only: go on without it


def hash_file(path: str | os.PathLike[str], st: os.stat_result | None = None) -> str:
    """BLAKE2b of a file's bytes (cached against its size, mtime and inode; ``st``: its stat, if known)."""
    st = st or os.stat(path)
    memo_key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _cache_lock:
        _load_cache()
        if memo_key in _memo:
            return _memo[memo_key]
    started = time.time()
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if started - st.st_mtime_ns / 1e9 >= RACY_S:  # not racily clean: safe to trust the stat later
        with _cache_lock:
            _memo[memo_key] = digest
            _remember(memo_key, digest)
    return digest


def fingerprint_path(path: str | os.PathLike[str]) -> str:
    """Hash of a file's content, or of every file's relative name and content under a folder."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno in _MISSING:  # what Path.is_file and is_dir take for "not there"
            return "missing"
        raise
    if stat.S_ISREG(st.st_mode):
        return hash_file(path, st)
    if stat.S_ISDIR(st.st_mode):
        p = Path(path)
        h = hashlib.blake2b(digest_size=20)
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f.relative_to(p).as_posix().encode() + b"\0" + hash_file(f).encode())
        return h.hexdigest()
    return "missing"


def hash_json(value: Any) -> str:
    """Stable hash of a JSON-able value (keys sorted)."""
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.blake2b(blob, digest_size=20).hexdigest()


def item_key(item: Item, *, worker: Worker, settings: Mapping[str, Any] | None = None) -> str:
    """The resume key: input content, params, worker identity and batch settings.

    An input that cannot be read (permissions, I/O error) does not stop the batch: the item gets a
    fresh ``unhashable-...`` key that matches no record and is never recorded, so the item runs
    and fails as its own error, and is tried again by the next run.
    """
    try:
        inputs = [fingerprint_path(p) for p in item.inputs]
    except OSError:
        return f"{UNHASHABLE_PREFIX}{uuid.uuid4().hex}"
    return hash_json(
        {
            "inputs": inputs,
            "params": dict(item.params),
            "worker": worker.identity,
            "settings": dict(settings or {}),
        }
    )


def fingerprint_inputs(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Content hash of each path, by path: for `_done.json`-style provenance records."""
    return {os.fspath(p): fingerprint_path(p) for p in paths}
