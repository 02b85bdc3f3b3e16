"""The HTML run report: its content, and that a real headless browser renders it with its plots."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from salvo.html_report import COLOURS, error_signature, group_failures, image_tag, Section
from salvo.outcome import ItemResult, Status
from salvo.report import summarize, table_rows, write_reports

T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


def _results(tmp: Path) -> list[ItemResult]:
    out = []
    for i in range(12):
        status = [Status.SUCCESS, Status.SUCCESS, Status.ERROR, Status.TIMEOUT][i % 4]
        s, e = T0 + dt.timedelta(seconds=i), T0 + dt.timedelta(seconds=i + 1 + i % 3)
        outdir = tmp / f"f{i}_results"
        outdir.mkdir(exist_ok=True)
        reason = (
            f"exit code 1: ValueError: bad value {i} in /data/f{i}.nc"
            if status is Status.ERROR
            else ("exceeded the 5 s limit" if status is Status.TIMEOUT else "")
        )
        out.append(
            ItemResult(
                f"f{i}.nc",
                status,
                reason=reason,
                started=s.isoformat(),
                ended=e.isoformat(),
                duration_s=(e - s).total_seconds(),
                peak_rss_mb=50.0 + 10 * i,
                outputs=[str(outdir)],
                stderr_tail="Traceback...\nValueError: bad value" if status is Status.ERROR else "",
            )
        )
    out.append(ItemResult("old.nc", Status.SUCCESS, cached=True, duration_s=99.0))
    return out


@pytest.mark.pure
def test_failures_are_grouped_by_signature_with_paths_and_numbers_folded(tmp_path: Path) -> None:
    results = _results(tmp_path)
    groups = dict(group_failures(results))
    assert set(groups) == {
        "error: exit code <n>: ValueError: bad value <n> in <path>",
        "timeout: exceeded the <n> s limit",
    }
    assert sorted(r.item_id for r in groups["error: exit code <n>: ValueError: bad value <n> in <path>"]) == [
        "f10.nc",
        "f2.nc",
        "f6.nc",
    ]
    assert error_signature(ItemResult("x", Status.SUCCESS)) == "success"


@pytest.mark.pure
def test_report_holds_counts_failures_first_links_and_no_external_resources(tmp_path: Path) -> None:
    results = _results(tmp_path)
    log = tmp_path / "logs" / "f2.nc.log"
    log.parent.mkdir()
    log.write_text("the log")
    png = tmp_path / "qc.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(png, [[0, 1], [1, 0]])
    summary = summarize(results, pipeline="netcdf-extract", wall_time_s=14.0)
    paths = write_reports(
        results,
        summary,
        folder=tmp_path / "reports",
        title="Test batch",
        sections=[Section("QC gallery", image_tag(png, alt="qc"))],
        logs={"f2.nc": str(log)},
    )
    page = Path(paths["html"]).read_text()
    assert Path(paths["html"]).name == "run_report.html"
    assert "success: 7" in page and "error: 3" in page and "timeout: 3" in page  # 6 ran + 1 resumed
    assert "6 of 13 items failed" in page
    # Failures come first in the items table; the resumed item says so instead of a duration.
    table = page[page.index("<h2>Every item</h2>") :]
    first_rows = re.findall(r"<tr><td>([^<]+)</td>", table)[:6]
    assert all(
        Status.ERROR.value in table.split(f"<tr><td>{i}</td>")[1].split("</tr>")[0]
        or Status.TIMEOUT.value in table.split(f"<tr><td>{i}</td>")[1].split("</tr>")[0]
        for i in first_rows
    )
    old_row = table.split("<tr><td>old.nc</td>")[1].split("</tr>")[0]
    assert "resumed" in old_row and "99" not in old_row
    # Links are relative to the report, so they open from a browser on disk.
    assert 'href="../logs/f2.nc.log"' in page and 'href="../f0_results"' in page
    assert page.count("<svg") >= 2 and "seconds since the first item started" in page and "peak memory (MiB)" in page
    assert "data:image/png;base64," in page and "QC gallery" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"https?://", page), "the report must be self-contained"


@pytest.mark.pure
def test_table_rows_list_failures_first_with_short_reasons_and_outputs(tmp_path: Path) -> None:
    results = _results(tmp_path)
    results[2].reason = "x" * 500
    rows = table_rows(results)
    assert [r["status"] for r in rows[:6]].count("success") == 0
    assert all(len(r["reason"]) <= 80 for r in rows)
    assert rows[0]["output"].endswith("_results")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is missing: `make test` installs it (Debian package chromium)"
    return exe


def test_a_real_headless_browser_renders_the_report_with_its_plots(tmp_path: Path) -> None:
    from PIL import Image

    results = _results(tmp_path)
    summary = summarize(results, pipeline="netcdf-extract", wall_time_s=14.0)
    html_path = Path(write_reports(results, summary, folder=tmp_path, title="Browser check")["html"])
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1200,1800",
                f"--screenshot={shot}",
                html_path.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": profile},
        )
    assert shot.exists(), proc.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1800)
    pixels = np.asarray(img, dtype=int)

    def count(hex_colour: str) -> int:
        want = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(pixels - want).max(axis=2) <= 12).sum())

    # The timeline's bars and badges in the status colours, and the duration histogram's blue bars.
    assert count(COLOURS[Status.SUCCESS]) > 2000
    assert count(COLOURS[Status.TIMEOUT]) > 500
    assert count("#1565c0") > 2000, "the duration histogram did not render"
