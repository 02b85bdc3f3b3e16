"""What every `salvo` subcommand shares: runner flags, errors, progress, running a flow."""

from __future__ import annotations

import argparse
import contextlib
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
    Status.INTERRUPTED: "🛑",
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


def duration_arg(default_unit: str = "s") -> Any:
    """An argparse type: ``90``, ``90s``, ``15m``, ``2h`` in seconds (a bare number is in ``default_unit``)."""
    from salvo import validate
    from salvo.errors import UsageError

    def parse(text: str) -> float:
        try:
            return validate.duration(text, "the duration", default_unit=default_unit)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("the duration ")) from None

    return parse


def count_arg(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _add(group: Any, *names: str, **kwargs: Any) -> None:
    """Add an option unless the command already defines it (a seed's own spelling wins)."""
    taken = getattr(group, "_option_string_actions", {})
    free = [n for n in names if n not in taken]
    if free and free[0] == names[0]:
        group.add_argument(*free, **kwargs)


def add_output_flags(parser: Any) -> None:
    """--json, --verbose and --quiet: how much a command prints."""
    _add(parser, "--json", action="store_true", help="print the summary as JSON on stdout, nothing else")
    _add(parser, "--verbose", "-v", action="store_true", help="show Prefect's and Dask's own log lines too")
    _add(parser, "--quiet", "-q", action="store_true", help="print only errors and the final summary")


def add_runner_flags(
    parser: Any,
    pipeline: str,
    *,
    timeout_unit: str = "s",
    worker_aliases: tuple[str, ...] = ("--max-workers",),
    parallel_switch: bool = True,
    output_flags: bool = True,
    dask: bool = True,
) -> None:
    """The flags every batch command takes, each meaning the same everywhere; :func:`run_options` reads them.

    ``--workers N`` (with the seed's own spelling as an alias), ``--timeout`` with units (a bare
    number is in ``timeout_unit``: seconds for most seeds, minutes for the subject batch; the
    default is ``pipeline``'s own), ``--retries`` with one default, ``--force``, and the output flags.
    Every default shown comes from :class:`salvo.options.RunOptions`.
    """
    from salvo.options import RunOptions

    defaults = RunOptions.for_pipeline(pipeline)
    g = parser.add_argument_group("running") if isinstance(parser, argparse.ArgumentParser) else parser
    if parallel_switch:
        _add(g, "--parallel", action="store_true", help="run items in parallel, one per CPU unless --workers says")
    per_cpu = "--parallel or --dask-address" if parallel_switch else "--dask-address"
    _add(
        g,
        "--workers",
        *worker_aliases,
        dest="max_workers",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"items run at once (default: {defaults.workers}, or one per CPU with {per_cpu})",
    )
    if dask:
        _add(g, "--dask-address", metavar="tcp://HOST:PORT", help="run on this existing Dask cluster")
    if "--cluster" not in getattr(g, "_option_string_actions", {}):
        from cli.cluster import add_cluster_flags

        add_cluster_flags(g)
    unit = {"s": "seconds", "m": "minutes"}.get(timeout_unit, timeout_unit)
    _add(
        g,
        "--timeout",
        type=duration_arg(timeout_unit),
        default=None,
        metavar="DURATION",
        help=f"per-item limit, enforced by killing the item's process tree: 90s, 15m, 2h; a bare number is in {unit} "
        f"(default: {_shown(defaults.timeout_s)})",
    )
    _add(
        g,
        "--kill-grace",
        type=duration_arg("s"),
        default=None,
        metavar="DURATION",
        help="time a killed item gets between SIGTERM and SIGKILL to clean up "
        f"(default: {_shown(defaults.kill_grace_s)})",
    )
    _add(
        g,
        "--retries",
        type=count_arg,
        default=None,
        metavar="N",
        help="extra tries for outcomes that may pass (crash, error); never for timeout, skip or bad input "
        f"(default: {defaults.retries})",
    )
    _add(g, "--force", action="store_true", help="redo every item, even those finished before")
    if output_flags:
        add_output_flags(g)


def _shown(seconds: float | None) -> str:
    from salvo.durations import human_duration

    return human_duration(seconds)


#: How much the running command prints (`set_output`): Prefect's console lines only with --verbose;
#: with --quiet only errors and the final summary.
OUTPUT = {"verbose": False, "quiet": False}


def set_output(args: argparse.Namespace) -> None:
    """Read --verbose / --quiet / --json of the parsed command (`cli.main` calls it once)."""
    OUTPUT["verbose"] = bool(getattr(args, "verbose", False))
    OUTPUT["quiet"] = bool(getattr(args, "quiet", False)) or bool(getattr(args, "json", False))


class _OnlyWithVerbose:
    """A logging filter for Prefect's console handlers: its own records (``prefect.*``, the flow and task
    run loggers) stay off the terminal; they still reach the API (another handler), so the UI has them."""

    def filter(self, record: Any) -> bool:
        return OUTPUT["verbose"] or not (record.name == "prefect" or record.name.startswith("prefect."))


_ONLY_WITH_VERBOSE = _OnlyWithVerbose()


def terminal_logging() -> None:
    """Keep Prefect's log records off the terminal unless --verbose (idempotent; Prefect must be imported)."""
    from deployments.prefect_patches import console_handlers

    for h in console_handlers():
        if _ONLY_WITH_VERBOSE not in h.filters:
            h.addFilter(_ONLY_WITH_VERBOSE)


#: The flag that sets each field of RunOptions, for error messages.
_FLAGS = {
    "timeout_s": "--timeout",
    "workers": "--workers",
    "dask_address": "--dask-address",
    "retries": "--retries",
    "items_per_task": "--items-per-task",
    "kill_grace_s": "--kill-grace",
    "slurm": "--cluster slurm",
}


def run_options(args: argparse.Namespace, pipeline: str, **given: Any) -> Any:
    """The batch's :class:`salvo.options.RunOptions`, built once from the command's flags.

    Each seed's own spelling is turned into the one form here: a ``--parallel`` switch means one
    worker per CPU (as does a Dask cluster) unless ``--workers N`` says; ``--timeout`` is already
    in seconds (its argparse type read the seed's unit); ``--continue-on-error`` is ``fail_fast``
    off. A flag not given takes ``pipeline``'s default. ``given`` overrides (values a command
    checked itself). A value out of range is a one-line UsageError naming the flag.
    """
    from pydantic import ValidationError

    from salvo.errors import UsageError
    from salvo.options import RunOptions, cpu_workers

    dask = getattr(args, "dask_address", None) or None
    workers = getattr(args, "max_workers", None)
    if workers is None and (getattr(args, "parallel", False) is True or dask):
        workers = cpu_workers()
    values = {
        "timeout_s": getattr(args, "timeout", None),
        "workers": workers,
        "dask_address": dask,
        "retries": getattr(args, "retries", None),
        "force": getattr(args, "force", None),
        "items_per_task": getattr(args, "items_per_task", None),
        "kill_grace_s": getattr(args, "kill_grace", None),
    }
    if getattr(args, "continue_on_error", False):
        values["fail_fast"] = False
    from cli.cluster import slurm_from_args

    values["slurm"] = slurm_from_args(args)
    try:
        return RunOptions.for_pipeline(pipeline, **{**values, **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        raise UsageError(f"{_FLAGS.get(field, field)} {err['msg'].lower()}, not {err.get('input')!r}") from None


class Progress:
    """What a batch shows while it runs.

    On a terminal: a `rich` progress bar (counts per status, rate, ETA) with one line per finished
    item printed above it, never through it; Prefect's console log lines go above it too. Elsewhere
    (a pipe, a log file): the seed's one line per item. ``quiet`` shows nothing.
    """

    def __init__(self, *, stream: TextIO | None = None, quiet: bool = False, noun: str = "items") -> None:
        self.total, self.stream, self.quiet, self.noun = 0, stream or sys.stderr, quiet or OUTPUT["quiet"], noun
        self.counts: Counter[str] = Counter()
        self.ran = 0  # items that ran in this batch (not resumed): the rate counts these
        self.tty = self.stream.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._swapped: list[tuple[Any, Any]] = []

    def listeners(self) -> Any:
        """What this display listens to (`salvo.listeners`): batch starts, item starts, every result."""
        from salvo.listeners import Listeners

        return Listeners(batch_started=(self.start,), item_started=(self.item_started,), results=(self,))

    def start(self, total: int) -> None:
        """A batch of ``total`` items begins."""
        self.close()
        self.total, self.ran = total, 0
        self.counts.clear()
        if self.tty and not self.quiet:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress as Bar,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(file=self.stream, stderr=self.stream is sys.stderr)
        self._bar = Bar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._bar.add_task(self.noun, total=self.total, counts="", rate="")
        self._share_console_with_prefect(console)
        self._bar.start()

    def _share_console_with_prefect(self, console: Any) -> None:
        # Prefect's console handler prints through its own rich Console; given ours, its log lines
        # print above the bar instead of through it (`deployments.prefect_patches.share_console`).
        from deployments.prefect_patches import share_console

        self._swapped.extend(share_console(console))

    def __call__(self, result: ItemResult) -> None:
        self.counts[result.status.value] += 1
        self.ran += 0 if result.cached else 1
        if self.quiet:
            return
        done = sum(self.counts.values())
        line = self._line(result, done)
        if self._bar is not None:
            elapsed = self._bar.tasks[0].elapsed or 0.0
            rate = f"{self.ran / elapsed:.1f}/s" if elapsed > 0.5 and self.ran else ""
            counts = " ".join(f"{EMOJI[Status(k)].strip()} {v}" for k, v in sorted(self.counts.items()))
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
            self._bar.update(self._task, completed=done, counts=counts, rate=rate)
            if done >= self.total:
                self.close()
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def item_started(self, item_id: str) -> None:
        """The seed's 🔄 line when an item starts (above the bar on a terminal)."""
        if self.quiet:
            return
        line = f"🔄 {item_id}"
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _line(self, result: ItemResult, done: int) -> str:
        note = " (resumed)" if result.cached else ""
        why = f": {result.reason}" if result.reason and result.status is not Status.SUCCESS else ""
        return f"{EMOJI[result.status]} [{done}/{self.total}] {result.item_id} {result.status.value}{note}{why}"

    def close(self) -> None:
        """Stop the bar (if any) and give Prefect its console back."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._swapped:
            from deployments.prefect_patches import restore_console

            restore_console(self._swapped)
            self._swapped.clear()


@contextlib.contextmanager
def quick_local_runs() -> Iterator[None]:
    """No heartbeat wait at the end of a flow run started from the command line."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


def run_flow(flow: Any, *, progress: Progress | None = None, **params: Any) -> dict[str, Any]:
    """Call a pipeline flow; return its summary dict whether the batch failed or not.

    Every pipeline flow ends with ``flows.batch.batch_state(doc)``, so its final state holds one of:
    the document (``Completed``), or ``BatchFailed`` carrying it (``Failed``/``Cancelled``). Any
    other data is the exception that stopped the flow before a batch ended (a lost storage, bad
    input found by the flow): a `UsageError` is raised as is, anything else is `RunFailed`.
    ``progress`` hears of the flow's batches (`salvo.listeners`) while it runs.
    """
    from flows.batch import BatchFailed
    from salvo.errors import UsageError
    from salvo.listeners import Listeners, listening
    from salvo.runner import stop_on_sigint, stop_requested

    terminal_logging()
    shown = progress.listeners() if progress is not None else Listeners()
    try:
        # Ctrl-C: running items killed, reports written; the display hears of this flow's batches only.
        with quick_local_runs(), stop_on_sigint(), listening(shown):
            state = flow(**params, return_state=True)
    finally:
        if progress is not None:
            progress.close()
    data = state.result(raise_on_failure=False)
    doc = data.doc if isinstance(data, BatchFailed) else data
    if stop_requested():  # the batch stopped on Ctrl-C, its reports written: main() exits 130
        if isinstance(doc, dict) and "counts" in doc.get("summary", {}):  # recover's rounds are told by its flow
            print_summary(doc, title="BATCH INTERRUPTED", stream=sys.stderr)
        raise KeyboardInterrupt
    if state.is_completed() or isinstance(doc, dict):
        return doc
    if isinstance(doc, UsageError):
        raise doc
    raise RunFailed(f"{flow.name} failed: {doc}")


def print_json(doc: Any) -> None:
    """The whole stdout of a --json run."""
    from salvo.report import json_text

    text = json_text(doc) + "\n"
    sys.stdout.flush()
    out = getattr(sys.stdout, "buffer", None)
    if out is not None:  # UTF-8 whatever the terminal's encoding, as the JSON report is written
        out.write(text.encode("utf-8", "surrogateescape"))
        out.flush()
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def print_dry_run(args: argparse.Namespace, key: str, rows: list[dict[str, Any]], heading: str, line: Any) -> int:
    """What a dry run would do: ``{"dry_run": true, key: rows}`` with --json, else a heading and one
    ``line(row)`` each."""
    if args.json:
        print_json({"dry_run": True, key: rows})
        return 0
    print(heading)
    for row in rows:
        print(line(row))
    return 0


def print_summary(
    doc: dict[str, Any], *, title: str = "BATCH PROCESSING COMPLETE", noun: str = "files", stream: TextIO | None = None
) -> None:
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
