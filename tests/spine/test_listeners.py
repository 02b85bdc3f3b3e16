"""salvo.listeners: listeners are handed in for a scope, add up when nested, and are gone after it."""

from __future__ import annotations

import contextvars
import threading

import pytest

from salvo.listeners import Listeners, announce, current, listening

pytestmark = pytest.mark.pure


def test_listeners_hold_only_inside_their_block_nest_and_go_even_after_an_exception() -> None:
    heard: list[str] = []
    outer, inner = (
        Listeners(item_started=(lambda i: heard.append(f"outer {i}"),)),
        Listeners(item_started=(lambda i: heard.append(f"inner {i}"),)),
    )
    assert current() == Listeners()
    with listening(outer):
        with pytest.raises(RuntimeError):
            with listening(inner):
                announce(current().item_started, "a")
                raise RuntimeError("boom")
        announce(current().item_started, "b")
    announce(current().item_started, "c")
    assert heard == ["outer a", "inner a", "outer b"]
    assert current() == Listeners()


def test_a_thread_started_in_a_copy_of_the_context_hears_them_and_a_raising_listener_is_ignored() -> None:
    """As Prefect's ThreadPoolTaskRunner runs each task: in a copy of the submitting thread's context."""
    heard: list[str] = []

    def bad(item_id: str) -> None:
        raise ValueError("a display must never fail an item")

    with listening(Listeners(item_started=(bad, heard.append))):
        context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(lambda: announce(current().item_started, "x"),))
    worker.start()
    worker.join()
    other = threading.Thread(target=lambda: announce(current().item_started, "not heard"))
    other.start()
    other.join()
    assert heard == ["x"]
