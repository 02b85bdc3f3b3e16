"""Resume records as data, and one index of them per state location, on a folder or on S3.

Records
-------
A record is the finished result of one item, stored under the item's resume key at
``<records>/<key>`` as one JSON document::

    {"format": "salvo-record", "version": 1, "key": "<key>", "written": <unix time>, "result": {...}}

It is always read with ``json.loads`` and nothing else, whatever the document says about itself:
a record never names the code that reads it, so a record can never run code. A record in any
other format (a pickle, a Prefect result record naming another serializer, a truncated file) is
ignored with a warning and its item runs again. Records written by earlier versions (Prefect
result records with the JSON serializer) are read as plain JSON, never through Prefect's reader.

The per-key record is written as soon as its item finishes (atomically: a reader never sees half
of one), so a SIGKILL loses at most the item in flight.

Index
-----
Reading one record per item makes resume O(items). The index makes it O(changed items):

- ``<records>/index/`` holds JSON-lines *segments*. Each line is ``{"key", "sig", "result"}``
  where ``sig`` identifies the exact record object the line was read from (size, mtime and inode
  locally; size and ETag on S3).
- A writer appends lines for the records it writes to a buffer that it flushes as a new, uniquely
  named segment (every ``FLUSH_EVERY`` records, every ``FLUSH_AFTER_S`` seconds, and at exit).
  No object is ever appended to or rewritten in place, so many writers on many hosts never race.
- A reader lists the records (one directory scan, or one LIST per 1000 objects on S3) and reads the
  segments once. A segment line is trusted only while its ``sig`` matches the listed record, so a
  record that was replaced, removed or never indexed is read on its own ("catch-up"), and the
  lines it read are written as a new segment for the next reader.
- When there are many segments, a reader merges them into one ``compact-<generation>`` segment,
  created only if absent (``If-None-Match: *`` on S3, a hard link locally: the storage's
  ``create_exclusive``), then deletes the segments it merged. Two compactors never both win; a
  reader that misses a deleted segment only reads more records on their own.

Full disk
---------
If a record cannot be written because the disk is full, the record is kept in a local spool
folder (``SALVO_SPOOL_DIR``, default ``~/.cache/salvo/unrecorded``) and :class:`RecordWriteError`
says so; the item's outputs are left in place. The next store opened on the same location writes
the spooled records first, so the next run resumes those items instead of running them again.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import contextlib
import errno
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from salvo.fingerprint import UNHASHABLE_PREFIX  # keys of unreadable inputs: never recorded
from salvo.fsutil import TMP_PREFIX
from salvo.storage import StorageError, StorageTarget

log = logging.getLogger("salvo.records")

RECORD_FORMAT = "salvo-record"
RECORD_VERSION = 1
INDEX_DIR = "index"
CLAIMS_DIR = "claims"
#: Names under the records folder that are not records.
RESERVED = frozenset({INDEX_DIR, CLAIMS_DIR})
#: A writer flushes its buffered index lines after this many records or seconds.
FLUSH_EVERY = 200
FLUSH_AFTER_S = 5.0
#: A reader merges the segments into one when there are more than this many.
COMPACT_ABOVE = 16
#: Most bytes a record may have; anything larger is not a record of ours.
MAX_RECORD_BYTES = 16 * 1024 * 1024


class RecordWriteError(OSError):
    """A finished item's record could not be written (the item's outputs are kept)."""


# --------------------------------------------------------------------------- record format


def encode_record(key: str, result: dict[str, Any]) -> bytes:
    """The bytes of a record: plain JSON, nothing that names code."""
    doc = {"format": RECORD_FORMAT, "version": RECORD_VERSION, "key": key, "written": time.time(), "result": result}
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


def decode_record(data: bytes, *, where: str = "record") -> dict[str, Any] | None:
    """The result dict held by a record, or None (with a warning) if it is not a data-only record.

    Only ``json.loads`` ever touches the bytes; no object hook, no serializer the record names.
    """
    if len(data) > MAX_RECORD_BYTES:
        log.warning("ignoring %s: larger than %d bytes; its item will run again", where, MAX_RECORD_BYTES)
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        log.warning("ignoring %s: not a JSON record (another format, or cut short); its item will run again", where)
        return None
    result = _result_of(doc)
    if result is None:
        log.warning("ignoring %s: not a Salvo record; its item will run again", where)
    return result


def _result_of(doc: Any) -> dict[str, Any] | None:
    if not isinstance(doc, dict):
        return None
    if doc.get("format") == RECORD_FORMAT:
        result = doc.get("result")
        return result if _plausible(result) else None
    # A record written by Salvo before this format: a Prefect result record, JSON serializer only.
    meta = doc.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("serializer"), dict) and meta["serializer"].get("type") == "json":
        text = doc.get("result")
        if isinstance(text, str):
            try:
                result = json.loads(text)  # plain JSON: the decoder the record names is NOT used
            except (ValueError, RecursionError):
                return None
            return result if _plausible(result) else None
    return None


def _plausible(result: Any) -> bool:
    return isinstance(result, dict) and isinstance(result.get("status"), str) and isinstance(result.get("item_id"), str)


# --------------------------------------------------------------------------- small writes


def write_object(target: StorageTarget, rel: str, data: bytes, *, exclusive: bool = False) -> bool:
    """Write a small object atomically (a reader never sees half); with ``exclusive`` only if absent.

    Remote storage uses the target's own ``write_bytes`` / ``create_exclusive`` (``If-None-Match``).
    A local folder gets the same two steps as ``atomic_file`` (a finished temporary sibling,
    renamed or hard-linked into place) without its ``fsync``: records and claims are checked when
    read, so a power cut can only make an item run again, and an fsync costs ~3 ms here, per call.
    """
    if not target.is_local:
        if exclusive:
            return target.create_exclusive(rel, data)
        target.write_bytes(rel, data)
        return True
    final = target.path(rel)
    folder = os.path.dirname(final)
    tmp = os.path.join(folder, f"{TMP_PREFIX}{os.path.basename(final)}-{uuid.uuid4().hex[:8]}")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if exclusive:
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, final)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Named after the file, not its temporary (salvo.fsutil.disk_full_reason prints it so).
            raise OSError(exc.errno, os.strerror(exc.errno), target.uri(rel)) from exc
        raise StorageError(
            f"storage {target.url} failed on {rel!r}: {type(exc).__name__}: {exc.strerror or exc}"
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# --------------------------------------------------------------------------- listing helpers


def _is_record_name(name: str) -> bool:
    return bool(name) and name not in RESERVED and not name.startswith((TMP_PREFIX, ".")) and "/" not in name


def _local_sig(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _s3_sig(size: Any, etag: Any) -> str:
    return f"{int(size or 0)}:{str(etag or '').strip(chr(34))}"


def _errno_of(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def _spool_root() -> Path:
    env = os.environ.get("SALVO_SPOOL_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "salvo" / "unrecorded"


# --------------------------------------------------------------------------- the store


class RecordIndex:
    """Records and their index at one location (a :class:`StorageTarget` rooted at the records).

    ``get(key)`` answers from one snapshot of the whole index, loaded on first use; ``get(key,
    fresh=True)`` reads the key's record itself (used while the item is claimed). ``put`` writes
    the record at once and queues an index line.
    """

    def __init__(self, target: StorageTarget) -> None:
        self.target = target
        self._snapshot: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._writer = _writer_for(target)
        self.recover_spool()

    # ----- reading

    def get(self, key: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The result recorded under ``key``, or None."""
        if key.startswith(UNHASHABLE_PREFIX):
            return None
        if fresh:
            return self._read_one(key)
        return self.snapshot().get(key)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every record at this location, by key (loaded once)."""
        with self._lock:
            if self._snapshot is None:
                self._snapshot = self.load()
            return self._snapshot

    def _read_one(self, key: str) -> dict[str, Any] | None:
        try:
            data = self.target.read_bytes(key)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            return None
        return decode_record(data, where=f"record {self.target.uri(key)}")

    def listing(self) -> dict[str, str]:
        """Every record object's name and signature (one directory scan or LIST)."""
        if self.target.is_local:
            found: dict[str, str] = {}
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                with os.scandir(self.target.root) as it:
                    for entry in it:
                        if _is_record_name(entry.name) and entry.is_file(follow_symlinks=False):
                            with contextlib.suppress(FileNotFoundError):
                                found[entry.name] = _local_sig(entry.stat(follow_symlinks=False))
            return found
        try:
            entries = self.target.fs.ls(self.target.root, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise StorageError(
                f"storage {self.target.url}: could not list records: {type(exc).__name__}: {exc}"
            ) from None
        out = {}
        for e in entries:
            name = str(e.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
            if e.get("type") == "file" and _is_record_name(name):
                out[name] = _s3_sig(e.get("size"), e.get("ETag") or e.get("etag"))
        return out

    def _segments(self) -> list[str]:
        return [n for n in self.target.list(INDEX_DIR) if n.endswith(".jsonl")]

    def _read_segment(self, name: str) -> Iterator[dict[str, Any]]:
        try:
            data = self.target.read_bytes(f"{INDEX_DIR}/{name}")
        except FileNotFoundError:  # merged away by a compactor since we listed it
            return
        for line in data.splitlines():
            try:
                doc = orjson.loads(line)  # a third of json.loads's time: an index holds a line per item
            except (ValueError, RecursionError):
                continue  # a line cut short (or one orjson refuses, NaN say): its record is read on its own
            if (
                isinstance(doc, dict)
                and isinstance(doc.get("key"), str)
                and isinstance(doc.get("sig"), str)
                and _plausible(doc.get("result"))
            ):
                yield doc

    def load(self) -> dict[str, dict[str, Any]]:
        """Read the whole index once; read on their own only the records it does not cover."""
        self._writer.flush()
        listed = self.listing()
        segments = self._segments()
        indexed: dict[str, dict[str, Any]] = {}
        for name in segments:
            for doc in self._read_segment(name):
                if listed.get(doc["key"]) == doc["sig"]:
                    indexed[doc["key"]] = doc
        caught_up = []
        for key, sig in listed.items():
            if key in indexed:
                continue
            result = self._read_one(key)
            if result is not None:
                doc = {"key": key, "sig": sig, "result": result}
                indexed[key] = doc
                caught_up.append(doc)
        try:
            if len(segments) > COMPACT_ABOVE:
                self._compact(list(indexed.values()), segments)
            elif caught_up:
                self._writer.write_segment(caught_up)
        except (StorageError, OSError) as exc:  # the index is a cache: reading still worked
            log.warning("could not update the records index at %s: %s", self.target.url, exc)
        return {k: d["result"] for k, d in indexed.items()}

    def _compact(self, docs: list[dict[str, Any]], merged: list[str]) -> None:
        gens = [
            int(n[len("compact-") :].split(".", 1)[0])
            for n in merged
            if n.startswith("compact-") and n[len("compact-") :].split(".", 1)[0].isdigit()
        ]
        name = f"compact-{max(gens, default=0) + 1:012d}.jsonl"
        body = b"".join(json.dumps(d, separators=(",", ":"), default=str).encode() + b"\n" for d in docs)
        if not write_object(self.target, f"{INDEX_DIR}/{name}", body, exclusive=True):
            return  # another reader compacted the same segments first
        for seg in merged:
            if seg != name:
                self.target.remove(f"{INDEX_DIR}/{seg}")

    # ----- writing

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Record ``result`` under ``key`` now; raise :class:`RecordWriteError` if that fails."""
        if key.startswith(UNHASHABLE_PREFIX):
            return
        data = encode_record(key, result)
        try:
            write_object(self.target, key, data)
        except (StorageError, OSError) as exc:
            raise self._write_failed(key, data, exc) from None
        self._writer.add(key, data, result)
        with self._lock:
            if self._snapshot is not None:
                self._snapshot[key] = result

    def _write_failed(self, key: str, data: bytes, exc: BaseException) -> RecordWriteError:
        where = self.target.uri(key)
        code = _errno_of(exc)
        if code in (errno.ENOSPC, errno.EDQUOT):
            try:
                spooled = self._spool(key, data)
            except OSError as exc2:
                return RecordWriteError(
                    code,
                    f"no space left to record a finished item at {where}; its outputs are kept, "
                    f"but the record could not be saved elsewhere either ({exc2.strerror or exc2}): it will run again",
                )
            return RecordWriteError(
                code,
                f"no space left to record a finished item at {where}; its outputs are kept and the "
                f"record was saved to {spooled}: the next run records it (free space on the state location first)",
            )
        return RecordWriteError(
            code or errno.EIO, f"could not record a finished item at {where}: {exc}; its outputs are kept"
        )

    def _spool_dir(self) -> Path:
        tag = hashlib.blake2b(self.target.uri().encode(), digest_size=10).hexdigest()
        return _spool_root() / tag

    def _spool(self, key: str, data: bytes) -> Path:
        folder = self._spool_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "LOCATION").write_text(self.target.uri() + "\n")
        path = folder / f"{key}.json"
        tmp = folder / f"{TMP_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def recover_spool(self) -> int:
        """Write records that a full disk kept out of this location; return how many."""
        folder = self._spool_dir()
        if not folder.is_dir():
            return 0
        done = 0
        for path in sorted(folder.glob("*.json")):
            key = path.name[: -len(".json")]
            result = decode_record(path.read_bytes(), where=f"spooled record {path}")
            if result is not None:
                try:
                    write_object(self.target, key, encode_record(key, result))
                except (StorageError, OSError) as exc:
                    log.warning("could not yet write the spooled record %s to %s: %s", path, self.target.url, exc)
                    return done
                self._writer.add(key, None, result)
                done += 1
            path.unlink(missing_ok=True)
        return done


# --------------------------------------------------------------------------- index writers


class _SegmentWriter:
    """Buffers index lines for one location in this process and flushes them as new segments."""

    def __init__(self, target: StorageTarget) -> None:
        self.target = target
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.seq = 0
        self.lines: list[bytes] = []
        self.first_at = 0.0
        self.lock = threading.Lock()

    def add(self, key: str, data: bytes | None, result: dict[str, Any]) -> None:
        sig = self._sig(key, data)
        if sig is None:
            return
        line = (
            json.dumps({"key": key, "sig": sig, "result": result}, separators=(",", ":"), default=str).encode() + b"\n"
        )
        with self.lock:
            if not self.lines:
                self.first_at = time.monotonic()
                timer = threading.Timer(FLUSH_AFTER_S, self.flush)  # lines wait at most this long
                timer.daemon = True
                timer.start()
            self.lines.append(line)
            due = len(self.lines) >= FLUSH_EVERY
        if due:
            self.flush()

    def _sig(self, key: str, data: bytes | None) -> str | None:
        try:
            if self.target.is_local:
                return _local_sig(os.stat(self.target.path(key)))
            if data is not None:
                return _s3_sig(len(data), hashlib.md5(data, usedforsecurity=False).hexdigest())  # a plain PUT's ETag
            info = self.target.fs.info(self.target.path(key), refresh=True)
            return _s3_sig(info.get("size"), info.get("ETag"))
        except Exception:  # the next reader reads this record on its own instead
            return None

    def write_segment(self, docs: list[dict[str, Any]]) -> None:
        body = b"".join(json.dumps(d, separators=(",", ":"), default=str).encode() + b"\n" for d in docs)
        self._write(body)

    def _write(self, body: bytes) -> None:
        with self.lock:
            self.seq += 1
            name = f"seg-{self.id}-{self.seq:06d}.jsonl"
        write_object(self.target, f"{INDEX_DIR}/{name}", body)

    def flush(self, *, quiet: bool = False) -> None:
        with self.lock:
            lines, self.lines = self.lines, []
        if lines:
            try:
                self._write(b"".join(lines))
            except Exception as exc:  # a cache: the records themselves are written, readers catch up
                if not quiet:
                    log.warning("could not write the records index at %s: %s", self.target.url, exc)


_writers: dict[tuple[str, str | None], _SegmentWriter] = {}
_writers_lock = threading.Lock()


def _writer_for(target: StorageTarget) -> _SegmentWriter:
    with _writers_lock:
        key = (target.uri(), target.endpoint_url)
        w = _writers.get(key)
        if w is None:
            w = _writers[key] = _SegmentWriter(target)
        return w


def flush_all(*, quiet: bool = False) -> None:
    """Flush every buffered index line of this process (also done at exit)."""
    with _writers_lock:
        writers = list(_writers.values())
    for w in writers:
        w.flush(quiet=quiet)


def _flush_at_exit() -> None:
    flush_all(quiet=True)


# Flush before the interpreter shuts down its thread pools (which S3 clients need); records
# not indexed by then are only read on their own by the next reader.
_register = getattr(threading, "_register_atexit", None)
try:
    if _register is None:
        raise RuntimeError
    _register(_flush_at_exit)
except RuntimeError:
    atexit.register(_flush_at_exit)
