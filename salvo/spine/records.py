"""Resume records: finished items stored as data-only JSON, keyed on content, claimed across hosts.

A state location (a local folder, an ``s3://`` URL, a storage block or its name) holds
``records/<key>`` (one JSON record per finished item: see ``salvo.index``), ``records/index/``
(the index that makes a resumed batch read a few objects instead of one per item) and
``records/claims/`` (the leases that let one host at a time run an item: see ``salvo.claims``).

Reading never runs code: records are parsed with ``json.loads`` only, never with Prefect's result
reader or a serializer the record names.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, Union

from salvo.claims import Claim
from salvo.contract import digest_problem, output_digest
from salvo.index import CLAIMS_DIR, UNHASHABLE_PREFIX, RecordIndex, RecordWriteError
from salvo.outcome import ItemResult
from salvo.storage import StorageError, StorageLost, StorageTarget, location_kind, open_storage

__all__ = [
    "StateLocation",
    "RecordStore",
    "RecordWriteError",
    "StopOnStorageLoss",
    "is_block_name",
    "record_store",
    "item_lock",
    "read_record",
    "stop_on_storage_loss",
    "write_record",
]

log = logging.getLogger("salvo.records")

#: Where records live: a local folder, an s3:// URL, or a storage block (read by duck typing: its
#: ``target`` or ``basepath``). A saved block's *name* is loaded through Prefect's API first
#: (``tasks.state.resolve_state``): the spine never imports Prefect.
StateLocation = Union[str, os.PathLike, StorageTarget, Any]


def is_block_name(state: Any) -> bool:
    """Whether ``state`` is the name of a saved storage block (not a path, not a URL, not a block)."""
    return isinstance(state, str) and location_kind(state, "state")[0] == "block"


def _target(state: Any) -> StorageTarget:
    """The records folder of a state location."""
    if isinstance(state, StorageTarget):  # already the records folder
        return state
    target = getattr(state, "target", None)
    if isinstance(target, StorageTarget):  # a SalvoStorage block: its root is the records folder
        return target
    if not isinstance(state, (str, os.PathLike)):
        base = getattr(state, "basepath", None)  # another Prefect file system block
        if base:
            return open_storage(str(base))
        raise TypeError(f"unsupported state location {type(state).__name__}")
    if not is_block_name(state):  # a Path is a folder, whatever it spells
        return open_storage(state).child("records")
    raise TypeError(f"{state!r} names a saved storage block: load it first (tasks.state.resolve_state)")


class RecordStore(RecordIndex):
    """The records, index and claims of one state location."""

    def __init__(self, target: StorageTarget) -> None:
        super().__init__(target)
        self.claims_target = target.child(CLAIMS_DIR)
        self._claims: dict[str, Claim] = {}
        self._claims_lock = threading.Lock()

    def claim(self, key: str) -> Claim:
        """A claim on ``key`` (enter it to hold it); while held, reads of ``key`` are fresh."""
        return _HeldClaim(self, key)

    def held_claim(self, key: str) -> Claim | None:
        with self._claims_lock:
            return self._claims.get(key)


class _HeldClaim(Claim):
    """A claim that tells its store while it is held."""

    def __init__(self, store: RecordStore, key: str) -> None:
        super().__init__(store.claims_target, key)
        self.store = store

    def acquire(self, timeout: float | None = None) -> None:  # noqa: D102
        super().acquire(timeout)
        with self.store._claims_lock:
            self.store._claims[self.key] = self

    def release(self) -> None:  # noqa: D102
        with self.store._claims_lock:
            if self.store._claims.get(self.key) is self:
                del self.store._claims[self.key]
        super().release()


def record_store(state: StateLocation) -> RecordStore:
    """The record store of a state location."""
    return RecordStore(_target(state))


def item_lock(store: RecordStore, key: str) -> Claim:
    """An exclusive claim on one item, across processes and hosts sharing the store.

    ``with item_lock(store, key):`` waits while another run holds the item (then its record is
    reused), takes over a claim whose holder died, and renews the lease while the block runs.
    """
    return store.claim(key)


def _outputs_present(result: ItemResult) -> bool:
    """A record of an older version (no digest) is trusted only while the local outputs it lists exist."""
    return all(os.path.exists(p) for p in result.outputs if "://" not in p)


def distrust_reason(result: ItemResult) -> str | None:
    """Why a finished record cannot be trusted any more (``output plot.png changed since it was
    recorded``), or None. With a digest: one stat per published file, a hash only when a stat
    changed; without one (older records): whether the listed outputs exist."""
    if result.digest is not None:
        return digest_problem(result.digest)
    if not _outputs_present(result):
        missing = next(p for p in result.outputs if "://" not in p and not os.path.exists(p))
        return f"output {missing} vanished since it was recorded"
    return None


def read_record(store: RecordStore, key: str) -> ItemResult | None:
    """The finished result stored under ``key``, or None if there is none to trust.

    While this process holds the item's claim the record itself is read (another host may just
    have finished the item); otherwise the answer comes from the store's snapshot of its index.
    A record whose outputs vanished or changed since it was written is not trusted: the item runs
    again, and a warning says why (``re-run: output plot.png changed since it was recorded``).
    """
    if key.startswith(UNHASHABLE_PREFIX):
        return None
    data = store.get(key, fresh=store.held_claim(key) is not None)
    if data is None:
        return None
    try:
        result = ItemResult.from_dict(data)
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring the record of %s: its fields are not an item result", key)
        return None
    if not result.status.ok:
        return None
    why = distrust_reason(result)
    if why is not None:
        _say_rerun(result.item_id, why)
        return None
    result.cached = True
    return result


_said: set[tuple[str, str]] = set()


def _say_rerun(item_id: str, why: str) -> None:
    """One warning per item and reason in this process (a record is read more than once per batch)."""
    if (item_id, why) not in _said:
        _said.add((item_id, why))
        log.warning("%s: re-run: %s", item_id, why)


def write_record(store: RecordStore, key: str, result: ItemResult, *, holder: str | None = None) -> bool:
    """Store a finished (success or skipped) result under ``key``; whether it was stored.

    Not stored if this process claimed the item and has since lost its lease (another host took
    the item over and will record its own result), or if the key stands for an unreadable input.
    Raises :class:`RecordWriteError` (an ``OSError``) when the record cannot be written, for
    example on a full disk; the item's outputs are kept either way.
    """
    if key.startswith(UNHASHABLE_PREFIX):
        return False
    if result.digest is None and result.status.ok:
        result.digest = output_digest(result.outputs)  # what it published, re-checked before it is trusted
    claim = store.held_claim(key)
    if claim is not None and not claim.held():
        log.warning("%s: not recorded: this run lost its claim on the item to another run", result.item_id)
        return False
    store.put(key, result.to_dict(digest=True))
    return True


#: The query string of a URL in a client's message (``?list-type=2&prefix=...``): noise in one line.
_QUERY = re.compile(r"(\w+://[^\s\"'?]+)\?[^\s\"']*")


class StopOnStorageLoss:
    """A batch's listener: after a failed item, one small listing of the records' storage; if the
    storage no longer answers, raise :class:`StorageLost` (``run_batch`` then starts no new item;
    finished items and their records stay). A healthy run pays nothing: only failed items are checked.
    """

    def __init__(self, target: StorageTarget) -> None:
        self.target = target

    def lost(self) -> str | None:
        """Why the storage cannot be reached, or None if it still answers."""
        probe = f"{CLAIMS_DIR}/.probe"  # a prefix that never exists: one cheap request
        try:
            self.target.list(probe)
        except StorageError as exc:
            why = " ".join(str(exc).split()).replace(f" failed on {probe!r}:", " does not answer:")
            return _QUERY.sub(r"\1", why)
        return None

    def __call__(self, result: ItemResult) -> None:
        if result.status.failed and (why := self.lost()):
            raise StorageLost(
                f"stopped: no new item starts, finished items are kept (run the same command again "
                f"once the storage is back): {why}",
                why,
            )


def stop_on_storage_loss(state: StateLocation) -> StopOnStorageLoss | None:
    """The storage-loss listener of a batch whose records are on a remote storage (None for a local folder)."""
    try:
        target = _target(state)
    except Exception:  # noqa: BLE001 - a state that cannot be opened fails the batch elsewhere, with its own message
        return None
    return None if target.is_local else StopOnStorageLoss(target)
