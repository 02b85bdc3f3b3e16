"""The built-in builder: filters, profiles, sample, empty matches, the shared scan, atomic outputs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from salvo.errors import InputError
from salvo.jobs.batch import render_jobs
from salvo.jobs.builder import check_outputs, run_job
from salvo.jobs.derive import DERIVED
from salvo.jobs.naf import parse_naf
from salvo.jobs.profiles import PROFILES
from salvo.jobs.scan import ScanJob, ensure_scan, prefer_shared_scan, write_plan
from salvo.jobs.stream import naf_expression, open_dataset
from salvo.jobs.synth import SCHEMA, write_synthetic_sirene


def _expected_sirets(path: Path, code: str, *, active_only: bool = True) -> list[str]:
    naf = parse_naf(code)
    table = pq.read_table(path)
    keep = [
        naf.matches(v) and (not active_only or a == "A")
        for v, a in zip(
            table["activitePrincipaleEtablissement"].to_pylist(), table["etatAdministratifEtablissement"].to_pylist()
        )
    ]
    return table.filter(pa.array(keep))["siret"].to_pylist()


def _job(tmp_path: Path, code: str, profile: str, template: str | None = None) -> Path:
    return render_jobs([code], template=template, profile=profile, jobs_dir=tmp_path / "jobs")[0].path


@pytest.mark.parametrize("code", ["6920Z", "43", "43.2", "43.29", "68.20B"])
def test_filters_match_a_reference_scan(code: str, sirene_small: Path, tmp_path: Path) -> None:
    res = run_job(str(_job(tmp_path, code, "deep")), input=str(sirene_small), output_dir=str(tmp_path / "out"))
    folder = tmp_path / "out" / parse_naf(code).niche_name
    got = pq.read_table(folder / "dataset.parquet")["siret"].to_pylist()
    assert got == _expected_sirets(sirene_small, code)
    assert res["metrics"]["rows"] == len(got) > 0
    assert set(pq.read_table(folder / "dataset.parquet")["etatAdministratifEtablissement"].to_pylist()) == {"A"}
    csv_lines = (folder / "dataset.csv").read_text().splitlines()
    assert len(csv_lines) == len(got) + 1
    assert (folder / "logs" / "build.log").is_file()


@pytest.mark.parametrize("profile", ["quick", "standard", "deep"])
def test_profiles_differ_in_sample_columns_and_derived(profile: str, sirene_small: Path, tmp_path: Path) -> None:
    res = run_job(str(_job(tmp_path, "68.20B", profile)), input=str(sirene_small), output_dir=str(tmp_path / "out"))
    table = pq.read_table(tmp_path / "out" / "naf_6820B" / "dataset.parquet")
    prof = PROFILES[profile]
    base = list(prof.columns) if prof.columns is not None else SCHEMA.names
    assert table.column_names == base + list(prof.derived)
    limit = prof.sample_rows
    available = len(_expected_sirets(sirene_small, "68.20B"))
    assert table.num_rows == res["metrics"]["rows"] == (available if limit is None else min(limit, available))


def test_derived_columns_are_computed_from_their_inputs(sirene_small: Path, tmp_path: Path) -> None:
    run_job(str(_job(tmp_path, "43", "deep")), input=str(sirene_small), output_dir=str(tmp_path / "out"))
    t = pq.read_table(tmp_path / "out" / "naf_43" / "dataset.parquet").to_pylist()
    for row in t[:200]:
        # Issue 10: the département comes from the INSEE commune code (Corsica 2A/2B, overseas 97x).
        commune = row["codeCommuneEtablissement"]
        assert row["departement"] == (commune[:3] if commune.startswith("97") else commune[:2])
        created = row["dateCreationEtablissement"]
        assert row["annee_creation"] == (None if created is None else created.year)
        assert row["naf_division"] == "43" and row["naf_groupe"] == row["activitePrincipaleEtablissement"][:4]
        if row["trancheEffectifsEtablissement"] == "12":
            assert (row["effectif_min"], row["effectif_max"]) == (20, 49)
    assert set(DERIVED) == set(PROFILES["deep"].derived)


def test_sample_keeps_the_first_rows(sirene_small: Path, tmp_path: Path) -> None:
    res = run_job(
        str(_job(tmp_path, "43", "deep")), input=str(sirene_small), output_dir=str(tmp_path / "out"), sample=7
    )
    got = pq.read_table(tmp_path / "out" / "naf_43" / "dataset.parquet")["siret"].to_pylist()
    assert got == _expected_sirets(sirene_small, "43")[:7] and res["metrics"]["rows"] == 7


def test_a_code_matching_nothing_is_a_warning_with_empty_files(sirene_small: Path, tmp_path: Path) -> None:
    res = run_job(str(_job(tmp_path, "05.10Z", "standard")), input=str(sirene_small), output_dir=str(tmp_path / "out"))
    assert res["metrics"]["rows"] == 0
    assert res["metrics"]["warnings"] == ["NAF 05.10Z matched no row (active establishments only)"]
    folder = tmp_path / "out" / "naf_0510Z"
    assert pq.read_table(folder / "dataset.parquet").num_rows == 0
    assert (folder / "dataset.csv").read_text().startswith('"siret","siren"')
    assert check_outputs(_job(tmp_path, "05.10Z", "standard"), output_dir=tmp_path / "out") is None


@pytest.mark.parametrize("sample", [None, 5])
def test_shared_scan_gives_the_same_rows_as_direct_scans(
    sample: int | None, sirene_small: Path, tmp_path: Path
) -> None:
    codes = ["6920Z", "43", "43.29A", "01.11Z"]
    jobs = render_jobs(codes, template=None, profile="deep", jobs_dir=tmp_path / "jobs")
    plan, cache = tmp_path / "scan" / "plan.json", tmp_path / "scan" / "cache"
    write_plan(
        plan,
        input_path=sirene_small,
        jobs=[ScanJob(j.spec.niche, j.spec.naf, j.spec.active_only, sample) for j in jobs],
    )
    for job in jobs:
        shared = run_job(
            str(job.path),
            input=str(sirene_small),
            output_dir=str(tmp_path / "shared"),
            plan_file=str(plan),
            scan_dir=str(cache),
            sample=sample,
        )
        direct = run_job(str(job.path), input=str(sirene_small), output_dir=str(tmp_path / "direct"), sample=sample)
        assert (shared["metrics"]["source"], direct["metrics"]["source"]) == ("shared scan", "direct scan")
        a = pq.read_table(tmp_path / "shared" / job.spec.niche / "dataset.parquet").drop_columns(["age_annees"])
        b = pq.read_table(tmp_path / "direct" / job.spec.niche / "dataset.parquet").drop_columns(["age_annees"])
        assert a.equals(b) and a.num_rows > 0
    # A job asking for more rows than the plan dealt it reads the input itself instead.
    more = run_job(
        str(jobs[1].path),
        input=str(sirene_small),
        output_dir=str(tmp_path / "more"),
        plan_file=str(plan),
        scan_dir=str(cache),
        sample=None if sample is None else sample + 1,
    )
    assert more["metrics"]["source"] == ("shared scan" if sample is None else "direct scan")
    folder, counts = ensure_scan(plan, cache_dir=cache, max_ram_mb=256)
    assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(f"{j.spec.niche}.parquet" for j in jobs)
    assert counts["naf_43"] == len(_expected_sirets(sirene_small, "43")[:sample])


def test_prefix_filter_prunes_row_groups_of_a_sorted_file(tmp_path: Path) -> None:
    src = write_synthetic_sirene(tmp_path / "u.parquet", rows=4_000, seed=3)
    table = pq.read_table(src)
    sorted_path = tmp_path / "sorted.parquet"
    pq.write_table(table.sort_by("activitePrincipaleEtablissement"), sorted_path, row_group_size=250)
    fragment = next(open_dataset(sorted_path).get_fragments())
    kept = fragment.subset(filter=naf_expression([parse_naf("43.2")])).row_groups
    assert 0 < len(kept) < fragment.num_row_groups / 4
    matching = pc.sum(pc.starts_with(table["activitePrincipaleEtablissement"], "43.2")).as_py()
    assert sum(rg.num_rows for rg in kept) >= matching
    # On the sorted copy pruned scans are cheaper than a shared pass; on the unsorted file they are not.
    jobs = [ScanJob(c.niche_name, (c,), True) for c in map(parse_naf, ["43.2", "69.20Z", "01"])]
    assert prefer_shared_scan(sorted_path, jobs) is False
    unsorted = tmp_path / "unsorted.parquet"
    pq.write_table(table, unsorted, row_group_size=250)
    assert prefer_shared_scan(unsorted, jobs) is True
    assert prefer_shared_scan(unsorted, jobs[:1]) is False


def test_a_failed_job_leaves_the_previous_output_untouched(sirene_small: Path, tmp_path: Path) -> None:
    old = tmp_path / "out" / "naf_6920Z"
    old.mkdir(parents=True)
    (old / "dataset.csv").write_text("previous result\n")
    broken = tmp_path / "broken.parquet"
    pq.write_table(pq.read_table(sirene_small).drop_columns(["etatAdministratifEtablissement"]), broken)
    with pytest.raises(InputError, match="etatAdministratifEtablissement"):
        run_job(str(_job(tmp_path, "6920Z", "quick")), input=str(broken), output_dir=str(tmp_path / "out"))
    assert (old / "dataset.csv").read_text() == "previous result\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["naf_6920Z"]


def test_check_outputs_notices_missing_or_disagreeing_files(sirene_small: Path, tmp_path: Path) -> None:
    job = _job(tmp_path, "43", "quick")
    run_job(str(job), input=str(sirene_small), output_dir=str(tmp_path / "out"))
    assert check_outputs(job, output_dir=tmp_path / "out") is None
    parquet = tmp_path / "out" / "naf_43" / "dataset.parquet"
    pq.write_table(pq.read_table(parquet).slice(0, 3), parquet)
    assert "has 3 rows" in check_outputs(job, output_dir=tmp_path / "out")
    (tmp_path / "out" / "naf_43" / "dataset.csv").unlink()
    assert "dataset.csv is missing" in check_outputs(job, output_dir=tmp_path / "out")


def test_bad_job_file_is_a_deterministic_input_error(sirene_small: Path, tmp_path: Path) -> None:
    bad = tmp_path / "naf_x.yaml"
    bad.write_text("niche: x\nprofile: quick\n")
    with pytest.raises(InputError, match=r"naf_x.yaml: field 'filters'"):
        run_job(str(bad), input=str(sirene_small), output_dir=str(tmp_path / "out"))
