"""What every `salvo` subcommand shares: runner flags, errors, progress, running a flow."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any, TextIO

from salvo.outcome import ItemResult, Status

EMOJI = {
    Status.SUCCESS: "✅",
    Status.SKIPPED: "⏭️ ",
    Status.ERROR: "❌",
    Status.SILENT_FAILURE: "❌",
    Status.TIMEOUT: "⏰",
    Status.CRASHED: "💥",
    Status.EXCEPTION: "💥",
    Status.NOT_RUN: "⏸️ ",
}


class CliError(Exception):
    """A one-line error for the user: bad usage or input, exit code 2."""

    exit_code = 2


class RunFailed(CliError):
    """The run itself failed (not an item of it): a storage gone away, a crashed flow; exit code 1."""

    exit_code = 1


def fail(message: str, code: int = 2) -> int:
    """Print a one-line error on stderr and return ``code``."""
    print(f"salvo: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _positive(cast: Any, noun: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value

    return parse


#: argparse types: a number > 0, a whole number > 0.
positive_float = _positive(float, "a number")
positive_int = _positive(int, "a whole number")


def add_runner_flags(parser: argparse.ArgumentParser, *, timeout_help: str = "per-item timeout in seconds (default: 900)", timeout_default: float = 900.0) -> None:
    """The flags every batch command takes, with the seed's names."""
    g = parser.add_argument_group("running")
    g.add_argument("--parallel", action="store_true", help="run items in parallel on a local Dask cluster")
    g.add_argument("--max-workers", type=positive_int, default=os.cpu_count() or 1, help="parallel workers (default: the CPU count)")
    g.add_argument("--dask-address", metavar="tcp://HOST:PORT", help="use this existing Dask cluster (implies --parallel)")
    g.add_argument("--timeout", type=positive_float, default=timeout_default, help=timeout_help)
    g.add_argument("--retries", type=int, default=2, help="retries for outcomes that may pass (default: 2)")
    g.add_argument("--force", action="store_true", help="redo every item, even those finished before")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout, nothing else")


class Progress:
    """A live line of counts per status on a terminal; one line per item otherwise."""

    def __init__(self, *, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total, self.stream, self.quiet = 0, stream or sys.stderr, quiet
        self.counts: Counter[str] = Counter()
        self.tty = self.stream.isatty()

    def start(self, total: int) -> None:
        """A batch of ``total`` items begins."""
        self.total = total
        self.counts.clear()

    def __call__(self, result: ItemResult) -> None:
        self.counts[result.status.value] += 1
        if self.quiet:
            return
        done = sum(self.counts.values())
        if self.tty:
            width = 30
            fill = int(width * done / max(1, self.total))
            counts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            self.stream.write(f"\r\033[K[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} {counts}")
            if done >= self.total:
                self.stream.write("\n")
        else:
            note = " (resumed)" if result.cached else ""
            why = f": {result.reason}" if result.reason and result.status is not Status.SUCCESS else ""
            self.stream.write(f"{EMOJI[result.status]} [{done}/{self.total}] {result.item_id} {result.status.value}{note}{why}\n")
        self.stream.flush()


@contextlib.contextmanager
def quick_local_runs() -> Iterator[None]:
    """No heartbeat wait at the end of a flow run started from the command line."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


def run_flow(flow: Any, *, progress: Progress | None = None, **params: Any) -> dict[str, Any]:
    """Call a pipeline flow; return its summary dict whether the batch failed or not."""
    from flows.batch import BatchFailed, set_progress_hook
    from salvo.errors import UsageError

    set_progress_hook(progress)
    try:
        with quick_local_runs():
            state = flow(**params, return_state=True)
    finally:
        set_progress_hook(None)
    if state.is_completed():
        return state.result()
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BatchFailed):
        return exc.summary
    if isinstance(exc, UsageError):
        raise exc
    raise RunFailed(f"{flow.name} failed: {exc}")


def print_json(doc: Any) -> None:
    """The whole stdout of a --json run."""
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def print_summary(doc: dict[str, Any], *, title: str = "BATCH PROCESSING COMPLETE", noun: str = "files", stream: TextIO | None = None) -> None:
    """The seed's closing block: counts per status, times, failures and report paths."""
    stream = stream or sys.stdout
    s = doc["summary"]
    w = stream.write
    w(f"\n{title}\n{'=' * 40}\n")
    w(f"Total {noun}:{'':<6}{s['total']}\n")
    for status in Status:
        n = s["counts"].get(status.value, 0)
        if n:
            label = status.value.replace("_", " ").capitalize() + ":"
            w(f"{EMOJI[status]} {label:<16}{n}\n")
    if s["resumed"]:
        w(f"Resumed from earlier runs: {s['resumed']}\n")
    w(f"Total time: {s['wall_time_s']:.1f} s, average per item: {s['mean_time_s']:.2f} s\n")
    for item in doc["items"]:
        if Status(item["status"]).failed:
            w(f"  {item['item_id']}: {item['status']}: {item['reason']}\n")
    for kind, path in doc.get("reports", {}).items():
        w(f"{kind.capitalize()} report: {path}\n")
    stream.flush()
