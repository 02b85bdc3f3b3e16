"""salvage-merge's run_report.html: the rounds (table and plot), the merge_source map, the final run_status map.

The flow tests run a real `salvo recover` over the simulated model on dvmdostem's real layouts (the
Imnaviat run-mask, cell (0, 0) off) and read back the HTML it wrote; the pure tests build real
merged files with the salvage and merge functions alone.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import sys
import xml.etree.ElementTree as ET
from contextlib import redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cli.main import main as salvo_main
from salvo.gridded import merge_outputs, read_mask, read_merge_source, read_status, salvage_run
from salvo.gridded.dvmdostem import site_mask
from salvo.gridded.fakemodel import failure_kind
from salvo.gridded.report import (
    merge_source_section,
    recovery_markdown,
    status_categories,
    status_section,
    write_recovery_report,
)

from .conftest import ENABLED, Runs

SVG = "{http://www.w3.org/2000/svg}"
SECTIONS = ["Outcome", "Rounds", "Where each cell came from (merge_source)", "Final run_status"]


# ---------------------------------------------------------------- reading the report back


class _Report(HTMLParser):
    """The h2 titles and the rounds table (cells by their data-col) of a run report."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.rows: list[dict[str, str]] = []
        self._in_h2 = self._in_table = False
        self._col: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        elif tag == "table" and a.get("id") == "rounds-table":
            self._in_table = True
        elif tag == "tr" and self._in_table and "data-round" in a:
            self.rows.append({})
        elif tag == "td" and self._in_table and self.rows:
            self._col = a.get("data-col")
            self.rows[-1][self._col] = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        elif tag == "table":
            self._in_table = False
        elif tag == "td":
            self._col = None

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data
        elif self._in_table and self._col and self.rows:
            self.rows[-1][self._col] += data


def _svg_in(page: str, div_id: str) -> ET.Element:
    """The SVG inside ``<div id=div_id>``, parsed."""
    m = re.search(rf'<div id="{div_id}">(<svg.*?</svg>)\s*</div>', page, re.S)
    assert m, f"no SVG in #{div_id}"
    return ET.fromstring(m.group(1))


def _texts(el: ET.Element) -> list[str]:
    return ["".join(t.itertext()).strip() for t in el.iter(f"{SVG}text")]


def _legend(svg: ET.Element) -> set[str]:
    """Labels of the legend(s) of a matplotlib SVG (without the legend title)."""
    groups = [g for g in svg.iter(f"{SVG}g") if (g.get("id") or "").startswith("legend")]
    assert groups, "the figure has no legend"
    return {t for g in groups for t in _texts(g)} - {"cells"}


def _expected_source_legend(source: np.ndarray | None, mask: np.ndarray) -> set[str]:
    src = np.zeros(mask.shape, dtype=int) if source is None else source.astype(int)
    on = mask != 0
    labels = {f"round {k}" for k in np.unique(src[on]) if k > 0}
    if (on & (src == 0)).any():
        labels.add("original run")
    if (~on).any():
        labels.add("masked (not run)")
    return labels


def _expected_status_legend(status: np.ndarray, mask: np.ndarray) -> set[str]:
    on = mask != 0
    found = set()
    for v in np.unique(status[on]).tolist():
        found.add(
            {100: "success", -5: "timeout", -9999: "never written", 0: "not run"}.get(
                v, "fail" if v < 0 else "never written"
            )
        )
    if (~on).any():
        found.add("masked")
    return found


# ---------------------------------------------------------------- real `salvo recover` runs


def _model(root: Path, **opts) -> str:
    extra = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in opts.items())
    return (
        f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}} "
        f"--years 2 --layers 3 --state {root / 'model-state.json'} {extra}"
    )


def _recover(root: Path, *args: str, **model) -> tuple[int, str, dict]:
    runs = Runs(root)
    out = io.StringIO()
    with redirect_stdout(out):
        code = salvo_main(
            [
                "recover",
                "--model-command",
                _model(root, **model),
                "--mask",
                str(runs.mask()),
                "--output",
                str(root / "output"),
                *args,
            ]
        )
    doc = json.loads((root / "output.recovery" / "recovery.json").read_text())
    return code, out.getvalue(), doc


@pytest.fixture(scope="module")
def two_rounds(prefect_api, tmp_path_factory):
    """A recovery that converges in two re-run rounds (30% of the cells fail twice)."""
    root = tmp_path_factory.mktemp("two-rounds")
    code, out, doc = _recover(root, "--max-rounds", "3", seed=4, fail_fraction=0.3, fail_runs=2)
    assert code == 0, out
    return root, out, doc


@pytest.fixture(scope="module")
def not_recovered(prefect_api, tmp_path_factory):
    """A recovery that gives up: three cells (one of each failure kind) fail every run."""
    root = tmp_path_factory.mktemp("not-recovered")
    cells = [(1, 1), (1, 2), (1, 3)]
    assert {failure_kind(y, x, seed=0) for y, x in cells} == {-9999, -5, -100}
    code, out, doc = _recover(
        root, "--max-rounds", "1", fail_cells="'" + ";".join(f"{y},{x}" for y, x in cells) + "'", fail_runs=-1
    )
    assert code == 1, out
    return root, out, doc


def test_recover_writes_the_run_report_and_prints_its_path(two_rounds):
    root, out, doc = two_rounds
    report = root / "output.recovery" / "run_report.html"
    assert report.is_file() and doc["reports"]["html"] == str(report)
    assert f"  Run report (open in a browser): {report}" in out.splitlines()[-3:]
    page = report.read_text()
    parsed = _Report(page)
    for title in SECTIONS:
        assert title in parsed.h2
    assert (
        parsed.h2.index("Rounds")
        < parsed.h2.index("Where each cell came from (merge_source)")
        < parsed.h2.index("Final run_status")
    )
    assert {"Timeline", "Every item"} <= set(parsed.h2)  # the generic parts are there too
    assert page.count("<svg") >= 4 and "salvage-merge: recovered" in page
    md = (root / "output.recovery" / "recovery.md").read_text()
    assert f"- html: `{report}`" in md and md == recovery_markdown(doc)


def test_rounds_table_matches_the_recovery_json_and_the_files(two_rounds):
    root, _, doc = two_rounds
    rows = _Report((root / "output.recovery" / "run_report.html").read_text()).rows
    assert len(rows) == len(doc["rounds"]) == 3
    for row, r in zip(rows, doc["rounds"]):
        ran, model = r["ran"], r["model"]
        timed_out = ran["values"].get("-5", 0)
        assert int(row["cells_run"]) == ran["enabled"]
        assert int(row["succeeded"]) == ran["success"]
        assert int(row["timed_out"]) == timed_out
        assert int(row["failed"]) == ran["failed"] - timed_out
        assert int(row["not_written"]) == ran["not_run"] + ran["unwritten"]
        assert sum(int(row[k]) for k in ("succeeded", "failed", "timed_out", "not_written")) == int(row["cells_run"])
        assert row["exit"] == f"{model['status']} (exit {model['exit_code']})"
        assert float(row["model_s"]) == pytest.approx(model["duration_s"], abs=0.006)
        assert (
            float(row["round_s"]) == pytest.approx(r["duration_s"], abs=0.006)
            and r["duration_s"] >= model["duration_s"]
        )
        assert int(row["ok_after"]) == r["after"]["success"] and int(row["still_failed"]) == r["after"]["to_rerun"]
    # ... and the JSON's counts are those of the files each model run wrote
    work = root / "output.recovery"
    first_failed = doc["rounds"][0]["after"]["failed_cells"]
    assert rows[0]["round"] == "0 (initial)" and int(rows[0]["cells_run"]) == ENABLED
    assert int(rows[0]["succeeded"]) == ENABLED - len(first_failed)
    for k in (1, 2):
        mask = read_mask(work / f"round-{k}" / "run-mask-failed.nc") != 0
        status = read_status(work / f"round-{k}" / "rerun" / "run_status.nc")[mask]
        row = rows[k]
        assert int(row["cells_run"]) == int(mask.sum()) == len(first_failed)
        assert int(row["succeeded"]) == int((status == 100).sum()) == (len(first_failed) if k == 2 else 0)
        assert int(row["timed_out"]) == int((status == -5).sum())
        assert int(row["not_written"]) == int((status == -9999).sum())


def test_merge_source_map_shows_which_round_each_cell_came_from(two_rounds):
    root, _, doc = two_rounds
    page = (root / "output.recovery" / "run_report.html").read_text()
    svg = _svg_in(page, "merge-source-map")
    source = read_merge_source(root / "output" / "run_status.nc")
    mask = read_mask(root / "run-mask.nc")
    legend = _legend(svg)
    # cells that failed twice came from round 2, none from round 1; cell (0, 0) is off in the mask
    assert legend == {"original run", "round 2", "masked (not run)"} == _expected_source_legend(source, mask)
    labels = _texts(svg)
    assert "X (cell index)" in labels and "Y (cell index)" in labels
    counts = dict(
        re.findall(
            r">([a-z0-9 ()]+)</span></td><td>(\d+)</td>",
            page[page.index('id="merge-source-counts"') :].split("</table>")[0],
        )
    )
    assert int(counts["round 2"]) == int((source == 2).sum()) == len(doc["rounds"][0]["after"]["failed_cells"])
    assert int(counts["masked (not run)"]) == int((mask == 0).sum())
    assert int(counts["original run"]) == ENABLED - int(counts["round 2"])


def test_status_map_of_a_recovery_that_gave_up(not_recovered):
    root, out, doc = not_recovered
    report = root / "output.recovery" / "run_report.html"
    assert f"  Run report (open in a browser): {report}" in out.splitlines()
    page = report.read_text()
    assert "salvage-merge: NOT recovered (--max-rounds 1 reached) — 3 of 99 enabled cells still failed" in page
    status = read_status(root / "output" / "run_status.nc")
    mask = read_mask(root / "run-mask.nc")
    svg = _svg_in(page, "run-status-map")
    assert (
        _legend(svg)
        == {"success", "fail", "timeout", "never written", "masked"}
        == _expected_status_legend(status, mask)
    )
    assert "X (cell index)" in _texts(svg) and "Y (cell index)" in _texts(svg)
    # nothing the re-run produced was merged: every enabled cell is the original run's
    assert _legend(_svg_in(page, "merge-source-map")) == {"original run", "masked (not run)"}
    rows = _Report(page).rows
    assert [(r["cells_run"], r["succeeded"]) for r in rows] == [(str(ENABLED), str(ENABLED - 3)), ("3", "0")]
    assert rows[1]["failed"] == rows[1]["timed_out"] == rows[1]["not_written"] == "1"


def test_summary_artifact_links_the_run_report(two_rounds):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    root, _, _ = two_rounds
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["salvage-merge-summary"]))
        )
    link = f"- html: `{root / 'output.recovery' / 'run_report.html'}`"
    assert any(link in str(a.data) for a in found)


# ---------------------------------------------------------------- pure: real files, no Prefect


@pytest.mark.pure
def test_status_categories_of_every_run_status_value():
    status = np.array([[100, -100, -5, -9999, 0, -3, 100]])
    mask = np.array([[1, 1, 1, 1, 1, 1, 0]])
    assert status_categories(status, mask != 0).tolist() == [[0, 1, 2, 3, 4, 1, 5]]


@pytest.mark.pure
def test_merge_source_map_of_a_salvage_and_merge_done_by_hand(tmp_path):
    runs = Runs(tmp_path)
    mask = runs.mask()
    runs.run(mask, "output", fail_cells=[(2, 3), (5, 5)])
    salvage_run(
        tmp_path / "output", backup_dir=tmp_path / "salvaged", original_mask=mask, new_mask=tmp_path / "failed.nc"
    )
    runs.run(tmp_path / "failed.nc", "rerun")
    merge_outputs(tmp_path / "salvaged", rerun_dir=tmp_path / "rerun", output_dir=tmp_path / "merged", rerun_index=1)
    merged = tmp_path / "merged" / "run_status.nc"
    section = merge_source_section(merged, mask)
    svg = _svg_in(section.html, "merge-source-map")
    assert _legend(svg) == {"original run", "round 1", "masked (not run)"}
    assert {"X (cell index)", "Y (cell index)"} <= set(_texts(svg))
    # the salvaged run has no merge_source: every enabled cell is the original run's
    section = merge_source_section(tmp_path / "salvaged" / "run_status.nc", mask)
    assert _legend(_svg_in(section.html, "merge-source-map")) == {"original run", "masked (not run)"}
    assert "no <code>merge_source</code>" in section.html
    # on a made-up grid with other dimension names, the axes carry them
    other = tmp_path / "other"
    other.mkdir()
    import netCDF4

    with netCDF4.Dataset(other / "run_status.nc", "w", format="NETCDF3_CLASSIC") as ds:
        ds.createDimension("row", 3)
        ds.createDimension("col", 4)
        v = ds.createVariable("run_status", "i4", ("row", "col"), fill_value=-9999)
        v[:] = np.array([[100, -5, -100, 100], [100, 100, 100, 100], [0, 100, 100, 100]])
    svg = _svg_in(status_section(other / "run_status.nc", None).html, "run-status-map")
    assert {"col (cell index)", "row (cell index)"} <= set(_texts(svg))
    assert _legend(svg) == {"success", "timeout", "fail", "not run"}


@pytest.mark.pure
def test_report_of_a_model_that_left_no_run_status(tmp_path):
    mask = site_mask(tmp_path / "run-mask.nc")
    work = tmp_path / "output.recovery"
    work.mkdir()
    doc = {
        "pipeline": "salvage-merge",
        "wall_time_s": 9.5,
        "layout": {"mask": str(mask), "output": str(tmp_path / "output"), "work": str(work)},
        "rounds": [
            {
                "round": 0,
                "step": "initial",
                "ran": None,
                "after": None,
                "duration_s": 8.0,
                "model": {
                    "status": "timeout",
                    "reason": "killed after 8 s",
                    "duration_s": 8.0,
                    "exit_code": None,
                    "wrote_status": False,
                },
            }
        ],
        "summary": {
            "ok": False,
            "total": 0,
            "failed": 1,
            "failed_items": [],
            "rounds": 0,
            "mask_restored": True,
            "stopped": "the initial run ended timeout without run_status.nc",
        },
    }
    page = write_recovery_report(doc).read_text()
    parsed = _Report(page)
    assert set(SECTIONS) <= set(parsed.h2)
    assert parsed.rows == [
        {
            "round": "0 (initial)",
            "cells_run": "—",
            "succeeded": "—",
            "failed": "—",
            "timed_out": "—",
            "not_written": "—",
            "exit": "timeout (killed)",
            "model_s": "8.00",
            "round_s": "8.00",
            "merged_files": "0",
            "ok_after": "—",
            "still_failed": "—",
        }
    ]
    assert page.count("No run_status.nc in the output folder") == 2
    assert "NOT recovered (the initial run ended timeout without run_status.nc)" in page
