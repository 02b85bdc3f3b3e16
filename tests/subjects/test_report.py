"""Console lines in the seed's style, batch_metrics.csv and the self-contained HTML report."""

import csv
import json
from html.parser import HTMLParser

import pytest

from salvo.outcome import ItemResult, Status
from salvo.subjects.report import (
    format_header,
    format_result_line,
    format_summary,
    render_html,
    subject_rows,
    write_html_report,
    write_metrics_csv,
)

pytestmark = pytest.mark.pure  # no Prefect server, no flow


def _results():
    return [
        ItemResult("sub-001", Status.SUCCESS, duration_s=912.0, metrics={"snr_b0": 20.5, "n_shells": 2}),
        ItemResult("sub-002", Status.SUCCESS, duration_s=4.25, metrics={"snr_b0": 18.0, "n_shells": 2}),
        ItemResult(
            "sub-003", Status.TIMEOUT, duration_s=7200.0, reason="exceeded the 7200 s limit; process group killed"
        ),
        ItemResult("sub-004", Status.CRASHED, signal=11, reason="killed by SIGSEGV"),
        ItemResult(
            "sub-005",
            Status.ERROR,
            exit_code=1,
            reason="exit code 1: RuntimeError: pipeline command exited with code 3",
        ),
        ItemResult("sub-006", Status.SKIPPED, reason="already done (config hash a1b2c3d4)"),
        ItemResult("sub-007", Status.SKIPPED, reason="locked by another run"),
    ]


def test_console_lines_follow_the_seed():
    lines = [format_result_line(i, r, timeout_min=120) for i, r in enumerate(_results(), 1)]
    assert lines == [
        "1. sub-001: Success in 15.2m",
        "2. sub-002: Success in 4.2s",
        "3. sub-003: Failed (TIMEOUT) - exceeded 2 h limit",
        "4. sub-004: Failed (CRASHED) - killed by SIGSEGV",
        "5. sub-005: Failed (ERROR) - exit code 1: RuntimeError: pipeline command exited with code 3",
        "6. sub-006: Skipped - already done (config hash a1b2c3d4)",
        "7. sub-007: Skipped - locked by another run",
    ]
    assert format_result_line(1, _results()[2], timeout_min=0.05).endswith("exceeded 3 s limit")
    assert format_header(50, out_dir="/data/study_results", config_hash="a1b2c3d4") == [
        "Starting batch processing for 50 subjects",
        "Output directory: /data/study_results",
        "Config hash: a1b2c3d4",
        "",
    ]


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
    (folder / "_done.json").write_text(
        json.dumps({"status": "success", "config_hash": "a1b2c3d4", "metrics": {"snr_b0": 30.0, "n_shells": 3}})
    )
    rows = subject_rows(_results(), out_dir=tmp_path, timeout_min=120)
    write_metrics_csv(rows, tmp_path / "batch_metrics.csv")
    with open(tmp_path / "batch_metrics.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["subject"] for r in table] == [f"sub-00{i}" for i in range(1, 8)]
    assert table[0]["status"] == "success" and float(table[0]["snr_b0"]) == 20.5
    assert table[2]["reason"] == "exceeded 2 h limit" and table[2]["snr_b0"] == ""
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
    path = write_html_report(
        rows, tmp_path / "batch_report.html", title="Batch <report>", config_hash="a1b2c3d4", summary={"success": 2}
    )
    parser = _Collector()
    parser.feed(path.read_text())
    parser.close()
    assert parser.rows == [f"sub-00{i}" for i in range(1, 8)]
    assert parser.links == [f"sub-00{i}/logs/sub-00{i}.log" for i in range(1, 8)]
    assert parser.svgs == 3  # durations, then one distribution per numeric metric (snr_b0, n_shells)
    assert parser.external == []
    assert "Batch &lt;report&gt;" in path.read_text()


def test_html_report_without_metrics_has_only_the_duration_plot():
    rows = [
        {
            "subject": "s",
            "status": "error",
            "reason": "x",
            "duration_s": 0.0,
            "started": "",
            "config_hash": "",
            "log": "logs/s.log",
            "metrics": {},
        }
    ]
    page = render_html(rows, title="t", config_hash="h", summary={})
    assert page.count("<svg") == 1 and "Metric distributions" not in page


def _resumed_rows(tmp_path):
    """A resumed batch: sub-001 ran now, sub-002 was skipped as done (it took 754 s when it ran)."""
    from salvo.subjects.samples import write_dwi
    from salvo.subjects.pipeline import run_pipeline

    for sid, took in (("sub-001", 5.0), ("sub-002", 754.0)):
        folder = tmp_path / sid
        files = write_dwi(tmp_path / "raw" / sid / "dwi.nii.gz", shape=(12, 12, 6))
        metrics = run_pipeline(files["nifti"], work_dir=folder, bval=files["bval"], bvec=files["bvec"])
        (folder / "qc").mkdir()
        (folder / "qc" / "fa.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
        (folder / "_done.json").write_text(
            json.dumps(
                {
                    "status": "success",
                    "config_hash": "a1b2c3d4",
                    "duration_s": took,
                    "metrics": metrics,
                    "units": {"snr_b0": "ratio"},
                }
            )
        )
        (folder / "logs").mkdir()
        (folder / "logs" / "debug.png").write_bytes(b"not shown: logs are not QC images")
        (folder / "_failed-20260101T000000Z").mkdir()
        (folder / "_failed-20260101T000000Z" / "old.png").write_bytes(b"not shown either")
    results = [
        ItemResult(
            "sub-001",
            Status.SUCCESS,
            duration_s=5.0,
            metrics=json.loads((tmp_path / "sub-001" / "_done.json").read_text())["metrics"],
        ),
        ItemResult("sub-002", Status.SKIPPED, duration_s=0.8, reason="already done (config hash a1b2c3d4)"),
    ]
    return subject_rows(results, out_dir=tmp_path, timeout_min=120)


def test_resumed_run_does_not_show_skip_times_as_durations(tmp_path):
    rows = _resumed_rows(tmp_path)
    assert rows[1]["duration_s"] is None and rows[1]["done_duration_s"] == 754.0
    page = render_html(rows, title="t", config_hash="a1b2c3d4", summary={}, out_dir=tmp_path)
    durations = page[page.index('<svg xmlns="http://www.w3.org/2000/svg" class="durations"') :]
    durations = durations[: durations.index("</svg>")]
    assert "sub-001" in durations and "sub-002" not in durations  # only what ran in this batch is plotted
    assert "0.8s" not in page  # the time it took to skip is nowhere shown as a duration
    assert "– (skipped; took 12.6m when it ran)" in page
    write_metrics_csv(rows, tmp_path / "m.csv")
    with open(tmp_path / "m.csv") as fh:
        table = list(csv.DictReader(fh))
    assert table[1]["duration_s"] == "" and float(table[1]["done_duration_s"]) == 754.0
    assert float(table[0]["duration_s"]) == 5.0


def test_plots_have_axes_with_ticks_and_units(tmp_path):
    rows = _resumed_rows(tmp_path)
    page = render_html(rows, title="t", config_hash="h", summary={}, out_dir=tmp_path)
    svgs = page.split("<svg")[1:]
    assert len(svgs) >= 3
    for svg in svgs:
        assert 'class="axis"' in svg and svg.count('class="tick-label"') >= 2 and 'class="axis-label"' in svg
    assert "duration in this batch (seconds)" in svgs[0]
    assert "md_mean (mm²/s)" in page and "fa_mean (ratio)" in page and "b0_mean (a.u.)" in page


def test_nice_ticks_cover_the_range_with_round_steps():
    from salvo.subjects.report import nice_ticks

    assert nice_ticks(0, 754) == [0, 200, 400, 600]
    small = nice_ticks(0.00071, 0.00098)  # mean diffusivities in mm²/s
    assert small == pytest.approx([0.00075, 0.0008, 0.00085, 0.0009, 0.00095])
    assert nice_ticks(256, 347) == [260, 280, 300, 320, 340]  # never a lone tick on an axis
    assert nice_ticks(3, 3) == [3]


def test_gallery_embeds_the_qc_images_the_pipeline_wrote(tmp_path):
    import base64
    import re

    rows = _resumed_rows(tmp_path)
    assert rows[0]["images"] == ["dti_FA.png", "qc/fa.svg"]  # not logs/ or _failed-*/
    path = write_html_report(
        rows, tmp_path / "batch_report.html", title="t", config_hash="h", summary={}, out_dir=tmp_path
    )
    page = path.read_text()
    parser = _Collector()
    parser.feed(page)
    assert parser.external == []
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4  # two images for each subject, the skipped one included
    assert all(s.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,")) for s in sources)
    png = base64.b64decode(sources[0].split(",", 1)[1])
    assert png == (tmp_path / "sub-001" / "dti_FA.png").read_bytes()
    assert 'data-subject="sub-002"' in page[page.index('id="gallery"') :]
