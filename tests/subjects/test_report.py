"""Console lines in the seed's style, batch_metrics.csv and the self-contained HTML report."""

import csv
import json
from html.parser import HTMLParser

from salvo.outcome import ItemResult, Status
from salvo.subjects.report import (
    format_header, format_result_line, format_summary, render_html, subject_rows, write_html_report, write_metrics_csv,
)


def _results():
    return [
        ItemResult("sub-001", Status.SUCCESS, duration_s=912.0, metrics={"snr_b0": 20.5, "n_shells": 2}),
        ItemResult("sub-002", Status.SUCCESS, duration_s=4.25, metrics={"snr_b0": 18.0, "n_shells": 2}),
        ItemResult("sub-003", Status.TIMEOUT, duration_s=7200.0, reason="exceeded the 7200 s limit; process group killed"),
        ItemResult("sub-004", Status.CRASHED, signal=11, reason="killed by SIGSEGV"),
        ItemResult("sub-005", Status.ERROR, exit_code=1, reason="exit code 1: RuntimeError: pipeline command exited with code 3"),
        ItemResult("sub-006", Status.SKIPPED, reason="already done (config hash a1b2c3d4)"),
        ItemResult("sub-007", Status.SKIPPED, reason="locked by another run"),
    ]


def test_console_lines_follow_the_seed():
    lines = [format_result_line(i, r, timeout_min=120) for i, r in enumerate(_results(), 1)]
    assert lines == [
        "1. sub-001: Success in 15.2m",
        "2. sub-002: Success in 4.2s",
        "3. sub-003: Failed (TIMEOUT) - exceeded 120m limit",
        "4. sub-004: Failed (CRASHED) - killed by SIGSEGV",
        "5. sub-005: Failed (ERROR) - exit code 1: RuntimeError: pipeline command exited with code 3",
        "6. sub-006: Skipped - already done (config hash a1b2c3d4)",
        "7. sub-007: Skipped - locked by another run",
    ]
    assert format_result_line(1, _results()[2], timeout_min=0.05).endswith("exceeded 0.05m limit")
    assert format_header(50, out_dir="/data/study_results", config_hash="a1b2c3d4") == [
        "Starting batch processing for 50 subjects", "Output directory: /data/study_results", "Config hash: a1b2c3d4", ""]


def test_summary_block():
    lines = format_summary(_results(), out_dir="/data/study_results")
    assert lines == [
        "",
        "BATCH PROCESSING COMPLETE",
        "========================================",
        "Total:      7",
        "Success:    2",
        "Failed:     3 (sub-003, sub-004, sub-005)",
        "Skipped:    2",
        "",
        "Main metrics: /data/study_results/batch_metrics.csv",
        "Batch Report: /data/study_results/batch_report.html",
    ]


def test_metrics_csv_has_one_row_per_subject_with_done_metrics_for_skipped(tmp_path):
    folder = tmp_path / "sub-006"
    folder.mkdir()
    (folder / "_done.json").write_text(json.dumps({"status": "success", "config_hash": "a1b2c3d4", "metrics": {"snr_b0": 30.0, "n_shells": 3}}))
    rows = subject_rows(_results(), out_dir=tmp_path, timeout_min=120)
    write_metrics_csv(rows, tmp_path / "batch_metrics.csv")
    with open(tmp_path / "batch_metrics.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["subject"] for r in table] == [f"sub-00{i}" for i in range(1, 8)]
    assert table[0]["status"] == "success" and float(table[0]["snr_b0"]) == 20.5
    assert table[2]["reason"] == "exceeded 120m limit" and table[2]["snr_b0"] == ""
    assert table[5]["snr_b0"] == "30.0" and table[5]["config_hash"] == "a1b2c3d4"
    assert float(table[1]["duration_s"]) == 4.25


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.links, self.svgs, self.external = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-subject" in a:
            self.rows.append(a["data-subject"])
        if tag == "a":
            self.links.append(a["href"])
        if tag == "svg":
            self.svgs += 1
        if tag in ("script", "img", "link") and (a.get("src") or a.get("href") or "").startswith("http"):
            self.external.append(a)


def test_html_report_parses_and_holds_every_subject(tmp_path):
    rows = subject_rows(_results(), out_dir=tmp_path, timeout_min=120)
    path = write_html_report(rows, tmp_path / "batch_report.html", title="Batch <report>", config_hash="a1b2c3d4", summary={"success": 2})
    parser = _Collector()
    parser.feed(path.read_text())
    parser.close()
    assert parser.rows == [f"sub-00{i}" for i in range(1, 8)]
    assert parser.links == [f"sub-00{i}/logs/sub-00{i}.log" for i in range(1, 8)]
    assert parser.svgs == 3  # durations, then one distribution per numeric metric (snr_b0, n_shells)
    assert parser.external == []
    assert "Batch &lt;report&gt;" in path.read_text()


def test_html_report_without_metrics_has_only_the_duration_plot():
    rows = [{"subject": "s", "status": "error", "reason": "x", "duration_s": 0.0, "started": "", "config_hash": "", "log": "logs/s.log", "metrics": {}}]
    page = render_html(rows, title="t", config_hash="h", summary={})
    assert page.count("<svg") == 1 and "Metric distributions" not in page
