"""Errors that mean "the user's input is wrong": the CLI prints them on one line and exits 2."""


class UsageError(ValueError):
    """Bad usage or bad input, detected before (or instead of) doing any work."""

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints str(exc) as the whole error message.
        super().__init__(" ".join(str(message).split()))


class SkipItem(Exception):
    """Raised by a Python worker: this item legitimately has nothing to do (status ``skipped``)."""


class InputError(Exception):
    """Raised by a Python worker: the input itself is bad; a deterministic error, never retried."""
