"""Every pipeline's run report as headless Chromium reads it, its trace and its history, from real runs.

Each pipeline runs for real (the `salvo` command in this process, or its flow as the command runs it),
with one item that fails its first attempt and succeeds on the retry. The page is read back through
Chromium's DOM: every link leads to an existing file (from the top-level report and from the run's own
copy in ``runs/<run name>/``), the run header and the trace table are there, and the retried item has a
timeline bar per attempt. ``trace.tsv`` is read with pandas. With ``SALVO_DOCS_SCREENSHOTS=docs/img``
each report is also saved as ``report_<pipeline>.png`` (how docs/img's screenshots are made).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from cli.common import run_flow
from cli.main import main as salvo_main
from salvo.options import RunOptions
from salvo.report import TRACE_COLUMNS
from salvo.subjects.samples import make_manifest_study
from tests.extract.scripts import write_script
from tests.jobs.conftest import sirene_small  # noqa: F401 - the jobs' session fixture
from tests.report.browser import check_report, small_screenshot
from tests.subjects.support import fake_command, write_plan

PY = shlex.quote(sys.executable)
FLAKY = shlex.quote(str(Path(__file__).with_name("flaky_cmd.py")))


def _salvo(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = salvo_main(list(args))
    return code, out.getvalue()


def _runs(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "runs").iterdir() if p.is_dir())


def _check_trace(folder: Path, retried: str) -> pd.DataFrame:
    """trace.tsv: one row per attempt, as the JSON summary's items say, the retried item's two attempts first failed."""
    trace = pd.read_csv(folder / "trace.tsv", sep="\t")
    doc = json.loads((folder / "batch_summary.json").read_text())
    assert list(trace.columns) == list(TRACE_COLUMNS)
    assert len(trace) == sum(max(1, len(i["attempts"])) if not i["cached"] else 1 for i in doc["items"])
    rows = trace[trace["item"] == retried]
    assert rows["attempt"].tolist() == [1, 2] and rows["status"].tolist() == ["error", "success"]
    (item,) = [i for i in doc["items"] if i["item_id"] == retried]
    assert rows["duration_s"].tolist() == pytest.approx([a["duration_s"] for a in item["attempts"]])
    assert rows["cpu_s"].tolist() == pytest.approx([a["cpu_s"] for a in item["attempts"]])
    assert rows["command"].tolist() == [a["command"] for a in item["attempts"]]
    return trace


def _check_all(folder: Path, retried: str | None, pipeline: str, name: str = "run_report.html") -> None:
    page = folder / name
    check_report(page, retried=retried)
    (own,) = _runs(folder)[-1:]
    check_report(own / "run_report.html", retried=retried)  # the run's own copy: its links work from there too
    assert (own / "trace.tsv").read_text() == (folder / "trace.tsv").read_text()
    shots = os.environ.get("SALVO_DOCS_SCREENSHOTS")
    if shots:
        small_screenshot(page, Path(shots) / f"report_{pipeline}.png")


def _header(folder: Path) -> dict:
    return json.loads((folder / "batch_summary.json").read_text())["run"]


def test_extract_report_trace_and_history_of_two_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("ok_1.nc", "ok_2.nc", "ok_3.nc"):
        (data / name).write_bytes(name.encode())
    script = write_script(tmp_path)
    command = (
        f"{PY} {FLAKY} {tmp_path / 'm'} {{input}} ok_2.nc {PY} {script} {{input}} {{output_dir}} {tmp_path / 'calls'}"
    )
    code, out = _salvo("extract", "--directory", str(data), "--worker-command", command, "--retries", "1")
    assert code == 0, out
    _check_trace(data, "ok_2.nc")
    _check_all(data, "ok_2.nc", "extract")
    head = _header(data)
    assert head["command"].startswith("salvo extract --directory") and head["exit_status"] == 0
    assert head["prefect_version"] and head["user"] and head["host"] and head["started"] <= head["ended"]
    assert head["ui_url"].startswith("http") and head["run_id"] in head["ui_url"]
    page = (data / "run_report.html").read_text()
    assert head["ui_url"] in page and "salvo extract --directory" in page
    # The log column is filled: each file's worker output.
    assert (data / ".salvo" / "logs" / "ok_1.nc.log").is_file() and 'href=".salvo/logs/ok_1.nc.log"' in page

    # A second run of the same folder (every file finished: answered from the records) keeps both reports.
    code, out = _salvo("extract", "--directory", str(data), "--worker-command", command)
    assert code == 0, out
    runs = _runs(data)
    assert len(runs) == 2 and all((r / "run_report.html").is_file() and (r / "trace.tsv").is_file() for r in runs)
    second = pd.read_csv(data / "trace.tsv", sep="\t")
    assert second["status"].tolist() == ["resumed"] * 3 and second["attempt"].tolist() == [0] * 3
    code, out = _salvo("history", str(data), "--json")
    assert code == 0
    listed = json.loads(out)["runs"]
    assert len(listed) == 2 and listed[0]["ended"] >= listed[1]["ended"]
    assert [r["counts"] for r in listed] == [{"success": 3}, {"success": 3}] and listed[1]["ui_url"] == head["ui_url"]
    assert {Path(r["report"]).parent for r in listed} == set(runs)
    code, out = _salvo("history", str(data))
    assert code == 0 and len([line for line in out.splitlines() if "netcdf-extract" in line]) == 2
    # The latest report lists the earlier run and links its kept report.
    check_report(data / "run_report.html", ran=False)
    assert f'href="runs/{listed[1]["run_name"]}/run_report.html"' in (data / "run_report.html").read_text()


def test_jobs_report(sirene_small: Path, tmp_path: Path) -> None:  # noqa: F811
    m = tmp_path / "m"
    m.mkdir()
    (m / "mode.json").write_text("{}")
    worker = shlex.quote(str(Path(__file__).parents[1] / "jobs" / "cmd_worker.py"))
    command = (
        f"{PY} {FLAKY} {m} {{naf_code}} 6920Z {PY} {worker} {m} {{naf_code}} {{job_file}} {{input}} {{output_dir}}"
    )
    out_dir = tmp_path / "out"
    code, out = _salvo(
        "jobs",
        "batch",
        "--naf",
        "6920Z",
        "--naf",
        "43",
        "--input",
        str(sirene_small),
        "--output-dir",
        str(out_dir),
        "--jobs-dir",
        str(tmp_path / "jobs"),
        "--retries",
        "1",
        "--job-command",
        command,
    )
    assert code == 0, out
    _check_trace(out_dir, "6920Z")
    _check_all(out_dir, "6920Z", "jobs")
    assert _header(out_dir)["memory_limit_mb"] == 512
    assert "/ 512 MiB (" in (out_dir / "run_report.html").read_text()  # memory used against --max-ram-mb


def test_subjects_one_page_with_gallery_logs_trace(tmp_path: Path, plan_dir: Path) -> None:
    manifest = make_manifest_study(tmp_path / "study", subjects=3, shape=(4, 4, 3))
    plan = write_plan(plan_dir, {})
    command = f"{PY} {FLAKY} {tmp_path / 'm'} {{id}} sub-002 " + fake_command(plan)
    out = tmp_path / "out"
    code, text = _salvo(
        "subjects", "--manifest", str(manifest), "--out", str(out), "--pipeline-command", command, "--retries", "1"
    )
    assert code == 0, text
    _check_trace(out, "sub-002")
    _check_all(out, "sub-002", "subjects")
    page = (out / "run_report.html").read_text()
    assert (out / "batch_report.html").read_text() == page  # the seed's name for the same page
    for part in ("<h2>Subjects</h2>", "<h2>QC images</h2>", 'id="subjects"', 'href="sub-001/logs/sub-001.log"'):
        assert part in page, part


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    return tmp_path / "plan"


def test_assembly_report_links_the_final_parquet(tmp_path: Path) -> None:
    from flows.assembly import assembly_run

    store = tmp_path / "store"
    doc = run_flow(
        assembly_run,
        experiment="tests.report.workers:flaky_generator",
        storage=str(store),
        samples=4,
        chunk_size=2,
        seed=7,
        config={"marker": str(tmp_path / "chunk0.failed")},
        run=RunOptions(retries=1, retry_delays_s=(0.0,)),
    )
    info = doc["assembly"]
    assert info["status"] == "completed"
    folder = Path(doc["reports"]["html"]).parent
    assert folder == store / info["folder"] / "reports" / info["assembly_id"]
    retried = f"{info['assembly_id']}/samples_000000-000001"
    _check_trace(folder, retried)
    _check_all(folder, retried, "assembly")
    page = (folder / "run_report.html").read_text()
    data = Path(info["data_file"])
    assert data.is_file() and f'href="../../{data.name}"' in page  # the final Parquet, from where the report lies
    assert "chunks/" not in page.split("<h2>Every item</h2>")[1].split("</table>")[0]  # no link to a dropped chunk
    assert f"<title>Assembly {info['assembly_id']}: tests.report.workers:flaky_generator, seed 7</title>" in page


def test_gridded_report_and_trace(prefect_api, tmp_path: Path) -> None:
    from tests.gridded.test_html_report import _recover

    code, out, doc = _recover(tmp_path, "--max-rounds", "3", seed=4, fail_fraction=0.3, fail_runs=1)
    assert code == 0, out
    work = tmp_path / "output.recovery"
    trace = pd.read_csv(work / "trace.tsv", sep="\t")
    assert trace["item"].tolist()[:2] == ["round-0-model", "round-1-model"]
    check_report(work / "run_report.html")
    (own,) = _runs(work)
    check_report(own / "run_report.html")
    assert _header(work)["pipeline"] == "salvage-merge"
    shots = os.environ.get("SALVO_DOCS_SCREENSHOTS")
    if shots:
        small_screenshot(work / "run_report.html", Path(shots) / "report_gridded.png")
