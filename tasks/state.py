"""A batch's state location as the spine reads it, with a saved storage block's *name* loaded first.

``salvo.spine.records`` reads records from a folder, an ``s3://`` URL or a storage block, without
Prefect. A block saved under a name is loaded through Prefect's API (``blocks.resolve_storage``),
so it is resolved here, on the Prefect side, into the records folder it stands for; these wrappers
are the spine's functions with that step first. Also: Prefect's task and flow run loggers leave out
the traceback of a storage that stopped answering.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from salvo.fsutil import disk_full_reason
from salvo.index import RecordWriteError
from salvo.items import Item, Worker
from salvo.outcome import ItemResult
from salvo.spine import records, settled
from salvo.spine.records import RecordStore, StateLocation, StopOnStorageLoss, is_block_name
from salvo.spine.settled import BatchOptions
from salvo.storage import StorageError

__all__ = ["record_store", "resolve_state", "split_finished", "stop_on_storage_loss"]


class _NoStorageTraceback(logging.Filter):
    """A storage that stops answering is an expected end (the command says so in one line), not a
    crash: Prefect's lines about the task or flow run it ended keep their message, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, (StorageError, RecordWriteError)) or (exc is not None and disk_full_reason(exc)):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_name).addFilter(_NoStorageTraceback())


def resolve_state(state: StateLocation) -> StateLocation:
    """``state``, or, if it names a saved storage block, that block's records folder."""
    if not is_block_name(state):
        return state
    from blocks import resolve_storage  # Prefect's API: only for a block's name

    return resolve_storage(state).target.child("records")


def record_store(state: StateLocation) -> RecordStore:
    """``salvo.spine.records.record_store`` of ``state``, a block name loaded first."""
    return records.record_store(resolve_state(state))


def stop_on_storage_loss(state: StateLocation) -> StopOnStorageLoss | None:
    """``salvo.spine.records.stop_on_storage_loss`` of ``state``, a block name loaded first."""
    try:
        state = resolve_state(state)
    except Exception:  # noqa: BLE001 - a state that cannot be opened fails the batch elsewhere, with its own message
        return None
    return records.stop_on_storage_loss(state)


def split_finished(
    items: Sequence[Item], worker: Worker, *, options: BatchOptions
) -> tuple[dict[str, ItemResult], list[tuple[Item, str]]]:
    """``salvo.spine.settled.split_finished``, the options' state (a block name) loaded first."""
    resolved = resolve_state(options.state)
    if resolved is not options.state:
        options = dataclasses.replace(options, state=resolved)
    return settled.split_finished(items, worker, options=options)
