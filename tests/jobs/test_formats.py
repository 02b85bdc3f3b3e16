"""Every profile on every layout SIRENE users have: INSEE's all-text CSV, a text Parquet, typed Parquets.

Expected answers are computed here in plain Python from the file's own rows (csv module / to_pylist),
not with the code under test.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main
from salvo.errors import InputError
from salvo.jobs.batch import render_jobs
from salvo.jobs.builder import run_job
from salvo.jobs.synth import write_synthetic_sirene

pytestmark = pytest.mark.pure

LAYOUTS = {"csv": "in.csv", "text": "in_text.parquet", "typed": "in_typed.parquet", "typed-timestamp": "in_ts.parquet"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    return {
        layout: write_synthetic_sirene(root / name, rows=6_000, seed=11, row_group_rows=1_500, layout=layout)
        for layout, name in LAYOUTS.items()
    }


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    return pq.read_table(path).to_pylist()


def _date(value) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


def _expected(path: Path, prefix: str, *, active_only: bool = True) -> list[dict]:
    return [
        r
        for r in _rows(path)
        if r["nomenclatureActivitePrincipaleEtablissement"] == "NAFRev2"
        and (r["activitePrincipaleEtablissement"] or "").startswith(prefix)
        and (r["etatAdministratifEtablissement"] == "A" or not active_only)
    ]


def _departement(commune: str) -> str | None:
    if not commune:
        return None
    return commune[:3] if commune.startswith("97") else commune[:2]


@pytest.mark.parametrize("profile", ["quick", "standard", "deep"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_profile_on_every_layout(layout: str, profile: str, inputs: dict[str, Path], tmp_path: Path) -> None:
    src = inputs[layout]
    # Division 74 exists in rév. 2 (74.10Z, 74.90B) and in NAFRev1 (74.1A): only rév. 2 rows may match.
    job = render_jobs(["74"], template=None, profile=profile, jobs_dir=tmp_path / "jobs")[0]
    out = run_job(str(job.path), input=str(src), output_dir=str(tmp_path / "out"), max_ram_mb=128, sample=None)
    table = pq.read_table(tmp_path / "out" / "naf_74" / "dataset.parquet")
    expected = _expected(src, "74.")
    assert table.num_rows == len(expected) == out["metrics"]["rows"] > 0
    assert "74.1A" not in set(table.column("activitePrincipaleEtablissement").to_pylist())
    got = table.to_pylist()
    by_siret = {r["siret"]: r for r in expected}
    for row in got:
        src_row = by_siret[row["siret"]]
        # Départements from the commune code, as text: Corsica 2A/2B, overseas on three characters.
        commune = src_row.get("codeCommuneEtablissement") or ""
        assert row["departement"] == _departement(commune)
        if profile != "quick":
            created = _date(src_row["dateCreationEtablissement"])
            assert row["annee_creation"] == (created.year if created else None)
    deps = {r["departement"] for r in got}
    assert {"2A", "2B", "974", "01"} & deps, deps
    if profile != "quick":
        assert any(r["annee_creation"] is None for r in got), "empty creation dates must become nulls"


def test_corsica_and_overseas_departements_on_all_codes(inputs: dict[str, Path], tmp_path: Path) -> None:
    job = render_jobs(["68"], template=None, profile="quick", jobs_dir=tmp_path / "jobs")[0]
    job_all = tmp_path / "all.yaml"
    job_all.write_text(job.path.read_text().replace("active_only: true", "active_only: false"))
    run_job(str(job_all), input=str(inputs["csv"]), output_dir=str(tmp_path / "out"), max_ram_mb=128, sample=None)
    table = pq.read_table(tmp_path / "out" / "naf_68" / "dataset.parquet")
    deps = set(table.column("departement").to_pylist())
    assert {"2A", "2B", "974", "976", "01", "75"} <= deps
    assert "20" not in deps and "1" not in deps


def test_a_date_column_that_is_not_dates_is_one_error_naming_it(tmp_path: Path) -> None:
    src = write_synthetic_sirene(tmp_path / "in.csv", rows=2_000, seed=2)
    text = src.read_text().splitlines()
    header = text[0].split(",")
    i = header.index("dateCreationEtablissement")
    bad = []
    for line in text[1:]:
        cells = line.split(",")
        if cells[header.index("activitePrincipaleEtablissement")].startswith("68."):
            cells[i] = "14/03/2002"
        bad.append(",".join(cells))
    src.write_text("\n".join([text[0], *bad]) + "\n")
    job = render_jobs(["68"], template=None, profile="standard", jobs_dir=tmp_path / "jobs")[0]
    with pytest.raises(InputError, match=r"column 'dateCreationEtablissement': '14/03/2002' is not a date") as info:
        run_job(str(job.path), input=str(src), output_dir=str(tmp_path / "out"), max_ram_mb=128, sample=None)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "naf_68").exists(), "a failed job leaves no output folder"


def test_a_column_of_the_wrong_type_is_refused_up_front(tmp_path: Path, capsys) -> None:
    src = write_synthetic_sirene(tmp_path / "in.parquet", rows=500, seed=2)
    table = pq.read_table(src)
    i = table.schema.get_field_index("dateCreationEtablissement")
    table = table.set_column(i, pa.field("dateCreationEtablissement", pa.float64()), pa.array([1.5] * table.num_rows))
    pq.write_table(table, src)
    args = [
        "jobs",
        "batch",
        "--naf",
        "68",
        "--profile",
        "standard",
        "--input",
        str(src),
        "--output-dir",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "'dateCreationEtablissement'" in err and "double" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_the_help_states_the_parsers_real_defaults(capsys) -> None:
    """Issue 16: `salvo jobs batch --help` says the defaults the parser really uses."""
    import argparse
    import re

    from cli.common import run_options
    from cli.jobs import register
    from salvo.validate import duration

    root = argparse.ArgumentParser(prog="salvo")
    register(root.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        root.parse_args(["jobs", "batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    real = root.parse_args(["jobs", "batch", "--naf", "43", "--input", "x", "--output-dir", "o"])
    run = run_options(real, "job-batch")  # what the command runs with: flags not given take the pipeline's defaults
    for flag, value in (
        ("--retries", run.retries),
        ("--max-workers", run.workers),
        ("--max-ram-mb", real.max_ram_mb),
        ("--timeout", run.timeout_s),
        ("--jobs-dir", real.jobs_dir),
        ("--profile", real.profile),
    ):
        m = re.search(re.escape(flag) + r"(?:(?! --).)*?\(default: ([^,)]+)", text)
        assert m, f"{flag} states no default"
        stated = m.group(1).strip()
        assert stated == str(value) or (isinstance(value, float) and duration(stated) == value), (flag, stated, value)
    # The seed: one job after another, stopping at the first failure; retries: the one default of every command.
    assert (run.retries, run.workers, run.fail_fast) == (2, 1, True)
    alias = root.parse_args(["batch", "--naf", "43", "--input", "x", "--output-dir", "o"])
    assert run_options(alias, "job-batch") == run
