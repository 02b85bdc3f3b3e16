"""One report format for every pipeline: counts, times, errors and every item's status."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import getpass
import io
import json
import logging
import os
import platform
import re
import shlex
import socket
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from salvo.fsutil import atomic_write_text, disk_full_reason
from salvo.html_report import HISTORY_DIR, REPORT_NAME, TRACE_NAME, Section, relocate_links, render_run_report
from salvo.outcome import ItemResult, Status, signal_name

STATUS_ORDER = [s.value for s in Status]


@dataclass
class Summary:
    """Counts and times of a batch."""

    pipeline: str
    total: int
    counts: dict[str, int]
    failed: int
    resumed: int
    total_time_s: float
    mean_time_s: float
    wall_time_s: float
    failed_items: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every item is done: none failed and none was left unstarted (a batch stopped by
        Ctrl-C between two items is not green, though no item of it failed)."""
        return self.failed == 0 and not self.counts.get(Status.NOT_RUN.value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.__dict__, "ok": self.ok}


def summarize(results: Sequence[ItemResult], *, pipeline: str, wall_time_s: float = 0.0) -> Summary:
    """Count statuses and add up the time spent on items that ran in this batch."""
    counts = Counter(r.status.value for r in results)
    ran = [r for r in results if not r.cached and r.status is not Status.NOT_RUN]
    total_time = sum(r.duration_s for r in ran)
    return Summary(
        pipeline=pipeline,
        total=len(results),
        counts={s: counts[s] for s in STATUS_ORDER if counts[s]},
        failed=sum(1 for r in results if r.status.failed),
        resumed=sum(1 for r in results if r.cached),
        total_time_s=round(total_time, 3),
        mean_time_s=round(total_time / len(ran), 3) if ran else 0.0,
        wall_time_s=round(wall_time_s, 3),
        failed_items=[r.item_id for r in results if r.status.failed],
    )


def summary_text(results: Sequence[ItemResult], summary: Summary, *, title: str) -> str:
    """The seed's `batch_processing_summary.txt`: statistics, times, errors, every item."""
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [title, "=" * len(title), f"Generated: {now}", "", "Overall statistics"]
    lines.append(f"  Total items:      {summary.total}")
    for status, n in summary.counts.items():
        lines.append(f"  {status + ':':<17} {n}")
    lines.append(f"  Resumed (earlier run): {summary.resumed}")
    lines += [
        "",
        "Processing times",
        f"  Wall time:        {summary.wall_time_s:.1f} s",
        f"  Total item time:  {summary.total_time_s:.1f} s",
        f"  Average per item: {summary.mean_time_s:.2f} s",
    ]
    failures = [r for r in results if r.status.failed]
    lines += ["", f"Errors ({len(failures)})"]
    for r in failures:
        lines.append(f"  {r.item_id}: {r.status.value}: {r.reason}")
        lines += [f"      | {line}" for line in r.stderr_tail.splitlines()[-10:]]
    lines += ["", "All items"]
    for r in results:
        extra = f" ({r.reason})" if r.reason else ""
        resumed = " [resumed]" if r.cached else ""
        lines.append(f"  {r.status.value:<15} {r.duration_s:8.2f} s  {r.item_id}{resumed}{extra}")
    return "\n".join(lines) + "\n"


#: The columns of ``trace.tsv``, in order (docs/report.md says what each holds).
TRACE_COLUMNS = (
    "item",
    "attempt",
    "status",
    "exit",
    "signal",
    "start",
    "end",
    "duration_s",
    "cpu_s",
    "cpu_pct",
    "peak_rss_mb",
    "read_bytes",
    "write_bytes",
    "timeout_s",
    "command",
    "log",
    "outputs",
)
#: The summary JSON's name in a report folder and in each ``runs/<run name>/``.
SUMMARY_JSON = "batch_summary.json"
#: A file in ``runs/`` saying the folder is Salvo's run history (a ``runs/`` folder without it is the user's).
HISTORY_MARK = ".salvo-history"
#: In each ``runs/<run name>/``: the run header and summary alone, what ``salvo history`` reads (not every item).
RUN_JSON = "run.json"
#: Set by the ``salvo`` command (cli/main.py): the command line the run header shows.
COMMAND_LINE: list[str] = []


def set_command_line(argv: Sequence[str]) -> None:
    """Remember the command line of this process's ``salvo`` command, for the run header."""
    COMMAND_LINE[:] = list(argv)


def attempt_rows(results: Sequence[ItemResult], logs: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per attempt of every item that ran in this run (``ItemResult.attempts``), in the items' order.

    An item that did not run in this run has one row with attempt 0: status ``resumed`` (an earlier
    run finished it) or its own status (``not_run``, or a pipeline's own decision such as ``skipped``).
    ``log`` is the item's log file when it exists; ``outputs`` (the last attempt's) a list of paths.
    """
    rows = []
    for r in results:
        log = logs.get(r.item_id) if logs else None
        log = log if log and os.path.exists(log) else ""
        if r.cached:
            tries: list[dict[str, Any]] = [{"attempt": 0, "status": "resumed"}]
        elif r.attempts:
            tries = r.attempts
        elif r.status is not Status.NOT_RUN and r.started:
            tries = [r.figures()]  # a result made without the batch's retry loop: its one attempt
        else:
            tries = [{"attempt": 0, "status": r.status.value}]
        last = len(tries) - 1
        for i, a in enumerate(tries):
            rows.append({"item": r.item_id, **a, "log": log, "outputs": list(r.outputs) if i == last else []})
    return rows


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_TSV_SPECIAL = re.compile(r"[\\\t\n\r]")


def _tsv_text(value: str) -> str:
    return value.translate(_TSV_ESCAPES) if _TSV_SPECIAL.search(value) else value


def _tsv_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "signal":
        return signal_name(int(value))
    if key == "outputs":
        return _tsv_text(shlex.join(value)) if value else ""
    kind = type(value)
    if kind is str:
        return _tsv_text(value)
    if kind is int or kind is float:
        return str(value)
    return _tsv_text(str(value).lower() if kind is bool else str(value))


def trace_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``trace.tsv``: a header of :data:`TRACE_COLUMNS`, then one line per attempt (``attempt_rows``).

    Tab-separated, UTF-8; a tab, newline, carriage return or backslash inside a value is written
    ``\\t``, ``\\n``, ``\\r``, ``\\\\``; a value holding a double quote is quoted as CSV quotes
    (a field in double quotes, its quotes doubled), so that ``pandas.read_csv(path, sep="\\t")`` reads
    every value back.
    Empty means not measured or not applicable.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(TRACE_COLUMNS)
    value = _tsv_value
    writer.writerows([value(k, row.get(k)) for k in TRACE_COLUMNS] for row in rows)
    return buf.getvalue()


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def _process_start() -> str:
    try:
        import psutil

        when = dt.datetime.fromtimestamp(psutil.Process().create_time(), dt.timezone.utc)
        return when.isoformat(timespec="seconds")
    except Exception:  # noqa: BLE001 - a header without a start time is still a header
        return ""


def exit_status(summary: Summary) -> int:
    """What the ``salvo`` command returns for this batch: 0 all done, 1 items failed, 130 interrupted."""
    if summary.counts.get(Status.INTERRUPTED.value):
        return 130
    return 0 if summary.ok else 1


def run_header(summary: Summary, results: Sequence[ItemResult] = (), **given: Any) -> dict[str, Any]:
    """The run header: who ran what, where, when, how it ended, and where to see it in the UI.

    ``given`` (from the flow: ``run_name``, ``run_id``, ``ui_url``, ``parameters``, ``started``,
    ``memory_limit_mb`` ...) wins over what this process can tell by itself.
    """
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    from salvo import __version__

    header: dict[str, Any] = {
        "run_name": "",
        "run_id": "",
        "pipeline": summary.pipeline,
        "command": shlex.join(COMMAND_LINE) if COMMAND_LINE else "",
        "parameters": None,
        "salvo_version": __version__,
        "prefect_version": _version("prefect"),
        "python_version": platform.python_version(),
        "user": _user(),
        "host": socket.gethostname(),
        "cwd": os.getcwd(),
        "started": _process_start(),
        "ended": now,
        "exit_status": exit_status(summary),
        "ui_url": "",
        "timeout_s": None,
        "memory_limit_mb": None,
    }
    header.update({k: v for k, v in given.items() if v is not None})
    if header["timeout_s"] is None:  # the limit the items ran under (every attempt of a batch has the same)
        header["timeout_s"] = next((r.timeout_s for r in results if r.timeout_s is not None), None)
    if not header["run_name"]:
        local = dt.datetime.now().astimezone().strftime("%Y%m%d-%H%M%S")
        header["run_name"] = f"{summary.pipeline}-{local}"
    header["run_id"] = header["run_id"] or uuid.uuid4().hex
    return header


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid
        return str(os.getuid())


def _history_folder(folder: Path, header: Mapping[str, Any]) -> Path | None:
    """``runs/<run name>/`` for this run (a suffix when another run took the name), or None when
    ``runs/`` is not Salvo's (a folder of the user's own by that name, left alone)."""
    root = folder / HISTORY_DIR
    if root.exists() and not (root / HISTORY_MARK).exists():
        return None
    root.mkdir(parents=True, exist_ok=True)
    (root / HISTORY_MARK).touch()
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", str(header["run_name"])).strip("._") or "run"
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        there = root / name / RUN_JSON
        if not (root / name).exists() or _run_id(there) == header["run_id"]:
            return root / name
    return None


def _run_id(path: Path) -> str:
    try:
        return str((json.loads(path.read_text("utf-8")).get("run") or {}).get("run_id", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def history(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The runs kept in ``folder/runs/``, newest first: each run's header, summary and report paths."""
    root = Path(folder) / HISTORY_DIR
    if not (root / HISTORY_MARK).exists():
        return []
    runs = []
    for sub in root.iterdir():
        path = sub / RUN_JSON
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("run"), dict):
            continue
        runs.append(
            {
                "name": sub.name,
                "run": doc["run"],
                "summary": doc.get("summary") or {},
                "report": str(sub / REPORT_NAME),
                "trace": str(sub / TRACE_NAME),
            }
        )
    runs.sort(key=lambda r: (str(r["run"].get("ended") or ""), r["name"]), reverse=True)
    return runs


def write_reports(
    results: Sequence[ItemResult],
    summary: Summary,
    *,
    folder: str | os.PathLike[str],
    title: str,
    text_name: str | None = "batch_processing_summary.txt",
    json_name: str = SUMMARY_JSON,
    sections: Sequence[Section] = (),
    logs: Mapping[str, str] | None = None,
    items: list[dict[str, Any]] | None = None,
    header: Mapping[str, Any] | None = None,
    keep_history: bool = True,
    also_as: Sequence[str] = (),
    base: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Write the text, JSON, trace and HTML reports atomically; return their paths by kind.

    ``items`` are the results' ``to_dict()``, when the caller has them already; ``header`` what the
    flow knows of the run (see :func:`run_header`). With ``keep_history``, the same files are kept
    in ``runs/<run name>/`` too (links adjusted), so that the next run does not overwrite them;
    the top-level files are always the latest run's. ``also_as``: other names of the same page, beside it;
    ``base``: the folder links are made relative to, when the files are moved there after (default ``folder``).
    """
    folder = Path(folder)
    head = run_header(summary, results, **dict(header or {}))
    run_dir = _history_folder(folder, head) if keep_history else None
    rows = attempt_rows(results, logs)
    doc = {
        "summary": summary.to_dict(),
        "run": head,
        "items": [r.to_dict() for r in results] if items is None else items,
    }
    files: dict[str, tuple[str, str]] = {}  # kind -> (name, text)
    if text_name:
        files["text"] = (text_name, summary_text(results, summary, title=title))
    files["json"] = (json_name, json_text(doc) + "\n")
    files["trace"] = (TRACE_NAME, trace_text(rows))
    past = [r for r in history(folder) if run_dir is None or r["name"] != run_dir.name]
    links = [("trace (one row per attempt)", TRACE_NAME), ("summary JSON", json_name)]
    if text_name:
        links.append(("text summary", text_name))
    if run_dir is not None:
        links.append(("this run's own copy", f"{HISTORY_DIR}/{run_dir.name}/{REPORT_NAME}"))
    page = render_run_report(
        results,
        summary,
        title=title,
        base=base or folder,
        sections=sections,
        logs=logs,
        header=head,
        trace=rows,
        history=past,
        files=links,
    )
    files["html"] = (REPORT_NAME, page)
    written: dict[str, str] = {}
    if run_dir is not None:  # the run's own copy first: the top level then says it is the latest
        own = {name for name, _ in files.values()}
        with skip_on_full_disk(written, "history"):
            for kind, (name, text) in files.items():
                atomic_write_text(run_dir / name, relocate_links(text, depth=2, keep=own) if kind == "html" else text)
            atomic_write_text(run_dir / RUN_JSON, json_text({"run": head, "summary": doc["summary"]}) + "\n")
    for name in also_as:  # the same page under a seed's own name (subjects: batch_report.html)
        with skip_on_full_disk(written, name):
            atomic_write_text(folder / name, page)
    for kind, (name, text) in files.items():  # a report that finds no space is one warning line, not a traceback
        with skip_on_full_disk(written, kind):
            written[kind] = str(atomic_write_text(folder / name, text))
    return written


@contextlib.contextmanager
def skip_on_full_disk(written: dict[str, str], kind: str) -> Iterator[None]:
    """A report that cannot be written for lack of space is left out with one warning line, not a
    traceback; the batch's own outcome stands, and the next run writes it (no half file stays)."""
    try:
        yield
    except OSError as exc:
        why = disk_full_reason(exc)
        if why is None:
            raise
        logging.getLogger("salvo.report").warning("%s report not written: %s", kind, why)


def json_text(doc: Any) -> str:
    """The JSON report's and ``--json``'s text: indented by two spaces, keys in their order, any
    value JSON has no type for written as its ``str`` (``json.dumps(doc, indent=2, default=str)``).

    Encoded by orjson (a dependency of Prefect's): ``json`` uses its C encoder only without
    ``indent``, and with it took 0.2 s for the 10,000 items of a fully resumed batch, paid twice
    (the report and ``--json``). Two differences from ``json``: text is UTF-8 rather than ``\\u``
    escapes, and NaN or infinity is ``null`` (``json``'s ``NaN`` is not JSON). What orjson cannot
    encode (a string that is not valid Unicode, from an undecodable file name; an integer beyond
    64 bits; nesting deeper than 254) is left to ``json``, which also refuses what it refused.
    """
    try:
        return orjson.dumps(doc, default=_json_default, option=_JSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(doc, indent=2, default=str)


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else str(value)  # a tuple subclass (a named tuple) as json writes it


_JSON_OPTIONS = (
    orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


#: Longest reason shown in the UI's items table; the full text is in the logs and reports.
TABLE_REASON_CHARS = 80


def table_rows(results: Sequence[ItemResult]) -> list[dict[str, Any]]:
    """Rows for a table artifact or a CSV: one per item, failures first, short reasons, outputs."""
    ordered = sorted(results, key=lambda r: (not r.status.failed, r.status is Status.NOT_RUN))
    rows = []
    for r in ordered:
        first = r.reason.splitlines()[0] if r.reason else ""
        short = first if len(first) <= TABLE_REASON_CHARS else first[: TABLE_REASON_CHARS - 1] + "…"
        rows.append(
            {
                "item": r.item_id,
                "status": r.status.value,
                "reason": short,
                "output": r.outputs[0] if r.outputs else "",
                "duration_s": r.duration_s,
                "attempt": r.attempt,
                "peak_rss_mb": r.peak_rss_mb,
                "resumed": r.cached,
            }
        )
    return rows


def summary_markdown(summary: Summary, *, reports: dict[str, str] | None = None) -> str:
    """A short markdown summary, linking the report files."""
    lines = [f"# {summary.pipeline}: {'all done' if summary.ok else f'{summary.failed} failed'}", ""]
    lines += ["| status | items |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in summary.counts.items()]
    lines += ["", f"Resumed from earlier runs: {summary.resumed}. Wall time {summary.wall_time_s:.1f} s."]
    if summary.failed_items:
        lines += ["", "Failed: " + ", ".join(f"`{i}`" for i in summary.failed_items[:50])]
    if reports:
        # Paths, not file:// links: a browser will not open local files from the UI's page.
        lines += ["", "Reports (open the HTML one in a browser):"]
        lines += [f"- {kind}: `{path}`" for kind, path in reports.items()]
    return "\n".join(lines) + "\n"
