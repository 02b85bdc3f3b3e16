"""How Salvo's flow runs are named: ``PIPELINE-INPUT-YYYYmmdd-HHMMSS``, from the moment they exist.

A flow names its own run when it starts (``flows.batch.run_namer``). Runs created by a schedule
or by ``prefect deployment run`` exist before that, with a random name Prefect gave them; whatever
Salvo keeps running beside a server (``salvo serve``, and the guard of the local server every
``salvo`` command shares) calls :func:`name_new_runs` every few seconds, so those runs carry their
real name in the UI while they wait. Plain HTTP: no Prefect import.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from salvo.pipelines import all_flows

#: The parameters each pipeline flow's run name is made of (the first one given): the table's.
NAME_PARAMS: dict[str, tuple[str, ...]] = {f.name: f.name_params for f in all_flows()}


def run_name(pipeline: str, parameters: dict[str, Any], when: dt.datetime) -> str:
    """``PIPELINE-LABEL-YYYYmmdd-HHMMSS`` (label: the last path part of the first given name parameter)."""
    values = [parameters.get(p) for p in NAME_PARAMS.get(pipeline, ())]
    where = next((str(v) for v in values if v), "")
    label = os.path.basename(os.path.normpath(where)) if where else ""
    return "-".join(x for x in (pipeline, label, when.astimezone().strftime("%Y%m%d-%H%M%S")) if x)


def api_call(api_url: str, path: str, body: dict[str, Any], method: str = "POST", timeout_s: float = 10.0) -> Any:
    """One call to the Prefect API (JSON in and out, ``PREFECT_API_KEY`` as a bearer token when set); a busy
    server's 503 (its SQLite database locked) is tried again, as Prefect's client does."""
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    for attempt in range(6):
        req = urllib.request.Request(
            f"{api_url.rstrip('/')}{path}", data=json.dumps(body).encode(), method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                raw = resp.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 502, 503) or attempt == 5:
                raise
            time.sleep(0.5 * 2**attempt)


def name_new_runs(api_url: str) -> list[str]:
    """Name Salvo's scheduled and pending flow runs after their pipeline, input and expected start.

    A run is Salvo's when it carries the ``salvo`` tag and one pipeline's tag (every deployment
    in ``deployments/prefect.yaml`` does). Returns the names given.
    """
    runs = api_call(
        api_url,
        "/flow_runs/filter",
        {
            "flow_runs": {"tags": {"all_": ["salvo"]}, "state": {"type": {"any_": ["SCHEDULED", "PENDING"]}}},
            "limit": 200,
        },
    )
    named = []
    for run in runs or []:
        pipeline = next((t for t in run.get("tags", []) if t in NAME_PARAMS), None)
        if pipeline is None or run["name"].startswith(pipeline):
            continue
        when = dt.datetime.fromisoformat((run.get("expected_start_time") or run["created"]).replace("Z", "+00:00"))
        name = run_name(pipeline, run.get("parameters") or {}, when)
        api_call(api_url, f"/flow_runs/{run['id']}", {"name": name}, method="PATCH")
        named.append(name)
    return named


#: Tag prefix of flow runs started by a `salvo` driver (a command, a Python call): ``salvo-driver:HOST:PID``.
DRIVER_TAG = "salvo-driver"


def _driver_gone(tag: str, started: str | None) -> bool:
    from salvo.procs import create_time

    _, host, pid = tag.split(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's driver: only that host can tell
    t = create_time(int(pid))
    if t is None:
        return True
    if started:  # the pid now belongs to a process started after the run: the driver is gone
        with_tz = dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
        return t > with_tz.timestamp() + 1.0
    return False


def mark_crashed_runs(url: str, *, by: str = "salvo") -> list[str]:
    """Mark Crashed every RUNNING/PENDING flow run (and its unfinished task runs) whose driver here is gone.

    Returns the ids of the flow runs marked. Plain HTTP, about one request when nothing is to mark:
    the local server's guard calls it every few seconds (``by`` names who marked, in the message).
    """
    runs = api_call(
        url, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}}, "limit": 200}
    )
    marked = []
    for run in runs or []:
        tags = [t for t in run.get("tags", []) if t.startswith(f"{DRIVER_TAG}:") and t.count(":") == 2]
        if not tags or not _driver_gone(tags[0], run.get("start_time")):
            continue
        msg = f"Crashed: its driver ({tags[0].split(':', 1)[1]}) is gone (killed?); marked by {by}"
        crashed = {"state": {"type": "CRASHED", "name": "Crashed", "message": msg}, "force": True}
        api_call(url, f"/flow_runs/{run['id']}/set_state", crashed)
        unfinished = {"type": {"any_": ["RUNNING", "PENDING", "SCHEDULED"]}}
        tasks = api_call(
            url,
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": [run["id"]]}}, "task_runs": {"state": unfinished}, "limit": 200},
        )
        for task in tasks or []:
            api_call(url, f"/task_runs/{task['id']}/set_state", crashed)
        marked.append(run["id"])
    return marked
