"""Durations as people read them: ``10 s``, ``5 min``, ``2 h`` (never ``0.0833333m``)."""

from __future__ import annotations


def human_duration(seconds: float | None) -> str:
    """``no limit``, ``10 s``, ``1.5 s``, ``5 min``, ``90 min``... in the largest unit that keeps it short.

    A whole number of hours is in hours, of minutes in minutes, otherwise seconds below ten
    minutes and minutes (one decimal) above.
    """
    if seconds is None:
        return "no limit"
    s = float(seconds)
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:g} h"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g} min"
    if s < 600:
        return f"{round(s, 1):g} s"
    if s < 36000:
        return f"{round(s / 60, 1):g} min"
    return f"{round(s / 3600, 1):g} h"
