"""The assembly ledger: which runs an experiment had, and how each one ended.

Storage offers no lock and, on S3, no rename, so the ledger is built from objects that are only
ever *created*, never edited, each with an atomic create-if-absent:

- ``ledger/claims/runNNN.json``: claiming run number NNN. Two processes that claim at the same
  moment race on the same name; exactly one creation succeeds and the other takes NNN+1. So
  every assembly gets a distinct ID.
- ``ledger/events/<assembly_id>.<status>.<time>.<token>.json``: one object per status change
  (``started``, ``completed``, ``failed``). Nobody rewrites anybody's object, so no row is lost.

``assembly_list.csv`` is a rendering of those events, written atomically. Every writer re-lists
the events after writing it and renders again if it missed one, so the last rendering always
holds every row; readers use the events themselves, and the CSV only as a cache of event bodies.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

import psutil

from salvo.assembly.ids import AssemblyId, make_assembly_id, parse_assembly_id
from salvo.errors import UsageError
from salvo.storage import StorageTarget, new_token
from salvo.validate import redact

log = logging.getLogger(__name__)

LEDGER_CSV = "assembly_list.csv"
CLAIMS = "ledger/claims"
EVENTS = "ledger/events"
HEARTBEATS = "ledger/heartbeats"
#: A running assembly rewrites its heartbeat this often (seconds)...
HEARTBEAT_S = 30.0
#: ...and one silent for this long, on another host, counts as interrupted.
STALE_S = 180.0
STATUSES = ("started", "completed", "failed")
#: How many run numbers a claimer tries past the highest it saw before giving up.
MAX_CLAIM_TRIES = 1000


@dataclass
class LedgerRow:
    """One assembly as the ledger knows it: its latest status and what it produced."""

    assembly_id: str
    timestamp: str  # when the ID was claimed, ISO 8601 UTC
    status: str
    result_name: str = ""
    result_file: str = ""
    n_rows: int | None = None
    config_hash: str = ""
    experiment: str = ""
    updated: str = ""  # time of the event that set this status
    host: str = ""
    pid: int | None = None
    pid_started: float | None = None
    message: str = ""
    event: str = ""  # name of the event object this row was rendered from
    heartbeat: str = ""  # last sign of life of a started run, ISO 8601 UTC
    seed: int | None = None  # the base random seed the assembly generated its data with

    @property
    def interrupted(self) -> bool:
        """A ``started`` run that is gone: its process died (same host) or fell silent (other host)."""
        if self.status != "started" or not self.host:
            return False  # finished, or a seed-era row we know nothing about
        if self.host == socket.gethostname() and self.pid:
            return not process_alive(self.pid, self.pid_started)
        stamps = [_parse_time(t) for t in (self.heartbeat, self.updated, self.timestamp) if t]
        return bool(stamps) and (_now() - max(stamps)).total_seconds() > STALE_S


def process_alive(pid: int, started: float | None) -> bool:
    """Whether process ``pid`` runs and, when ``started`` is known, is the same process."""
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - float(started)) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _me() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": psutil.Process(pid).create_time()}


def claim_assembly_id(exp: StorageTarget, *, experiment: str = "") -> AssemblyId:
    """Claim the next free run number of the experiment at ``exp``; return its new ID."""
    taken = [
        int(n[3:-5]) for n in exp.list(CLAIMS) if n.startswith("run") and n.endswith(".json") and n[3:-5].isdigit()
    ]
    # Seed-era ledgers have rows but no claims: keep counting after their runs.
    taken += [parse_assembly_id(r.assembly_id).run_number for r in _read_csv_rows(exp)]
    number = max(taken, default=0) + 1
    for _ in range(MAX_CLAIM_TRIES):
        aid = make_assembly_id(number)
        body = {
            "assembly_id": str(aid),
            "claimed": _now().isoformat(),
            "experiment": experiment,
            "token": new_token(),
            **_me(),
        }
        if exp.create_exclusive(f"{CLAIMS}/run{number:03d}.json", json.dumps(body).encode()):
            return aid
        number += 1  # somebody else won this number at the same moment: take the next one
    raise RuntimeError(f"could not claim a run number in {exp.url} after {MAX_CLAIM_TRIES} tries")


def record_event(exp: StorageTarget, assembly_id: str, status: str, **details: Any) -> str:
    """Record that ``assembly_id`` reached ``status``; return the event object's name."""
    if status not in STATUSES:
        raise UsageError(f"unknown assembly status {status!r}: use one of {', '.join(STATUSES)}")
    aid = str(parse_assembly_id(assembly_id))
    when = _now()
    name = f"{aid}.{status}.{when.strftime('%Y%m%dT%H%M%S%f')}.{new_token()}.json"
    if "message" in details:
        details["message"] = redact(details["message"])  # never a credential in the ledger
    body = {"assembly_id": aid, "status": status, "updated": when.isoformat(), **_me(), **details}
    if not exp.create_exclusive(f"{EVENTS}/{name}", json.dumps(body, default=str).encode()):
        raise RuntimeError(f"ledger event {name} already exists")  # random token: never expected
    return name


def _event_key(name: str) -> tuple[str, str, str] | None:
    parts = name.split(".")
    if len(parts) != 5 or parts[-1] != "json" or parts[1] not in STATUSES:
        return None
    return parts[0], parts[1], parts[2]


def latest_events(names: Iterable[str]) -> dict[str, str]:
    """For each assembly, the event that decides its status: ``completed`` wins, else the latest."""
    best: dict[str, tuple[int, str, str]] = {}
    for name in names:
        key = _event_key(name)
        if key is None:
            continue
        aid, status, when = key
        rank = (1 if status == "completed" else 0, when, name)
        if aid not in best or rank > best[aid]:
            best[aid] = rank
    return {aid: rank[2] for aid, rank in best.items()}


def read_ledger(exp: StorageTarget) -> list[LedgerRow]:
    """Every assembly of the experiment at ``exp``, oldest first, each with its latest status."""
    latest = latest_events(exp.list(EVENTS))
    csv_rows = _read_csv_rows(exp)
    cached = {row.event: row for row in csv_rows if row.event}
    # Rows without an event come from a seed-era ledger: keep them as they are.
    rows = [r for r in csv_rows if not r.event and r.assembly_id not in latest]
    for aid, event in latest.items():
        row = cached.get(event)
        if row is None:
            body = json.loads(exp.read_bytes(f"{EVENTS}/{event}"))
            row = row_from_event(body, event=event)
        rows.append(row)
    beats = set(exp.list(HEARTBEATS)) if any(r.status == "started" for r in rows) else set()
    for row in rows:
        if row.status == "started" and f"{row.assembly_id}.json" in beats:
            row.heartbeat = _read_heartbeat(exp, row.assembly_id)
    return sorted(rows, key=lambda r: parse_assembly_id(r.assembly_id))


def _read_heartbeat(exp: StorageTarget, assembly_id: str) -> str:
    try:
        return str(json.loads(exp.read_bytes(f"{HEARTBEATS}/{assembly_id}.json")).get("at", ""))
    except (FileNotFoundError, ValueError):
        return ""


def beat(exp: StorageTarget, assembly_id: str) -> None:
    """Record that ``assembly_id`` is still running (rewrites one small object)."""
    body = {"assembly_id": assembly_id, "at": _now().isoformat(), **_me()}
    exp.write_bytes(f"{HEARTBEATS}/{assembly_id}.json", json.dumps(body).encode())


class Heartbeat:
    """A background thread that beats for ``assembly_id`` every ``interval`` seconds."""

    def __init__(self, exp: StorageTarget, assembly_id: str, *, interval: float = HEARTBEAT_S) -> None:
        self.exp, self.assembly_id, self.interval = exp, assembly_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="salvo-heartbeat", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                beat(self.exp, self.assembly_id)
            except Exception as exc:  # storage unreachable: the run itself will report it
                log.warning("heartbeat of %s failed: %s", self.assembly_id, exc)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 30)


def row_from_event(body: dict[str, Any], *, event: str) -> LedgerRow:
    """The ledger row an event object describes."""
    aid = parse_assembly_id(body["assembly_id"])
    known = {f.name for f in fields(LedgerRow)}
    data = {k: v for k, v in body.items() if k in known}
    data.setdefault("timestamp", aid.started_at.isoformat())
    data["event"] = event
    return LedgerRow(**data)


def render_ledger_csv(rows: Iterable[LedgerRow]) -> str:
    """The text of ``assembly_list.csv`` for ``rows``."""
    out = io.StringIO()
    names = [f.name for f in fields(LedgerRow)]
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    return out.getvalue()


def _read_csv_rows(exp: StorageTarget) -> list[LedgerRow]:
    try:
        text = exp.read_bytes(LEDGER_CSV).decode("utf-8")
    except FileNotFoundError:
        return []
    rows = []
    known = {f.name for f in fields(LedgerRow)}
    for rec in csv.DictReader(io.StringIO(text)):
        data = {k: (v or "") for k, v in rec.items() if k in known}
        try:
            parse_assembly_id(data.get("assembly_id", ""))
            data.update(
                n_rows=_int(data.get("n_rows")),
                pid=_int(data.get("pid")),
                seed=_int(data.get("seed")),
                pid_started=float(data["pid_started"]) if data.get("pid_started") else None,
            )
            data.setdefault("timestamp", "")
            data.setdefault("status", "started")
            rows.append(LedgerRow(**data))
        except (TypeError, ValueError, UsageError):
            continue  # a malformed row: the events are the truth anyway
    return rows


def _int(value: Any) -> int | None:
    return int(float(value)) if value not in (None, "") else None


def publish_ledger(exp: StorageTarget, *, max_rounds: int = 20) -> list[LedgerRow]:
    """Render ``assembly_list.csv`` from the events until it holds every event it should."""
    rows: list[LedgerRow] = []
    for _ in range(max_rounds):
        rows = read_ledger(exp)
        exp.write_bytes(LEDGER_CSV, render_ledger_csv(rows).encode("utf-8"))
        # A concurrent writer may have added an event after our listing; if so, render again.
        if latest_events(exp.list(EVENTS)) == {r.assembly_id: r.event for r in rows if r.event}:
            return rows
    return rows


def find_assembly(exp: StorageTarget, assembly_id: str) -> LedgerRow | None:
    """The ledger row of ``assembly_id``, or ``None`` if the ledger does not know it."""
    aid = str(parse_assembly_id(assembly_id))
    names = [n for n in exp.list(EVENTS) if n.startswith(aid + ".")]
    latest = latest_events(names).get(aid)
    if latest is None:  # perhaps a seed-era row, known only to the CSV
        return next((r for r in _read_csv_rows(exp) if r.assembly_id == aid and not r.event), None)
    row = row_from_event(json.loads(exp.read_bytes(f"{EVENTS}/{latest}")), event=latest)
    if row.status == "started":
        row.heartbeat = _read_heartbeat(exp, aid)
    return row


def started_details(exp: StorageTarget, assembly_id: str) -> dict[str, Any]:
    """The body of the first ``started`` event of ``assembly_id`` (its seed and config), or {}."""
    aid = str(parse_assembly_id(assembly_id))
    names = sorted(n for n in exp.list(EVENTS) if n.startswith(f"{aid}.started."))
    if not names:
        return {}
    return json.loads(exp.read_bytes(f"{EVENTS}/{names[0]}"))


def describe_status(row: LedgerRow | None) -> str:
    """What the status command prints: the status, and whether a started run was interrupted."""
    if row is None:
        return "not_found"
    if row.status == "started" and row.interrupted:
        return "started (interrupted: its process is gone)"
    return row.status
