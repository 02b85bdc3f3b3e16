"""The deployments, end to end, on a real `prefect server start` with a real Prefect worker.

Every test here shares one `salvo serve` (see conftest.py); the last test stops it and checks
that no process is left behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import yaml

from deployments.serve import PREFECT_FILE, api_settings
from salvo.samples.netcdf import write_series_file
from tests.deploy.conftest import MARKER_WORKER, ROOT, Served
from tests.helpers import markers, wait_until


@contextlib.contextmanager
def _client(served: Served) -> Iterator[Any]:
    """A SyncPrefectClient talking to the served API."""
    from prefect import get_client

    with api_settings(served.api_url), get_client(sync_client=True) as client:
        yield client


def _flow_run_id(output: str) -> uuid.UUID:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output
    return uuid.UUID(match.group(1))


def _item_rows(client: Any, run_id: uuid.UUID) -> list[dict[str, Any]]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["netcdf-extract-items"])),
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
    )
    assert len(artifacts) == 1
    data = artifacts[0].data
    return json.loads(data) if isinstance(data, str) else data


def _worker_of(pid: int, workers: list[int]) -> int:
    """The worker process (of ``workers``) that started the flow-run process ``pid``."""
    owners = [p.pid for p in psutil.Process(pid).parents() if p.pid in workers]
    assert len(owners) == 1, f"flow run process {pid} is not under one of the workers {workers}"
    return owners[0]


def _series_files(folder: Path, count: int) -> list[Path]:
    return [write_series_file(folder / f"run_{i}.nc", steps=4 + i, seed=i, ny=3, nx=4) for i in range(count)]


def test_serve_deployed_every_pipeline_to_one_process_pool(served: Served) -> None:
    expected = {(d["entrypoint"], d["name"]) for d in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]}
    with _client(served) as client:
        deployments = client.read_deployments()
        pools = {d.work_pool_name for d in deployments}
        pool = client.read_work_pool("salvo-process")
    assert {(d.entrypoint, d.name) for d in deployments} == expected
    assert pools == {"salvo-process"} and pool.type == "process"
    assert all(d.description and "salvo" in d.tags for d in deployments)
    assert any(line.startswith("Salvo is serving. Prefect UI: http://127.0.0.1:") for line in served.lines)


def test_nightly_deployment_runs_to_completion_with_artifacts(served: Served, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    files = _series_files(tmp_path / "in", 3)
    proc = served.prefect(
        "deployment", "run", "netcdf-extract/nightly", "--param", f"directory={tmp_path / 'in'}", "--watch"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Completed" in proc.stdout
    for f in files:
        plots = sorted((f.parent / f"{f.stem}_results").glob("*.png"))
        assert plots and all(p.stat().st_size > 0 for p in plots)
    summary = json.loads((tmp_path / "in" / "batch_summary.json").read_text())
    assert summary["summary"]["total"] == 3 and summary["summary"]["failed"] == 0
    run_id = _flow_run_id(proc.stdout)
    with _client(served) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        task_names = {
            t.name for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        }
    assert run.state.is_completed()
    assert run.name.startswith("netcdf-extract-in-")
    by_key = {a.key: a for a in artifacts}
    assert {"netcdf-extract-items", "netcdf-extract-summary", "netcdf-extract-progress"} <= set(by_key)
    table = by_key["netcdf-extract-items"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["item"] for r in rows) == [f.name for f in files]
    assert {r["status"] for r in rows} == {"success"}
    assert "batch_summary.json" in by_key["netcdf-extract-summary"].data
    assert by_key["netcdf-extract-progress"].data == 100.0
    assert {f.name for f in files} <= task_names


def test_scheduled_deployments_have_upcoming_runs_at_two(served: Served) -> None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    scheduled = [d for d in yaml.safe_load(PREFECT_FILE.read_text())["deployments"] if d.get("schedules")]
    assert {d["entrypoint"] for d in scheduled} >= {
        "flows/netcdf_extract.py:netcdf_extract",
        "flows/assembly.py:assembly_run",
    }
    with _client(served) as client:
        deployments = [d for d in client.read_deployments() if d.entrypoint in {s["entrypoint"] for s in scheduled}]
        assert len(deployments) == len(scheduled)
        for d in deployments:
            assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules] == [
                ("0 2 * * *", "UTC", True)
            ]

        def upcoming() -> dict[str, list[Any]]:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id for d in deployments])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
            )
            out: dict[str, list[Any]] = {str(d.id): [] for d in deployments}
            for r in runs:
                if r.auto_scheduled:
                    out[str(r.deployment_id)].append(r)
            return out

        assert wait_until(lambda: all(upcoming().values()), timeout=90, interval=0.5), upcoming()
        now = dt.datetime.now(dt.timezone.utc)
        for runs in upcoming().values():
            for r in runs:
                when = r.next_scheduled_start_time.astimezone(dt.timezone.utc)
                assert when > now and (when.hour, when.minute) == (2, 0)


def test_scheduled_runs_are_named_after_pipeline_input_and_time_from_creation(served: Served) -> None:
    from deployments.serve import run_name

    def upcoming() -> list[dict[str, Any]]:
        body = {
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}, "tags": {"all_": ["salvo", "nightly"]}},
            "limit": 200,
        }
        req = urllib.request.Request(
            f"{served.api_url}/flow_runs/filter",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return [r for r in json.loads(resp.read()) if r["auto_scheduled"]]

    def all_named() -> bool:
        runs = upcoming()
        return (
            bool(runs)
            and {t for r in runs for t in r["tags"]} >= {"netcdf-extract", "assembly-run"}
            and all(r["name"].startswith(("netcdf-extract-", "assembly-run-")) for r in runs)
        )

    assert wait_until(all_named, timeout=120, interval=1), [r["name"] for r in upcoming()]
    for r in upcoming():
        pipeline = "netcdf-extract" if "netcdf-extract" in r["tags"] else "assembly-run"
        when = dt.datetime.fromisoformat(r["expected_start_time"].replace("Z", "+00:00"))
        assert r["name"] == run_name(pipeline, r["parameters"], when)
        label = "netcdf" if pipeline == "netcdf-extract" else "parameter-distortion"
        assert r["name"].startswith(f"{pipeline}-{label}-") and "salvo" in r["tags"]


def test_a_wrong_parameter_type_is_refused_naming_the_parameter(served: Served) -> None:
    proc = served.prefect(
        "deployment", "run", "netcdf-extract/nightly", "--param", 'run={"retries": "soon"}', "--watch"
    )
    assert proc.returncode != 0
    message = " ".join((proc.stdout + proc.stderr).split())
    assert "Validation failed for field 'run.retries'" in message
    assert "'soon' is not of type 'integer'" in message


def test_two_workers_and_two_concurrent_runs_process_each_item_once(served: Served, tmp_path: Path) -> None:
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.deployments import run_deployment

    other = served.extra.start(
        "second worker",
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "salvo-process", "--limit", "1"],
        env=served.env,
        log=tmp_path / "worker2.log",
    )
    workers = [served.worker_pid(), other.pid]
    with _client(served) as client:
        assert wait_until(
            lambda: (
                sum(w.status == WorkerStatus.ONLINE for w in client.read_workers_for_work_pool("salvo-process")) >= 2
            ),
            timeout=120,
            interval=0.5,
        )
    files = _series_files(tmp_path / "in", 4)
    marks, gate = tmp_path / "markers", tmp_path / "go"
    # Every item waits for the gate, which opens once both runs are running: they must overlap.
    command = f"{sys.executable} {MARKER_WORKER} {{input}} {{output_dir}} {marks} 0.2 {gate}"
    params = {"directory": str(tmp_path / "in"), "worker_command": command, "run": {"retries": 0}}
    with api_settings(served.api_url):
        runs = [run_deployment("netcdf-extract/nightly", parameters=params, timeout=0) for _ in range(2)]
    with _client(served) as client:
        assert wait_until(
            lambda: all(client.read_flow_run(r.id).state.is_running() for r in runs), timeout=240, interval=0.5
        ), [client.read_flow_run(r.id).state for r in runs]
        # Each worker takes one run at a time, so the two running runs are one on each worker.
        assert wait_until(
            lambda: all(client.read_flow_run(r.id).infrastructure_pid for r in runs), timeout=60, interval=0.2
        )
        owners = [_worker_of(int(client.read_flow_run(r.id).infrastructure_pid), workers) for r in runs]
        assert sorted(owners) == sorted(workers), owners
        gate.touch()
        assert wait_until(
            lambda: all(client.read_flow_run(r.id).state.is_final() for r in runs), timeout=240, interval=0.5
        )
        first, second = (client.read_flow_run(r.id) for r in runs)
        rows = _item_rows(client, first.id) + _item_rows(client, second.id)
    assert first.state.is_completed() and second.state.is_completed(), (first.state, second.state)
    assert first.start_time < second.end_time and second.start_time < first.end_time, "the two runs did not overlap"
    for f in files:
        assert len(markers(marks, f.stem)) == 1, [m.name for m in markers(marks)]
        assert (f.parent / f"{f.stem}_results" / f"{f.stem}.png").is_file()
    # Both batches report every item finished; each item ran in one and was reused by the other.
    names = sorted(f.name for f in files)
    assert sorted(r["item"] for r in rows if not r["resumed"]) == names
    assert sorted(r["item"] for r in rows if r["resumed"]) == names
    assert {r["status"] for r in rows} == {"success"}


def test_salvo_deploy_changes_or_turns_off_the_schedule_without_code(served: Served) -> None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "deploy",
            "--cron",
            "30 3 * * 1-5",
            "--timezone",
            "Europe/Paris",
            "--no-schedule",
        ],
        env=served.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Deployed 7 deployment(s) to work pool 'salvo-process'" in proc.stdout
    with _client(served) as client:
        nightly = [d for d in client.read_deployments() if d.schedules]
        assert sorted(d.name for d in nightly) == ["nightly", "nightly"]
        assert {(s.schedule.cron, s.schedule.timezone, s.active) for d in nightly for s in d.schedules} == {
            ("30 3 * * 1-5", "Europe/Paris", False)
        }
        scheduled = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id for d in nightly])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )
    assert [r for r in scheduled if r.auto_scheduled] == []  # a paused schedule keeps no upcoming run


def _post(served: Served, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"{served.api_url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_a_run_whose_heartbeats_stop_is_crashed_by_the_automation_salvo_deploy_made(
    served: Served, tmp_path: Path
) -> None:
    """On a server Salvo did not start (no guard), Prefect's own mechanism: heartbeats and the automation
    `salvo deploy` created. A flow process with heartbeats, killed with SIGKILL with no worker to see it."""
    import os
    import signal
    import socket

    from deployments.serve import CRASH_AUTOMATION, crash_after_s

    with _client(served) as client:
        (auto,) = client.read_automations_by_name(CRASH_AUTOMATION)
    assert auto.enabled and auto.actions[0].type == "change-flow-run-state"
    _series_files(tmp_path / "hb", 1)
    code = (
        f"from flows.netcdf_extract import netcdf_extract; netcdf_extract(directory={str(tmp_path / 'hb')!r}, "
        f"worker_command='sleep 600')"
    )
    grace_s = crash_after_s(served.env)  # the automation's, as `salvo serve` deployed it
    assert grace_s == 40
    env = {**served.env, "SALVO_LOCAL_SERVER": "0"}  # Salvo's defaults: a heartbeat every 30 s (Prefect's minimum)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tag = f"salvo-driver:{socket.gethostname()}:{proc.pid}"
    runs = lambda: _post(served, "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}})  # noqa: E731
    try:
        assert wait_until(lambda: [r for r in runs() if r["state"]["type"] == "RUNNING"], timeout=240, interval=0.5)
        (run,) = runs()
        beats = {
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run['id']}"]},
            },
            "limit": 5,
        }
        assert wait_until(lambda: _post(served, "/events/filter", beats)["events"], timeout=120, interval=1)
        os.killpg(proc.pid, signal.SIGKILL)  # the flow's process and the item: no worker, no guard to tell
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    state = lambda: _post(served, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})[0]["state"]  # noqa: E731
    assert wait_until(lambda: state()["type"] == "CRASHED", timeout=grace_s + 90, interval=2), state()
    assert "no heartbeat for 40 s" in state()["message"]


def test_stopping_serve_leaves_no_process(served: Served) -> None:
    pids = served.remember_processes()
    assert len(pids) >= 3  # serve, the server, the worker (and their children)
    t0 = time.monotonic()
    code, left = served.stop()
    assert code == 0, "\n".join(served.lines)
    assert left == [], f"still alive after {time.monotonic() - t0:.0f} s: {left}"
    assert wait_until(lambda: any(line == "Stopped the worker and the server." for line in served.lines), timeout=10)
