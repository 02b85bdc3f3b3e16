"""The job-batch flow through the `salvo` command: fail-fast, continue, timeout, JSON, resume, usage."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.common import run_flow
from cli.jobs import exit_code
from cli.main import main
from flows.job_batch import job_batch
from salvo.jobs.synth import write_synthetic_sirene
from salvo.options import RunOptions
from tests.helpers import alive, markers, salvo, wait_until

WORKER = Path(__file__).with_name("cmd_worker.py")


def _command(marker_dir: Path) -> str:
    return f"{shlex.quote(sys.executable)} {WORKER} {marker_dir} {{naf_code}} {{job_file}} {{input}} {{output_dir}}"


def _modes(marker_dir: Path, modes: dict[str, str]) -> None:
    marker_dir.mkdir(exist_ok=True)
    (marker_dir / "mode.json").write_text(json.dumps(modes))


def _flow_doc(tmp_path: Path, sirene: Path, *codes: str, run: RunOptions = RunOptions(retries=0), **params) -> dict:
    """Run the job-batch flow as the CLI does (a real flow run), without capturing Prefect's console."""
    return run_flow(
        job_batch,
        naf=list(codes),
        input=str(sirene),
        output_dir=str(tmp_path / "out"),
        jobs_dir=str(tmp_path / "jobs"),
        run=run,
        **params,
    )


def _base(tmp_path: Path, sirene: Path, *codes: str) -> list[str]:
    args = [
        "jobs",
        "batch",
        "--input",
        str(sirene),
        "--output-dir",
        str(tmp_path / "out"),
        "--jobs-dir",
        str(tmp_path / "jobs"),
        "--json",
    ]
    for c in codes:
        args += ["--naf", c]
    return args


def _status(doc: dict) -> dict[str, str]:
    return {e["code"]: e["status"] for e in doc["jobs"]}


def test_fail_fast_stops_at_the_first_failure(sirene_small: Path, tmp_path: Path, child_env: dict[str, str]) -> None:
    m = tmp_path / "m"
    _modes(m, {"4329A": "fail"})
    codes = ["6920Z", "4329A", "43", "01.11Z", "47.11B"]
    proc = salvo(*_base(tmp_path, sirene_small, *codes), "--job-command", _command(m), env=child_env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    status = _status(doc)
    assert status == {"6920Z": "success", "4329A": "error", "43": "not_run", "0111Z": "not_run", "4711B": "not_run"}
    failed = next(e for e in doc["jobs"] if e["code"] == "4329A")
    assert "exit code 3" in failed["error"] and "boom" in failed["error"]
    assert markers(m, "43") == [] and markers(m, "0111Z") == [] and markers(m, "4711B") == []
    assert next(e for e in doc["jobs"] if e["code"] == "0111Z")["error"].startswith("not started")


def test_continue_on_error_runs_every_job(sirene_small: Path, tmp_path: Path) -> None:
    m = tmp_path / "m"
    _modes(m, {"4329A": "fail"})
    doc = _flow_doc(
        tmp_path,
        sirene_small,
        "6920Z",
        "4329A",
        "43",
        job_command=_command(m),
        run=RunOptions(retries=0, fail_fast=False),
    )
    assert exit_code(doc, continue_on_error=True) == 1 and exit_code(doc, continue_on_error=False) == 1
    assert _status(doc) == {"6920Z": "success", "4329A": "error", "43": "success"}
    assert doc["summary"]["failed"] == 1
    assert (tmp_path / "out" / "naf_43" / "dataset.parquet").is_file()


def test_a_hanging_job_is_killed_at_the_timeout(sirene_small: Path, tmp_path: Path) -> None:
    m = tmp_path / "m"
    _modes(m, {"6920Z": "hang"})
    t0 = time.monotonic()
    # 15 s: long enough for the command to start its own child on a loaded 2-core machine (at 2 s it
    # sometimes had not, and the grandchild check below failed), short enough to be far below 600 s.
    doc = _flow_doc(tmp_path, sirene_small, "6920Z", job_command=_command(m), run=RunOptions(retries=0, timeout_s=15.0))
    assert exit_code(doc, continue_on_error=False) == 1 and _status(doc) == {"6920Z": "timeout"}
    # Killed at the timeout, not when the command's 600 s sleep ends (grace 3 s; generous slack for load).
    assert 15 <= doc["jobs"][0]["duration_s"] < 15 + 3 + 60
    assert wait_until(lambda: (m / "6920Z.grandchild").exists(), timeout=5), "the command never started its child"
    grandchild = int((m / "6920Z.grandchild").read_text())
    assert wait_until(lambda: not alive(grandchild), timeout=60), "the hung job's own child survived"
    assert time.monotonic() - t0 < 400


def test_json_is_valid_and_alone_on_stdout(sirene_small: Path, tmp_path: Path, child_env: dict[str, str]) -> None:
    proc = salvo(*_base(tmp_path, sirene_small, "6920Z", "05.10Z", "43.2"), "--profile", "standard", env=child_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)  # the whole stdout is one JSON document
    entries = {e["code"]: e for e in doc["jobs"]}
    assert set(entries) == {"6920Z", "0510Z", "432"}
    for e in entries.values():
        assert {"code", "status", "duration_s", "rows", "outputs", "error", "warnings"} <= set(e)
        assert e["status"] == "success" and e["error"] == ""
    assert entries["0510Z"]["rows"] == 0 and "matched no row" in entries["0510Z"]["warnings"][0]
    assert entries["432"]["rows"] > 0 and entries["432"]["warnings"] == []
    assert sorted(Path(p).name for p in entries["6920Z"]["outputs"]) == ["dataset.csv", "dataset.parquet", "logs"]


def test_a_killed_batch_resumes_without_redoing_finished_jobs(
    sirene_small: Path, tmp_path: Path, child_env: dict[str, str]
) -> None:
    m = tmp_path / "m"
    _modes(m, {"43": "hang"})
    args = _base(tmp_path, sirene_small, "6920Z", "4329A", "43", "01.11Z") + ["--job-command", _command(m)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: (m / "43.grandchild").exists(), timeout=180), "the batch never reached the third job"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole command line dies at once, like a lost terminal
        proc.communicate()
    grandchild = int((m / "43.grandchild").read_text())
    assert wait_until(lambda: not alive(grandchild), timeout=60), "the running job was orphaned"
    _modes(m, {})
    again = salvo(*args, env=child_env)
    assert again.returncode == 0, again.stderr[-2000:]
    doc = json.loads(again.stdout)
    assert {e["code"]: (e["status"], e["resumed"]) for e in doc["jobs"]} == {
        "6920Z": ("success", True),
        "4329A": ("success", True),
        "43": ("success", False),
        "0111Z": ("success", False),
    }
    assert len(markers(m, "6920Z")) == 1 and len(markers(m, "4329A")) == 1


def test_resume_follows_job_file_input_and_outputs(tmp_path: Path) -> None:
    sirene = write_synthetic_sirene(tmp_path / "in.parquet", rows=3_000, seed=5)
    codes = ("6920Z", "43")
    first = _flow_doc(tmp_path, sirene, *codes)
    assert first["summary"]["counts"] == {"success": 2}
    assert [i["metrics"]["source"] for i in first["items"]] == ["shared scan", "shared scan"]
    doc = _flow_doc(tmp_path, sirene, *codes)
    assert [e["resumed"] for e in doc["jobs"]] == [True, True]
    # Deleting one job's outputs redoes only that job.
    for p in (tmp_path / "out" / "naf_43").iterdir():
        if p.is_file():
            p.unlink()
    doc = _flow_doc(tmp_path, sirene, *codes)
    assert {e["code"]: e["resumed"] for e in doc["jobs"]} == {"6920Z": True, "43": False}
    # Another profile renders other job files: every job runs again.
    doc = _flow_doc(tmp_path, sirene, *codes, profile="deep")
    assert [e["resumed"] for e in doc["jobs"]] == [False, False]
    # New input content (same name): every job runs again, on the new rows.
    write_synthetic_sirene(sirene, rows=2_000, seed=6)
    doc = _flow_doc(tmp_path, sirene, *codes, profile="deep")
    assert [e["resumed"] for e in doc["jobs"]] == [False, False]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--naf", "69.2Z"], "malformed NAF code '69.2Z'"),
        (["--naf", "6920Z", "--job-command", "python b.py {job}"], "unknown placeholder {job}"),
        (["--naf", "6920Z", "--max-ram-mb", "64"], "--max-ram-mb 64 is too small"),
        (["--naf", "6920Z", "--template", "/nonexistent/t.yaml"], "cannot read job template"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    extra: list[str], message: str, sirene_small: Path, tmp_path: Path, capsys
) -> None:
    args = [
        "jobs",
        "batch",
        "--input",
        str(sirene_small),
        "--output-dir",
        str(tmp_path / "out"),
        "--jobs-dir",
        str(tmp_path / "jobs"),
        *extra,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "jobs").exists()


def test_missing_or_foreign_input_exits_2(tmp_path: Path, capsys) -> None:
    assert (
        main(["batch", "--naf", "43", "--input", str(tmp_path / "no.parquet"), "--output-dir", str(tmp_path / "o")])
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "t.parquet").write_text("siren;nic\n")
    assert (
        main(["batch", "--naf", "43", "--input", str(tmp_path / "t.parquet"), "--output-dir", str(tmp_path / "o")]) == 2
    )
    assert "not a Parquet file" in capsys.readouterr().err
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"siren": ["1"]}), tmp_path / "other.parquet")
    assert (
        main(["batch", "--naf", "43", "--input", str(tmp_path / "other.parquet"), "--output-dir", str(tmp_path / "o")])
        == 2
    )
    assert "'activitePrincipaleEtablissement' is missing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_dry_run_renders_and_validates_only(sirene_small: Path, tmp_path: Path, capsys) -> None:
    args = [
        "batch",
        "--naf",
        "6920Z",
        "--naf",
        "43",
        "--input",
        str(sirene_small),
        "--output-dir",
        str(tmp_path / "out"),
        "--jobs-dir",
        str(tmp_path / "jobs"),
        "--dry-run",
        "--json",
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [j["status"] for j in doc["jobs"]] == ["rendered", "rendered"]
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["naf_43.yaml", "naf_6920Z.yaml"]
    assert not (tmp_path / "out").exists()


def test_create_writes_job_files(tmp_path: Path, capsys) -> None:
    assert (
        main(["jobs", "create", str(tmp_path / "j"), "--naf", "6920Z", "--naf", "43.2", "--batch", "--profile", "deep"])
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "j").iterdir()) == ["naf_432.yaml", "naf_6920Z.yaml"]
    assert 'profile: "deep"' in (tmp_path / "j" / "naf_432.yaml").read_text()
    assert main(["jobs", "create", str(tmp_path / "one.yaml"), "--naf", "4329A"]) == 0
    assert 'naf_include: ["4329A"]' in (tmp_path / "one.yaml").read_text()
    assert main(["jobs", "create", str(tmp_path / "two.yaml"), "--naf", "4329A", "--naf", "43"]) == 2
