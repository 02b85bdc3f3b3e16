"""The subject-batch flow end to end: real child processes, timeouts, crashes, resume by config hash."""

import csv
import json
from html.parser import HTMLParser

import pytest

from flows.batch import BatchFailed
from flows.subject_batch import subject_batch
from salvo.options import RunOptions
from salvo.subjects.samples import make_bids_dataset, make_manifest_study
from salvo.subjects.unit import WORK_DIR, read_done
from tests.helpers import alive, wait_until
from tests.subjects.support import fake_command, write_plan


class _Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.subjects = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-subject" in a:
            self.subjects.append(a["data-subject"])


def _by_id(doc):
    return {item["item_id"]: item for item in doc["items"]}


def test_crash_hang_and_failure_do_not_stop_the_others(tmp_path, plan_dir):
    manifest = make_manifest_study(tmp_path / "study", subjects=5, shape=(4, 4, 3))
    plan = write_plan(plan_dir, {"sub-002": "fail", "sub-003": "segv", "sub-004": "hang"})
    out = tmp_path / "out"
    state = subject_batch(
        out=str(out),
        manifest=str(manifest),
        pipeline_command=fake_command(plan),
        run=RunOptions(timeout_s=3.0, workers=2, retries=0),
        return_state=True,
    )
    assert state.is_failed()
    err = state.result(raise_on_failure=False)
    assert isinstance(err, BatchFailed)
    items = _by_id(err.summary)
    assert {k: v["status"] for k, v in items.items()} == {
        "sub-001": "success",
        "sub-002": "error",
        "sub-003": "crashed",
        "sub-004": "timeout",
        "sub-005": "success",
    }
    assert items["sub-002"]["reason"] == "exit code 3: sub-002: tract seeding failed"
    assert items["sub-002"]["exit_code"] == 3  # the command's own code, not squashed to 1
    assert items["sub-003"]["reason"] == "killed by SIGSEGV"
    # The hung pipeline and the grandchild it started are both gone.
    pids = [int(p) for p in (plan.parent / "markers" / "sub-004.pids").read_text().split()]
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout=10)
    for sid in ("sub-001", "sub-005"):
        assert read_done(out / sid)["status"] == "success" and (out / sid / "result.txt").exists()
    for sid in ("sub-002", "sub-003", "sub-004"):
        folder = out / sid
        assert not (folder / WORK_DIR).exists() and read_done(folder) is None
        kept = sorted(p.name for p in folder.iterdir())
        assert len(kept) == 2 and kept[0].startswith("_failed-") and (folder / kept[0] / "started.txt").exists()
        assert kept[1] == "logs" and (folder / "logs" / f"{sid}.log").stat().st_size > 0  # the seed's sub-XXX/logs/
    assert "sub-002: tract seeding failed" in (out / "sub-002" / "logs" / "sub-002.log").read_text()
    assert "timed out or cancelled" in (out / "sub-004" / "logs" / "sub-004.log").read_text()
    # The timed-out subject shows the pipeline's last lines, not a traceback of Salvo's own.
    tail = items["sub-004"]["stderr_tail"]
    assert "sub-004: step 2 of 3: tracking streamlines" in tail, tail
    assert "_Terminated" not in tail and "Traceback" not in tail, tail
    assert not (out / "logs").exists()
    with open(out / "batch_metrics.csv") as fh:
        rows = {r["subject"]: r for r in csv.DictReader(fh)}
    assert rows["sub-004"]["reason"] == "exceeded 3 s limit"
    assert rows["sub-001"]["fa_mean"] != "" and rows["sub-003"]["fa_mean"] == ""
    parser = _Rows()
    parser.feed((out / "batch_report.html").read_text())
    assert parser.subjects == [f"sub-00{i}" for i in range(1, 6)]
    # The Prefect UI shows the same lines, summary and table as artifacts of this flow run.
    artifacts = _artifacts(state.state_details.flow_run_id)
    report = artifacts["subject-batch-report"].data
    assert "3. sub-003: Failed (CRASHED) - killed by SIGSEGV" in report
    assert "Failed:     3 (sub-002, sub-003, sub-004)" in report and str(out / "batch_report.html") in report
    # Every subject is in the items table (its order is the spine's: failures first, issue 14).
    assert sorted(row["item"] for row in json.loads(artifacts["subject-batch-items"].data)) == [
        f"sub-00{i}" for i in range(1, 6)
    ]


def _artifacts(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_config_hash_change_and_force_rerun_bids_units(tmp_path):
    bids = make_bids_dataset(tmp_path / "ds114", subjects=2, shape=(8, 8, 6))
    out = tmp_path / "out"
    common = dict(out=str(out), bids_dir=str(bids), include=["sub-01*"])
    first = subject_batch(**common)
    assert [i["item_id"] for i in first["items"]] == ["sub-01_ses-retest", "sub-01_ses-test"]
    assert first["summary"]["counts"] == {"success": 2}
    hash_a = first["summary"]["config_hash"]
    started = read_done(out / "sub-01_ses-test")["started"]

    again = subject_batch(**common)
    assert again["summary"]["counts"] == {"skipped": 2}
    assert {i["reason"] for i in again["items"]} == {f"already done (config hash {hash_a}, same inputs)"}
    with open(out / "batch_metrics.csv") as fh:
        assert all(r["n_volumes"] == "18" for r in csv.DictReader(fh))  # metrics come from _done.json
    # The resumed run's report: no skip time shown as a duration, the QC images still in its gallery.
    page = (out / "batch_report.html").read_text()
    assert 'class="durations"' not in page and page.count("when it ran)") == 2
    assert page.count('<img src="data:image/png;base64,') == 2

    changed = subject_batch(**common, options={"preprocessing": True, "denoise_method": "mppca"})
    hash_b = changed["summary"]["config_hash"]
    assert hash_b != hash_a and changed["summary"]["counts"] == {"success": 2}
    assert read_done(out / "sub-01_ses-test")["config_hash"] == hash_b
    assert read_done(out / "sub-01_ses-test")["options"] == {"preprocessing": True, "denoise_method": "mppca"}

    forced = subject_batch(
        **common, options={"preprocessing": True, "denoise_method": "mppca"}, run=RunOptions(force=True)
    )
    assert forced["summary"]["counts"] == {"success": 2}
    assert read_done(out / "sub-01_ses-test")["started"] != started
    assert not (out / "sub-02_ses-test").exists()


def test_bad_manifest_fails_the_flow_before_running(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('{"subjects": [{"id": "../x"}]}')
    with pytest.raises(Exception, match="not a safe folder name"):
        subject_batch(out=str(tmp_path / "out"), manifest=str(bad))
    assert not (tmp_path / "out").exists()


def test_either_source_with_empty_strings_as_absent_and_bad_parameters_named(tmp_path):
    manifest = make_manifest_study(tmp_path / "study", subjects=1, shape=(4, 4, 3))
    bids = make_bids_dataset(tmp_path / "bids", subjects=1, sessions=(), shape=(4, 4, 3))
    # What a deployment sends: its shipped "" defaults beside the one source this run names.
    a = subject_batch(
        out=str(tmp_path / "a"), manifest=str(manifest), bids_dir="", pipeline_command="", run={"dask_address": ""}
    )
    assert a["summary"]["counts"] == {"success": 1}
    b = subject_batch(out=str(tmp_path / "b"), manifest="", bids_dir=str(bids))
    assert [i["item_id"] for i in b["items"]] == ["sub-01"]
    raw = tmp_path / "study" / "raw"
    cases = [
        (dict(manifest=str(manifest), bids_dir=str(bids)), r"manifest .*bids_dir.*both were given"),
        (dict(manifest="", bids_dir=""), r"manifest .*bids_dir.*neither was given"),
        (dict(manifest=str(manifest), run={"timeout_s": -1}), "timeout_s"),
        (dict(manifest=str(manifest), run={"workers": 0}), "workers"),
        (dict(manifest=str(manifest), run={"retries": -2}), "retries"),
        (dict(manifest=str(manifest), out=""), "out is required"),
        (dict(manifest=str(manifest), out=str(raw)), "contains the input"),
    ]
    before = sorted(p.read_bytes() for p in raw.rglob("*") if p.is_file())
    for params, message in cases:
        params.setdefault("out", str(tmp_path / "c"))
        with pytest.raises(Exception, match=message):
            subject_batch(**params)
    assert not (tmp_path / "c").exists()
    assert sorted(p.read_bytes() for p in raw.rglob("*") if p.is_file()) == before
