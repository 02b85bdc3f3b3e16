"""How one item of a batch ended: the statuses every pipeline shares, and their classification."""

from __future__ import annotations

import copy
import dataclasses
import enum
import signal as _signal
from dataclasses import dataclass, field
from typing import Any

#: Exit code a worker uses to say "the input itself is bad": a deterministic error, never retried.
EXIT_INPUT_ERROR = 65  # sysexits EX_DATAERR
#: Exit code a worker uses to say "nothing to do for this input" (a legitimate skip).
EXIT_SKIP = 75  # chosen outside the range shells and Python use for their own errors
#: Exit code of a worker that cannot work in this environment (a Python worker's ImportError /
#: ModuleNotFoundError): a deterministic error, never retried.
EXIT_DETERMINISTIC = 78  # sysexits EX_CONFIG


class Status(str, enum.Enum):
    """The one outcome of an item. Every item ends in exactly one of these."""

    SUCCESS = "success"
    SKIPPED = "skipped"
    ERROR = "error"
    SILENT_FAILURE = "silent_failure"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    EXCEPTION = "exception"
    NOT_RUN = "not_run"
    #: Stopped by the user (Ctrl-C) while running: never done, never recorded, run again on resume.
    INTERRUPTED = "interrupted"

    @property
    def ok(self) -> bool:
        """Whether the item needs no further work (it is recorded for resume)."""
        return self in _OK

    @property
    def failed(self) -> bool:
        """Whether the item counts as a failure of the batch (an interrupted item does: it is not done)."""
        return self not in _NOT_FAILED


# Looked up once: ``Status.SUCCESS`` costs about a microsecond each time (an enum class attribute),
# and a report of 10,000 items asks ``failed`` 50,000 times.
_OK = (Status.SUCCESS, Status.SKIPPED)
_NOT_FAILED = (Status.SUCCESS, Status.SKIPPED, Status.NOT_RUN)


@dataclass
class ItemResult:
    """What happened to one item: its status, why, and what it cost."""

    item_id: str
    status: Status
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    stderr_tail: str = ""
    started: str | None = None  # ISO 8601, UTC
    ended: str | None = None
    duration_s: float = 0.0
    attempt: int = 1
    peak_rss_mb: float | None = None
    outputs: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # True when the result came from an earlier batch's record
    batch_id: str = ""  # the batch that ran the item
    # The last attempt's use of the machine (None: not measured; see docs/report.md for what each means):
    cpu_s: float | None = None  # user + system CPU seconds of the item's process and the children it waited for
    read_bytes: int | None = None  # bytes it had read from storage (rusage ru_inblock x 512; page-cache hits are free)
    write_bytes: int | None = None  # bytes it sent to storage (rusage ru_oublock x 512)
    command: str = ""  # what ran: a command's argv (shell-quoted), or a Python worker's call
    timeout_s: float | None = None  # the limit in force (None: none)
    #: Every attempt of this run, in order, the last one included (see :meth:`figures`); [] when it did not run here.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: What the item published, as its record keeps it (``salvo.contract.output_digest``); None in
    #: records of older versions, which are then trusted while their outputs exist.
    digest: dict[str, Any] | None = None

    @property
    def retryable(self) -> bool:
        """Whether trying again may give another outcome (see README: which outcomes are retried)."""
        if self.status in (Status.CRASHED, Status.EXCEPTION):
            return True
        return self.status is Status.ERROR and self.exit_code not in (EXIT_INPUT_ERROR, EXIT_DETERMINISTIC)

    def to_dict(self, *, digest: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the output digest only with ``digest`` (records keep it, reports do not)."""
        # Not dataclasses.asdict: it deep-copies every field (a third of a 2,500-item resumed run's
        # reporting); only `metrics` may nest.
        d = self.__dict__.copy()  # the fields, in their order (__init__ sets them so)
        if len(d) != len(_FIELDS):  # an attribute added or removed since: the fields alone
            d = {f.name: getattr(self, f.name) for f in _FIELDS}
        d["status"] = self.status.value
        d["outputs"] = list(self.outputs)
        d["metrics"] = copy.deepcopy(self.metrics) if self.metrics else {}
        d["attempts"] = [a.copy() for a in self.attempts] if self.attempts else []  # flat dicts
        if not digest or d.get("digest") is None:
            d.pop("digest", None)
        return d

    def figures(self) -> dict[str, Any]:
        """This attempt as one flat, JSON-ready dict: one entry of :attr:`attempts`, one row of ``trace.tsv``."""
        cpu_pct = None
        if self.cpu_s is not None and self.duration_s > 0:
            cpu_pct = round(100.0 * self.cpu_s / self.duration_s, 1)
        return {
            "attempt": self.attempt,
            "status": self.status.value,
            "reason": self.reason.split("\n", 1)[0][:300],
            "exit": self.exit_code,
            "signal": self.signal,
            "start": self.started,
            "end": self.ended,
            "duration_s": self.duration_s,
            "cpu_s": self.cpu_s,
            "cpu_pct": cpu_pct,
            "peak_rss_mb": self.peak_rss_mb,
            "read_bytes": self.read_bytes,
            "write_bytes": self.write_bytes,
            "timeout_s": self.timeout_s,
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ItemResult":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = _NAMES if cls is ItemResult else frozenset(f.name for f in dataclasses.fields(cls))
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = Status(kwargs["status"])
        return cls(**kwargs)


_FIELDS = dataclasses.fields(ItemResult)
_NAMES = frozenset(f.name for f in _FIELDS)


def signal_name(signum: int) -> str:
    """``SIGSEGV`` for 11, and so on."""
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
