"""Keys that change when an item's input content, its worker or its settings change."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from salvo.items import Item, Worker

_CHUNK = 1 << 20
# Content hashes by (path, size, mtime_ns, inode): a file is read once per process, not once per use.
_memo: dict[tuple[str, int, int, int], str] = {}


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE2b of a file's bytes."""
    st = os.stat(path)
    memo_key = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo_key in _memo:
        return _memo[memo_key]
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    _memo[memo_key] = digest = h.hexdigest()
    return digest


def fingerprint_path(path: str | os.PathLike[str]) -> str:
    """Hash of a file's content, or of every file's relative name and content under a folder."""
    p = Path(path)
    if p.is_file():
        return hash_file(p)
    if p.is_dir():
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
    """The resume key: input content, params, worker identity and batch settings."""
    return hash_json(
        {
            "inputs": [fingerprint_path(p) for p in item.inputs],
            "params": dict(item.params),
            "worker": worker.identity,
            "settings": dict(settings or {}),
        }
    )


def fingerprint_inputs(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Content hash of each path, by path: for `_done.json`-style provenance records."""
    return {os.fspath(p): fingerprint_path(p) for p in paths}
