"""A job that fails on its input fails the same way every time: exit 65, one line, never retried."""

from __future__ import annotations

from pathlib import Path

from cli.common import run_flow
from flows.job_batch import job_batch
from salvo.jobs.synth import write_synthetic_sirene
from salvo.options import RunOptions


def test_an_unparseable_date_column_fails_once_with_one_line(tmp_path: Path) -> None:
    src = write_synthetic_sirene(tmp_path / "in.csv", rows=1_500, seed=3)
    lines = src.read_text().splitlines()
    i = lines[0].split(",").index("dateCreationEtablissement")
    rows = [line.split(",") for line in lines[1:]]
    for cells in rows:
        cells[i] = "le 14 mars"
    src.write_text("\n".join([lines[0], *(",".join(c) for c in rows)]) + "\n")
    doc = run_flow(
        job_batch,
        naf=["68", "43"],
        input=str(src),
        output_dir=str(tmp_path / "out"),
        jobs_dir=str(tmp_path / "jobs"),
        profile="standard",
        run=RunOptions(retries=2, fail_fast=False),
    )
    for item in doc["items"]:
        assert item["status"] == "error" and item["exit_code"] == 65, item
        assert item["attempt"] == 1, "a deterministic input error was retried"
    entry = doc["jobs"][0]
    assert "column 'dateCreationEtablissement': 'le 14 mars' is not a date" in entry["error"]
    assert "Traceback" not in entry["error"]
    assert not (tmp_path / "out" / "naf_68").exists()
