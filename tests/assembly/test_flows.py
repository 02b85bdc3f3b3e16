"""The assembly flows end to end, on a local folder and on S3 (moto), through Prefect."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from blocks import save_storage_block
from cli.main import main as salvo_main
from flows.assembly import assembly_reassemble, assembly_run
from salvo_compat.batch_framework import create_batch_executor
from salvo.assembly.ledger import claim_assembly_id, describe_status, find_assembly, read_ledger, record_event
from salvo.options import RunOptions
from salvo.storage import open_storage
from tests.fixtures_s3 import start_moto_server
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests.assembly.helpers:tiny_generator"
FOLDER = "01_v1_batch-tiny-generator"


def storage_ref(loc) -> str:
    """What a flow takes: a path, or (for S3 with its endpoint) a saved block's name."""
    if loc.kind == "local":
        return loc.url
    name = f"asm-{uuid.uuid4().hex[:8]}"
    save_storage_block(name, loc.url, endpoint_url=loc.endpoint_url)
    return name


def exp_target(loc, folder: str = FOLDER):
    return open_storage(loc.url, endpoint_url=loc.endpoint_url).child(folder)


class TestAssemblyFlows:
    def test_two_runs_then_reassemble(self, storage_location):
        ref = storage_ref(storage_location)
        first = assembly_run(experiment=TINY, storage=ref, samples=5, chunk_size=3)
        second = assembly_run(experiment=TINY, storage=ref, samples=3, chunk_size=3)
        assert first["assembly"]["status"] == second["assembly"]["status"] == "completed"
        assert (first["assembly"]["rows"], second["assembly"]["rows"]) == (5, 3)
        exp = exp_target(storage_location)
        ledger = list(csv.DictReader(io.StringIO(exp.read_bytes("assembly_list.csv").decode())))
        ids = [first["assembly"]["assembly_id"], second["assembly"]["assembly_id"]]
        assert [(r["assembly_id"], r["status"]) for r in ledger] == [(i, "completed") for i in ids]
        assert not exp.list("chunks")  # chunks are merged into the data file, then dropped
        doc = assembly_reassemble("tiny_generator_results", storage=ref)
        assert doc["included"] == ids and doc["rows"] == 8
        with exp.open_read("tiny_generator_results_reassembled.parquet") as fh:
            got = pq.read_table(fh).to_pandas()
        assert list(got["assembly_id"]) == [ids[0]] * 5 + [ids[1]] * 3
        assert list(got["sample"]) == [0, 1, 2, 3, 4, 0, 1, 2]

    def test_rerun_of_the_same_assembly_redoes_only_unfinished_chunks(self, storage_location, tmp_path):
        ref = storage_ref(storage_location)
        calls, flag = tmp_path / "calls.txt", tmp_path / "fail-now"
        flag.touch()
        cfg = {"calls": str(calls), "fail_flag": str(flag), "fail_sample": 2}
        gen = "tests.assembly.helpers:counting_generator"
        state = assembly_run(
            experiment=gen,
            storage=ref,
            samples=4,
            chunk_size=2,
            run=RunOptions(retries=0),
            config=cfg,
            return_state=True,
        )
        assert state.is_failed()
        aid = state.result(raise_on_failure=False).doc["assembly"]["assembly_id"]
        exp = exp_target(storage_location, "01_v1_batch-counting-generator")
        assert find_assembly(exp, aid).status == "failed"
        flag.unlink()
        doc = assembly_run(
            experiment=gen, storage=ref, samples=4, chunk_size=2, run=RunOptions(retries=0), config=cfg, assembly_id=aid
        )
        assert doc["assembly"] == {**doc["assembly"], "assembly_id": aid, "status": "completed", "rows": 4}
        assert doc["summary"]["resumed"] == 1
        assert sorted(calls.read_text().split()) == ["0", "2", "2"]  # only chunk 2-3 ran twice


def test_killed_run_stays_started_and_is_left_out(tmp_path, child_env):
    store = tmp_path / "store"
    gate = tmp_path / "gate-never-opened"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"gate: {gate}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "assembly",
            "run",
            "tests.assembly.helpers:gated_generator",
            "--storage",
            str(store),
            "--config",
            str(cfg),
            "--samples",
            "2",
            "--retries",
            "0",
        ],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    exp = open_storage(str(store)).child("01_v1_batch-gated-generator")
    try:
        assert wait_until(lambda: bool(exp.list("ledger/events")), timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    [killed] = read_ledger(exp)
    assert killed.status == "started"
    assert describe_status(killed).startswith("started (interrupted")
    done = assembly_run(
        experiment="tests.assembly.helpers:gated_generator",
        storage=str(store),
        samples=2,
        config={"gate": str(tmp_path / "cfg.yaml")},
    )
    report = assembly_reassemble("gated_generator_results", storage=str(store))
    assert report["included"] == [done["assembly"]["assembly_id"]]
    assert report["excluded"] == {killed.assembly_id: "started (interrupted)"}


def test_s3_going_away_mid_run_fails_cleanly(s3_url, s3_endpoint, tmp_path, child_env):
    server, doomed = start_moto_server()  # a second endpoint onto the same in-process S3 state
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    save_storage_block(name, s3_url, endpoint_url=doomed)
    gate = tmp_path / "gate"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"gate: {gate}\n")
    env = {**child_env, "AWS_MAX_ATTEMPTS": "1"}  # fail fast once the endpoint is gone
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "assembly",
            "run",
            "tests.assembly.helpers:gated_generator",
            "--storage",
            name,
            "--config",
            str(cfg),
            "--samples",
            "2",
            "--retries",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    exp = open_storage(s3_url, endpoint_url=s3_endpoint).child("01_v1_batch-gated-generator")
    try:  # the run is working (its 'started' row is published) when S3 goes away
        assert wait_until(lambda: exp.exists("assembly_list.csv"), timeout=120)
    finally:
        server.stop()
    gate.touch()
    out, err = proc.communicate(timeout=240)
    assert proc.returncode != 0
    assert "salvo: error:" in err and s3_url in err
    [row] = read_ledger(exp)  # still readable through the endpoint that stayed up
    assert row.status == "started"  # never 'completed': its data file was never written
    assert not [n for n in exp.list("") if n.endswith(".parquet")]
    ledger = list(csv.DictReader(io.StringIO(exp.read_bytes("assembly_list.csv").decode())))
    assert [(r["assembly_id"], r["status"]) for r in ledger] == [(row.assembly_id, "started")]


def test_seed_api_runs_unchanged(storage_location):
    ref = storage_ref(storage_location)
    backend = "local" if storage_location.kind == "local" else "s3"
    executor = create_batch_executor("batch-tiny", "01", "v1", storage_backend=backend, storage=ref)
    first = executor.run(TINY, samples=3, chunk_size=5)["assembly"]["assembly_id"]
    executor.run(TINY, samples=2, chunk_size=5)
    listing = executor.load_assembly_list()
    assert list(listing["status"]) == ["completed", "completed"]
    assert executor.get_assembly_status(first) == "completed"
    assert executor.get_assembly_status("20000101_000000_run001") == "not_found"
    combined = executor.sequential_reassembly("tiny_generator_results")
    assert isinstance(combined, pd.DataFrame) and len(combined) == 5
    assert list(combined["assembly_id"]).count(first) == 3


def test_cli_status_list_and_pickle_policy(tmp_path, capsys):
    store = tmp_path / "store"
    exp = open_storage(str(store)).child("01_v1_batch-old")
    exp.write_bytes(
        "assembly_list.csv", b"assembly_id,timestamp,status\n20240101_120000_run001,2024-01-01 12:00:00,completed\n"
    )
    exp.write_bytes("old_results_20240101_120000_run001.pkl", _pickled())
    args = ["assembly", "reassemble", "old_results", "--storage", str(store)]
    assert salvo_main(args) == 2
    err = capsys.readouterr().err
    assert "--allow-pickle" in err and len(err.strip().splitlines()) == 1
    assert salvo_main([*args, "--allow-pickle", "--output", str(tmp_path / "o.parquet")]) == 0
    assert len(pq.read_table(tmp_path / "o.parquet")) == 2
    capsys.readouterr()
    assert salvo_main(["assembly", "status", "20240101_120000_run001", "--storage", str(store)]) == 0
    assert capsys.readouterr().out.strip() == "completed"
    assert salvo_main(["assembly", "status", "20240101_120000_run009", "--storage", str(store)]) == 0
    assert capsys.readouterr().out.strip() == "not_found"
    assert salvo_main(["assembly", "list", "--storage", str(store)]) == 0
    assert "20240101_120000_run001" in capsys.readouterr().out
    assert salvo_main(["assembly", "status", "bad-id", "--storage", str(store)]) == 2
    assert (
        salvo_main(
            [
                "assembly",
                "run",
                "parameter-distortion",
                "--storage",
                str(store),
                "--config",
                str(tmp_path / "missing.yaml"),
            ]
        )
        == 2
    )


def test_cli_blocks_create_twice_then_run_on_it(tmp_path, s3_url, s3_endpoint, capsys):
    assert salvo_main(["blocks", "register"]) == 0
    assert salvo_main(["blocks", "register"]) == 0
    for _ in range(2):
        assert salvo_main(["blocks", "create", "s3", "cli-s3", s3_url, "--endpoint-url", s3_endpoint]) == 0
    assert salvo_main(["blocks", "create", "local", "cli-local", str(tmp_path / "x")]) == 0
    capsys.readouterr()
    assert salvo_main(["blocks", "show", "cli-s3"]) == 0
    shown = capsys.readouterr().out
    assert s3_url in shown and s3_endpoint in shown and "standard AWS chain" in shown
    exp = open_storage(s3_url, endpoint_url=s3_endpoint).child("01_v1_batch-x")
    record_event(exp, str(claim_assembly_id(exp)), "started")
    assert salvo_main(["assembly", "list", "--storage", "cli-s3"]) == 0  # the block reaches S3
    assert "01_v1_batch-x" in capsys.readouterr().out


def _pickled() -> bytes:
    import pickle

    return pickle.dumps(pd.DataFrame({"x": [1, 2]}))


def test_block_credentials_reach_workers_but_never_logs_or_artifacts(s3_url, s3_endpoint, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, LogFilter
    from prefect.logging.handlers import APILogHandler

    key, secret = "AKIAFLOWKEY000001", "flow-secret-value-987"
    name = f"creds-{uuid.uuid4().hex[:6]}"
    save_storage_block(name, s3_url, endpoint_url=s3_endpoint, aws_access_key_id=key, aws_secret_access_key=secret)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var)  # only the block's own credentials can reach S3 now
    state = assembly_run(experiment=TINY, storage=name, samples=2, return_state=True)
    assert state.is_completed(), state.message
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ  # the process environment is restored
    APILogHandler().flush()  # send queued log records to the API before reading them
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = FlowRunFilter(id={"any_": [run_id]})
        logs = client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [run_id]}))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(), flow_run_filter=runs)
        run = client.read_flow_run(run_id)
    seen = " ".join(
        [*(log.message for log in logs), *(str(a.data) for a in artifacts), str(run.parameters), str(state.result())]
    )
    assert artifacts and logs and "completed" in seen
    assert secret not in seen and key not in seen


def test_reassemble_runs_as_a_subflow(tmp_path):
    from prefect import flow, get_client
    from prefect.client.schemas.filters import FlowRunFilter

    from tests.assembly.test_reassemble import RESULT, add_assembly, frame

    exp = open_storage(str(tmp_path)).child("01_v1_batch-toy")
    ids = [add_assembly(exp, frame(3)), add_assembly(exp, frame(2))]

    @flow
    def nightly() -> dict:
        return assembly_reassemble(RESULT, title="batch-toy", storage=str(tmp_path))

    state = nightly(return_state=True)
    assert state.result()["included"] == ids and state.result()["rows"] == 5
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [state.state_details.flow_run_id]})
        )
    assert len(children) == 1 and children[0].state.is_completed()
