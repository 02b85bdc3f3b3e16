"""Who hears of a batch's items while it runs: the command line's progress display, a pipeline's journal.

A caller hands its listeners in explicitly, for a scope: ``with listening(Listeners(...)):`` around
the flow call (`cli.common.run_flow` does it with its `Progress`; netcdf-extract's flow with its
``batch_resume.txt`` journal). Inside the block, `current` gives them to the batch code
(`flows.batch.run_batch` for batch starts and results, `salvo.batchcore.run_one` for item starts and
recorded finishes); outside it nobody hears anything, and blocks nest (listeners add up).

Why a context variable and not a parameter: the listeners are live objects (a rich progress bar,
an open file), not values. A Prefect flow's parameters are serialised to JSON for the API (and a
deployment's run gets its parameters from there), and a task's parameters are pickled to a Dask
worker, so neither can carry them. A `contextvars.ContextVar` is set and reset by the caller's
``with`` (explicit, scoped, nothing left behind after an exception) and is inherited where the
batch runs: the flow runs in the caller's thread, and Prefect's ``ThreadPoolTaskRunner`` runs each
task in a copy of the submitting thread's context. On a Dask worker (another process) there are
no listeners, as there is no terminal. Before, module-level lists (``START_LISTENERS``,
``FINISH_LISTENERS``, ``flows.batch._progress_hook``) were appended to and removed from by hand:
shared by every batch of the process, and left behind if a remove was missed.

A listener must be quick and never raise: `announce` drops its exceptions (a display must never
fail an item). The results listeners (``results``) are the exception: they are called by
`run_batch` like a pipeline's own ``on_result``, so that a listener may stop a batch.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from salvo.items import Item
from salvo.outcome import ItemResult


@dataclass(frozen=True)
class Listeners:
    """Callbacks for the batches run inside a `listening` block; each field a tuple of callables."""

    #: ``(total)``: a batch of ``total`` items begins (`flows.batch.run_batch`).
    batch_started: tuple[Callable[[int], None], ...] = ()
    #: ``(item_id)``: an item really starts running in this process, not when its record is reused
    #: (`salvo.batchcore.run_one`): the command line's 🔄 lines.
    item_started: tuple[Callable[[str], None], ...] = ()
    #: ``(item, result)``: `run_one` ended in this process, after a finished result was recorded:
    #: netcdf-extract's batch_resume.txt gains the file at once.
    item_finished: tuple[Callable[[Item, ItemResult], None], ...] = ()
    #: ``(result)``: every result of a batch, in the order the batch learns them, settled ones first
    #: (`flows.batch.run_batch`, before the pipeline's own ``on_result``): the progress display.
    results: tuple[Callable[[ItemResult], None], ...] = ()

    def __add__(self, other: Listeners) -> Listeners:
        return Listeners(
            batch_started=self.batch_started + other.batch_started,
            item_started=self.item_started + other.item_started,
            item_finished=self.item_finished + other.item_finished,
            results=self.results + other.results,
        )


_CURRENT: contextvars.ContextVar[Listeners] = contextvars.ContextVar("salvo_listeners", default=Listeners())


def current() -> Listeners:
    """The listeners of the `listening` blocks this code runs in (none outside them)."""
    return _CURRENT.get()


@contextlib.contextmanager
def listening(listeners: Listeners) -> Iterator[Listeners]:
    """Within this block (and the task threads started in it), ``listeners`` hear of every batch,
    besides those of enclosing blocks; gone when it ends, however it ends."""
    token = _CURRENT.set(_CURRENT.get() + listeners)
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def announce(callbacks: tuple[Callable[..., None], ...], *args: Any) -> None:
    """Call each callback with ``args``, ignoring its exceptions (a listener must never fail an item)."""
    for callback in callbacks:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a display must never fail an item
            pass
