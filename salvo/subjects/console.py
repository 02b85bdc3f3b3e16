"""What the batch says while it runs: the seed's numbered per-subject lines, and clean-up of killed runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from salvo.outcome import ItemResult, Status
from salvo.subjects.report import format_header, format_result_line, format_summary
from salvo.subjects.unit import quarantine_if_unlocked

#: Outcomes where the child may have died before it could set its work folder aside.
_KILLED = (Status.TIMEOUT, Status.CRASHED, Status.EXCEPTION)


class SubjectMonitor:
    """An ``on_result`` callback: quarantines a killed subject's work folder, prints its line."""

    def __init__(
        self,
        subject_ids: Sequence[str],
        *,
        out_dir: str | os.PathLike[str],
        config_hash: str,
        timeout_min: float,
        echo: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.index = {sid: i for i, sid in enumerate(subject_ids, 1)}
        self.out_dir, self.config_hash, self.timeout_min = out_dir, config_hash, timeout_min
        self.echo, self.stream = echo, stream or sys.stdout
        self.lines: list[str] = []

    def _say(self, lines: list[str]) -> None:
        if self.echo:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()

    def announce(self) -> None:
        """Print the header: how many subjects, where, and the config hash."""
        self._say(format_header(len(self.index), out_dir=self.out_dir, config_hash=self.config_hash))

    def __call__(self, result: ItemResult) -> None:
        if result.status in _KILLED:
            quarantine_if_unlocked(self.out_dir, result.item_id)
        line = format_result_line(self.index.get(result.item_id, 0), result, timeout_min=self.timeout_min)
        self.lines.append(line)
        self._say([line])

    def finish(self, results: Sequence[ItemResult]) -> list[str]:
        """Print and return the closing block; ``lines`` becomes every subject's line in input order."""
        self.lines = [format_result_line(i, r, timeout_min=self.timeout_min) for i, r in enumerate(results, 1)]
        block = format_summary(results, out_dir=self.out_dir)
        self._say(block)
        return block
