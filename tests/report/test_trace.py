"""trace.tsv and the per-attempt figures: every attempt of an item kept, read back by pandas as the JSON says.

Items run as real child processes through the batch body (``salvo.batchcore.run_one``); a flaky worker
fails its first attempt and succeeds on the retry, so its item has two attempts.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from salvo.batchcore import run_one
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.outcome import ItemResult, Status, signal_name
from salvo.report import TRACE_COLUMNS, attempt_rows, summarize, trace_text, write_reports

pytestmark = pytest.mark.pure

WORKERS = Path(__file__).with_name("workers.py")


class DictRecords:
    def __init__(self) -> None:
        self.data: dict[str, ItemResult] = {}

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        return threading.Lock()

    def read(self, key: str) -> ItemResult | None:
        return None

    def write(self, key: str, result: ItemResult) -> None:
        self.data[key] = result


def _run(items: list[Item], worker: Worker, tmp: Path, **run: object) -> list[ItemResult]:
    options = RunOptions(retries=1, retry_delays_s=(0.0,), timeout_s=60, **run)
    return [
        run_one(it, it.id, worker, records=DictRecords(), options=options, log_dir=str(tmp / "logs")) for it in items
    ]


def _flaky_items(tmp: Path) -> list[Item]:
    return [
        Item("flaky-a", params={"marker": str(tmp / "a.failed"), "out": str(tmp / "out" / "a.bin")}),
        Item("steady-b", params={"marker": str(tmp / "b.failed"), "out": str(tmp / "out" / "b.bin"), "size": 10}),
    ]


def test_a_retried_item_keeps_both_attempts_with_their_figures(tmp_path: Path) -> None:
    (tmp_path / "b.failed").write_text("already failed once\n")  # b succeeds at once
    a, b = _run(_flaky_items(tmp_path), Worker("python", "tests.report.workers:flaky"), tmp_path)
    assert a.status is Status.SUCCESS and a.attempt == 2
    assert [t["status"] for t in a.attempts] == ["error", "success"] and [t["attempt"] for t in a.attempts] == [1, 2]
    first, last = a.attempts
    assert first["exit"] == 1 and "first attempt fails on purpose" in first["reason"]
    assert last["exit"] == 0 and last["start"] >= first["end"]
    for t in a.attempts:
        assert t["cpu_s"] is not None and t["cpu_s"] >= 0 and t["peak_rss_mb"] > 0 and t["timeout_s"] == 60
        assert t["read_bytes"] is not None and t["write_bytes"] is not None
        assert t["command"].startswith("tests.report.workers:flaky(marker=")
    # The final attempt's figures are also the result's own.
    assert (a.cpu_s, a.read_bytes, a.write_bytes) == (last["cpu_s"], last["read_bytes"], last["write_bytes"])
    assert a.timeout_s == 60
    assert len(b.attempts) == 1 and b.attempts[0]["status"] == "success"
    # Kept through the JSON form, and records written by an older Salvo (no such fields) still load.
    again = ItemResult.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again.attempts == a.attempts and again.cpu_s == a.cpu_s
    new_fields = ("attempts", "cpu_s", "read_bytes", "write_bytes", "command", "timeout_s")
    old = {k: v for k, v in a.to_dict().items() if k not in new_fields}
    legacy = ItemResult.from_dict(old)
    assert legacy.attempts == [] and legacy.cpu_s is None and legacy.status is Status.SUCCESS


def test_cpu_time_is_the_items_own(tmp_path: Path) -> None:
    """A worker that burns CPU shows it; one that sleeps shows almost none (rusage of its own process)."""
    busy = Worker("command", f"{shlex.quote(sys.executable)} -c {shlex.quote('x=sum(i*i for i in range(3_000_000))')}")
    idle = Worker("command", f"{shlex.quote(sys.executable)} -c {shlex.quote('import time; time.sleep(1.0)')}")
    (b,) = _run([Item("busy")], busy, tmp_path)
    (i,) = _run([Item("idle")], idle, tmp_path)
    assert b.status is Status.SUCCESS and i.status is Status.SUCCESS
    assert b.cpu_s > 0.1, b.cpu_s
    assert i.cpu_s < 0.5 * i.duration_s, (i.cpu_s, i.duration_s)
    assert i.attempts[0]["cpu_pct"] == round(100 * i.cpu_s / i.duration_s, 1)


def test_trace_tsv_has_one_row_per_attempt_matching_the_json_summary(tmp_path: Path) -> None:
    (tmp_path / "b.failed").write_text("already failed once\n")
    results = _run(_flaky_items(tmp_path), Worker("python", "tests.report.workers:flaky"), tmp_path)
    results.append(ItemResult("resumed-c", Status.SUCCESS, cached=True, duration_s=3.0))
    results.append(ItemResult("never-d", Status.NOT_RUN, reason="not started"))
    logs = {r.item_id: str(tmp_path / "logs" / f"{r.item_id}.log") for r in results}
    summary = summarize(results, pipeline="test")
    paths = write_reports(results, summary, folder=tmp_path / "report", title="trace", logs=logs)
    trace = pd.read_csv(paths["trace"], sep="\t")
    assert list(trace.columns) == list(TRACE_COLUMNS)
    assert len(trace) == 2 + 1 + 1 + 1  # flaky-a: two attempts; steady-b one; resumed-c and never-d one row each
    doc = json.loads(Path(paths["json"]).read_text())
    for item in doc["items"]:
        rows = trace[trace["item"] == item["item_id"]]
        if item["cached"] or item["status"] == "not_run":
            assert rows["attempt"].tolist() == [0]
            assert rows["status"].tolist() == ["resumed" if item["cached"] else "not_run"]
            continue
        assert rows["attempt"].tolist() == [a["attempt"] for a in item["attempts"]]
        for (_, row), a in zip(rows.iterrows(), item["attempts"]):
            assert row["status"] == a["status"] and row["exit"] == a["exit"] and pd.isna(row["signal"])
            assert row["start"] == a["start"] and row["end"] == a["end"]
            for col in ("duration_s", "cpu_s", "cpu_pct", "peak_rss_mb", "read_bytes", "write_bytes", "timeout_s"):
                assert row[col] == pytest.approx(a[col]), col
            assert row["command"] == a["command"] and row["log"] == str(tmp_path / "logs" / f"{item['item_id']}.log")
        assert shlex.split(rows["outputs"].iloc[-1]) == item["outputs"]
    a_rows = trace[trace["item"] == "flaky-a"]
    assert a_rows["status"].tolist() == ["error", "success"] and a_rows["exit"].tolist() == [1, 0]
    assert pd.isna(a_rows["outputs"].iloc[0])  # the failed attempt's outputs were removed


def test_a_command_workers_trace_names_its_exact_argv(tmp_path: Path) -> None:
    worker = Worker("command", f"{shlex.quote(sys.executable)} {shlex.quote(str(WORKERS))} {{marker}} {{out}}")
    item = Item("cmd item", params={"marker": str(tmp_path / "m"), "out": str(tmp_path / "with space.txt")})
    (r,) = _run([item], worker, tmp_path)
    assert r.status is Status.SUCCESS and [t["exit"] for t in r.attempts] == [3, 0]
    argv = [sys.executable, str(WORKERS), str(tmp_path / "m"), str(tmp_path / "with space.txt")]
    assert shlex.split(r.attempts[0]["command"]) == argv and r.command == shlex.join(argv)


def test_values_with_tabs_newlines_quotes_and_backslashes_read_back_escaped(tmp_path: Path) -> None:
    nasty = 'a\tb\nc\r"d" \\e'
    r = ItemResult(
        nasty,
        Status.CRASHED,
        signal=11,
        started="2026-12-06T10:00:00.000+00:00",
        ended="2026-12-06T10:00:02.000+00:00",
        duration_s=2.0,
        command="\"prog\" 'x\ty'",
        outputs=[nasty],
    )
    path = tmp_path / "trace.tsv"
    path.write_text(trace_text(attempt_rows([r])))
    assert len(path.read_text().splitlines()) == 2  # no value spills onto another line
    got = pd.read_csv(path, sep="\t").iloc[0]
    assert got["item"] == 'a\\tb\\nc\\r"d" \\\\e'
    assert got["command"] == "\"prog\" 'x\\ty'"
    assert got["signal"] == signal_name(11) == "SIGSEGV" and pd.isna(got["exit"])
    assert got["status"] == "crashed" and got["attempt"] == 1


def test_every_run_keeps_its_report_and_history_lists_them_newest_first(tmp_path: Path) -> None:
    from salvo.report import history

    results = [
        ItemResult(
            "x",
            Status.SUCCESS,
            started="2026-12-06T10:00:00.000+00:00",
            ended="2026-12-06T10:00:01.000+00:00",
            duration_s=1.0,
            outputs=[str(tmp_path / "out.txt")],
        )
    ]
    (tmp_path / "out.txt").write_text("x")
    folder = tmp_path / "report"
    for name, ended in (("batch-a", "2026-12-06T10:00:05+00:00"), ("batch-b", "2026-12-06T11:00:05+00:00")):
        write_reports(
            results,
            summarize(results, pipeline="p"),
            folder=folder,
            title=name,
            header={"run_name": name, "ended": ended},
        )
    runs = history(folder)
    assert [r["name"] for r in runs] == ["batch-b", "batch-a"]
    for r in runs:
        page = Path(r["report"]).read_text()
        assert f"<title>{r['name']}</title>" in page and 'href="../../../out.txt"' in page  # links from runs/<name>/
        assert Path(r["trace"]).is_file()
    top = (folder / "run_report.html").read_text()
    assert "<title>batch-b</title>" in top and 'href="../out.txt"' in top
    assert 'href="runs/batch-a/run_report.html"' in top
    # The same run name again (another run in the same second) gets a folder of its own.
    write_reports(results, summarize(results, pipeline="p"), folder=folder, title="c", header={"run_name": "batch-b"})
    assert sorted(r["name"] for r in history(folder)) == ["batch-a", "batch-b", "batch-b-2"]


def test_a_runs_folder_of_the_users_own_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    (folder / "runs").mkdir(parents=True)
    (folder / "runs" / "mine.txt").write_text("the user's")
    results = [ItemResult("x", Status.SUCCESS)]
    paths = write_reports(results, summarize(results, pipeline="p"), folder=folder, title="t")
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["mine.txt"] and Path(paths["html"]).is_file()


def test_salvo_history_of_a_folder_without_runs_and_of_no_folder(tmp_path: Path, capsys) -> None:
    from cli.main import main

    assert main(["history", str(tmp_path)]) == 0
    assert "No runs kept" in capsys.readouterr().out
    assert main(["history", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a folder" in err[0]
