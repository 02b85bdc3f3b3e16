"""The assembly ledger on a local folder and on S3: distinct IDs, no lost rows, honest statuses."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from salvo.assembly.ids import AssemblyId, data_file_name, experiment_folder, make_assembly_id, parse_assembly_id
from salvo.assembly.ledger import (
    LEDGER_CSV,
    claim_assembly_id,
    describe_status,
    find_assembly,
    latest_events,
    publish_ledger,
    read_ledger,
    record_event,
)
from salvo.errors import UsageError
from salvo.storage import open_storage
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exp(storage_location):
    base = open_storage(storage_location.url, endpoint_url=storage_location.endpoint_url)
    return base.child(experiment_folder("01", "v1", "batch-test"))


def _csv_rows(exp) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(exp.read_bytes(LEDGER_CSV).decode())))


class TestLedger:
    def test_ids_count_runs_of_the_experiment(self, exp):
        first = claim_assembly_id(exp)
        second = claim_assembly_id(exp)
        assert (first.run_number, second.run_number) == (1, 2)
        assert parse_assembly_id(str(second)) == second

    def test_completed_only_after_started(self, exp):
        aid = str(claim_assembly_id(exp))
        record_event(exp, aid, "started", result_name="r", config_hash="abc")
        assert [r.status for r in read_ledger(exp)] == ["started"]
        record_event(
            exp, aid, "completed", result_name="r", n_rows=7, config_hash="abc", result_file=data_file_name("r", aid)
        )
        rows = publish_ledger(exp)
        assert [(r.assembly_id, r.status, r.n_rows) for r in rows] == [(aid, "completed", 7)]
        on_disk = _csv_rows(exp)
        assert [(r["assembly_id"], r["status"], r["n_rows"], r["result_file"]) for r in on_disk] == [
            (aid, "completed", "7", f"r_{aid}.parquet")
        ]

    def test_completed_wins_over_a_later_event(self, exp):
        aid = str(claim_assembly_id(exp))
        record_event(exp, aid, "started")
        record_event(exp, aid, "completed", n_rows=1)
        record_event(exp, aid, "failed", message="a late duplicate")
        assert find_assembly(exp, aid).status == "completed"

    def test_failed_is_recorded_with_its_message(self, exp):
        aid = str(claim_assembly_id(exp))
        record_event(exp, aid, "started")
        record_event(exp, aid, "failed", message="2 of 5 chunks failed")
        row = find_assembly(exp, aid)
        assert (row.status, row.message) == ("failed", "2 of 5 chunks failed")
        assert describe_status(row) == "failed"

    def test_unknown_id_is_not_found(self, exp):
        assert describe_status(find_assembly(exp, "20250101_000000_run001")) == "not_found"

    def test_csv_is_a_cache_the_events_override(self, exp):
        aid = str(claim_assembly_id(exp))
        record_event(exp, aid, "started")
        publish_ledger(exp)
        record_event(exp, aid, "completed", n_rows=3)  # the CSV is now stale
        assert read_ledger(exp)[0].status == "completed"

    def test_seed_era_rows_without_events_are_kept(self, exp):
        exp.write_bytes(
            LEDGER_CSV, b"assembly_id,timestamp,status\n20240101_120000_run001,2024-01-01 12:00:00,completed\n"
        )
        aid = str(claim_assembly_id(exp))
        record_event(exp, aid, "started")
        rows = publish_ledger(exp)
        assert [(r.assembly_id, r.status) for r in rows] == [("20240101_120000_run001", "completed"), (aid, "started")]

    def test_two_processes_at_the_same_moment(self, exp, storage_location, tmp_path):
        go = tmp_path / "go"
        cmd = [sys.executable, "-m", "tests.assembly.helpers", "claim", exp.url, storage_location.endpoint_url or ""]
        procs = [subprocess.Popen([*cmd, str(go)], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        ready = lambda: len(list(tmp_path.glob("go.ready.*"))) == 2  # noqa: E731
        assert wait_until(ready, timeout=120)
        go.touch()  # both are already polling for this file: they claim at the same moment
        outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        ids = sorted(o["assembly_id"] for o in outs)
        assert len(set(ids)) == 2
        assert sorted(parse_assembly_id(i).run_number for i in ids) == [1, 2]
        assert sorted(r.assembly_id for r in read_ledger(exp)) == ids
        assert sorted(r["assembly_id"] for r in _csv_rows(exp)) == ids
        assert {r["status"] for r in _csv_rows(exp)} == {"completed"}

    def test_killed_run_stays_started_and_shows_interrupted(self, exp, storage_location):
        script = textwrap.dedent(f"""
            import sys, time
            from salvo.storage import open_storage
            from salvo.assembly.ledger import claim_assembly_id, record_event
            exp = open_storage({exp.url!r}, endpoint_url={storage_location.endpoint_url!r})
            aid = str(claim_assembly_id(exp))
            record_event(exp, aid, "started")
            print(aid, flush=True)
            time.sleep(600)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        aid = proc.stdout.readline().strip()
        row = find_assembly(exp, aid)
        assert describe_status(row) == "started"  # alive: running, not interrupted
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        row = find_assembly(exp, aid)
        assert row.status == "started"
        assert describe_status(row).startswith("started (interrupted")


def test_make_and_parse_assembly_id():
    from datetime import datetime, timezone

    aid = make_assembly_id(7, now=datetime(2025, 12, 16, 14, 22, 30, tzinfo=timezone.utc))
    assert str(aid) == "20251216_142230_run007"
    assert parse_assembly_id("20251216_142230_run007") == aid
    assert str(AssemblyId("20251216_142230", 1234)) == "20251216_142230_run1234"


@pytest.mark.parametrize("bad", ["", "2025_1_run1", "20251316_142230_run001", "x_y_runabc"])
def test_bad_assembly_ids_are_usage_errors(bad):
    with pytest.raises(UsageError, match="assembly id"):
        parse_assembly_id(bad)


def test_experiment_folder_follows_the_seed():
    assert experiment_folder("01", "v1", "batch-parameter-distortion") == "01_v1_batch-parameter-distortion"
    with pytest.raises(UsageError, match="title"):
        experiment_folder("01", "v1", "../etc")


def test_latest_events_prefers_completed_then_time():
    names = [
        "20250101_000000_run001.started.20250101T000000000000.a.json",
        "20250101_000000_run001.completed.20250101T000100000000.b.json",
        "20250101_000000_run001.failed.20250101T000200000000.c.json",
        "20250101_000000_run002.started.20250101T000000000000.d.json",
        "20250101_000000_run002.failed.20250101T000300000000.e.json",
        "not-an-event.txt",
    ]
    assert latest_events(names) == {"20250101_000000_run001": names[1], "20250101_000000_run002": names[4]}


class TestHeartbeat:
    def test_run_on_another_host_is_interrupted_once_silent(self, exp):
        from datetime import datetime, timedelta, timezone

        from salvo.assembly.ledger import HEARTBEATS, STALE_S, beat

        then = datetime.now(timezone.utc) - timedelta(seconds=3 * STALE_S)
        aid = str(make_assembly_id(1, now=then))  # claimed on another host, long ago
        record_event(exp, aid, "started", host="node-elsewhere", pid=4242, updated=then.isoformat())
        assert find_assembly(exp, aid).interrupted  # silent for longer than STALE_S
        beat(exp, aid)  # it is alive after all
        assert exp.list(HEARTBEATS) == [f"{aid}.json"]
        assert not find_assembly(exp, aid).interrupted
        assert not read_ledger(exp)[0].interrupted

    def test_heartbeat_thread_beats_until_stopped(self, exp):
        import json

        from salvo.assembly.ledger import HEARTBEATS, Heartbeat

        aid = str(claim_assembly_id(exp))
        with Heartbeat(exp, aid, interval=0.05):
            first = json.loads(exp.read_bytes(f"{HEARTBEATS}/{aid}.json"))["at"] if _wait_beat(exp, aid) else ""
            assert _wait_beat(exp, aid, newer_than=first)
        assert first


def _wait_beat(exp, aid: str, *, newer_than: str = "") -> bool:
    """Poll until the heartbeat object exists (and is newer than ``newer_than``)."""
    import json
    import time

    from salvo.assembly.ledger import HEARTBEATS

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if json.loads(exp.read_bytes(f"{HEARTBEATS}/{aid}.json"))["at"] > newer_than:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return False
