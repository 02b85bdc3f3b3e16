"""Bad input to `salvo jobs batch` / `salvo batch`: one line, exit 2, before Prefect, nothing changed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from salvo.jobs.synth import write_synthetic_sirene
from tests.badinput import assert_refused

pytestmark = pytest.mark.pure


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """An input, an earlier run's outputs and job files, a FIFO and a plain file: all must survive."""
    sirene = write_synthetic_sirene(tmp_path / "sirene.parquet", rows=300, seed=4)
    out = tmp_path / "out"
    (out / "naf_6920Z" / "logs").mkdir(parents=True)
    (out / "naf_6920Z" / "dataset.csv").write_text("siret\n123\n")
    (out / "naf_6920Z" / "logs" / "build.json").write_text('{"rows": 1}')
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "naf_6920Z.yaml").write_text("niche: naf_6920Z\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "folder").mkdir()
    return {"tmp": tmp_path, "sirene": sirene, "out": out}


def _typed_wrong(tmp: Path) -> Path:
    src = write_synthetic_sirene(tmp / "wrong.parquet", rows=100, seed=4)
    t = pq.read_table(src)
    i = t.schema.get_field_index("codeCommuneEtablissement")
    pq.write_table(
        t.set_column(i, pa.field("codeCommuneEtablissement", pa.float32()), pa.array([1.0] * t.num_rows, pa.float32())),
        src,
    )
    return src


def _csv_without_naf(tmp: Path) -> Path:
    p = tmp / "other.csv"
    p.write_text("siren,nic\n123456789,00012\n")
    return p


# (id, extra argv, what the one line must mention); {tmp} and {sirene} are filled per test.
CASES = [
    ("input-folder", ["--input", "{tmp}/folder"], "is a folder"),
    ("input-fifo", ["--input", "{tmp}/fifo"], "not a regular file"),
    ("input-missing", ["--input", "{tmp}/nope.parquet"], "no such file"),
    ("input-not-parquet", ["--input", "{tmp}/file.txt"], "not a Parquet file"),
    ("input-csv-not-sirene", ["--input", "@csv"], "'activitePrincipaleEtablissement' is missing"),
    ("input-column-type", ["--input", "@wrongtype", "--profile", "deep"], "'codeCommuneEtablissement' is float"),
    ("template-folder", ["--template", "{tmp}/folder"], "--template is a folder"),
    ("template-fifo", ["--template", "{tmp}/fifo"], "--template is not a regular file"),
    ("command-unbalanced-quote", ["--job-command", "python 'build.py {job_file}"], "--job-command cannot be parsed"),
    ("command-spaces", ["--job-command", "   "], "--job-command is empty"),
    ("command-missing-program", ["--job-command", "no-such-builder-xyz {job_file}"], "program not found"),
    ("command-unknown-placeholder", ["--job-command", f"{sys.executable} b.py {{job}}"], "unknown placeholder {job}"),
    ("sample-nan", ["--sample", "nan"], "--sample"),
    ("sample-inf", ["--sample", "inf"], "--sample"),
    ("sample-negative", ["--sample", "-5"], "--sample"),
    ("sample-zero", ["--sample", "0"], "--sample"),
    ("ram-1e308", ["--max-ram-mb", "1e308"], "--max-ram-mb"),
    ("ram-below-minimum", ["--max-ram-mb", "64"], "--max-ram-mb 64 is too small"),
    ("ram-huge", ["--max-ram-mb", str(1 << 40)], "--max-ram-mb must be <="),
    ("workers-zero", ["--workers", "0"], "--workers"),
    ("workers-huge", ["--workers", "100000"], "--workers must be <="),
    ("retries-nan", ["--retries", "nan"], "--retries"),
    ("timeout-word", ["--timeout", "soon"], "--timeout"),
    ("timeout-zero", ["--timeout", "0"], "--timeout"),
    ("timeout-inf", ["--timeout", "inf"], "--timeout"),
    ("output-dir-is-a-file", ["--output-dir", "{tmp}/file.txt"], "--output-dir is a file"),
    ("jobs-dir-is-a-file", ["--jobs-dir", "{tmp}/file.txt"], "--jobs-dir is a file"),
    ("output-would-replace-input", ["--input", "@chained", "--output-dir", "{tmp}/out"], "the input"),
    ("bad-naf", ["--naf", "69.2Z"], "malformed NAF code"),
    ("naf-subclass-that-does-not-exist", ["--naf", "6902Z"], "69.02Z does not exist in NAF rév. 2; nearest: 69.20Z"),
    ("naf-division-that-does-not-exist", ["--naf", "40"], "division 40 does not exist in NAF rév. 2; nearest: 39 "),
    ("naf-section", ["--naf", "F"], "give its divisions instead: 41, 42, 43"),
    ("output-dir-s3-lookalike", ["--output-dir", "s3//lab/salvo"], "misspelled"),
    ("output-dir-url", ["--output-dir", "s3://lab/salvo"], "--output-dir takes a folder path, not a URL"),
    ("jobs-dir-file-url-relative", ["--jobs-dir", "file:data/x"], "a file: URL holds an absolute path"),
]


@pytest.mark.parametrize("command", [["jobs", "batch"], ["batch"]], ids=["jobs-batch", "batch-alias"])
@pytest.mark.parametrize(("extra", "mentions"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_up_front(
    command: list[str], extra: list[str], mentions: str, world: dict[str, Path], capsys, monkeypatch
) -> None:
    monkeypatch.chdir(world["tmp"])
    tmp = world["tmp"]
    special = {
        "@csv": lambda: _csv_without_naf(tmp),
        "@wrongtype": lambda: _typed_wrong(tmp),
        "@chained": lambda: _chained(world),
    }
    argv = {
        "--naf": "6920Z",
        "--input": str(world["sirene"]),
        "--output-dir": str(world["out"]),
        "--jobs-dir": str(tmp / "jobs"),
    }
    rest = []
    for i in range(0, len(extra), 2):
        flag, value = extra[i], extra[i + 1]
        value = str(special[value]()) if value in special else value.replace("{tmp}", str(tmp))
        if flag in argv:
            argv[flag] = value
        else:
            rest += [flag, value]
    args = [*command, *(x for kv in argv.items() for x in kv), *rest]
    assert_refused(args, capsys, keep=[tmp], mentions=mentions)  # tmp is also the working folder
    assert not (tmp / "out" / ".salvo").exists(), "nothing may start before the checks pass"


def _chained(world: dict[str, Path]) -> Path:
    """An input that is itself an earlier job's output: publishing naf_6920Z again would delete it."""
    dest = world["out"] / "naf_6920Z" / "dataset.parquet"
    write_synthetic_sirene(dest, rows=100, seed=4)
    return dest


def test_yaml_job_with_a_naf_code_that_does_not_exist_is_refused_at_planning(world: dict[str, Path], capsys) -> None:
    tmp = world["tmp"]
    template = tmp / "template.yaml"
    template.write_text(
        'niche: "{niche_name}"\nprofile: "{profile}"\nfilters:\n  naf_include: ["{naf_code}", "6902Z"]\n'
    )
    err = assert_refused(
        [
            "jobs",
            "batch",
            "--naf",
            "6920Z",
            "--input",
            str(world["sirene"]),
            "--output-dir",
            str(world["out"]),
            "--jobs-dir",
            str(tmp / "jobs"),
            "--template",
            str(template),
        ],
        capsys,
        keep=[tmp],
        mentions="filters.naf_include[1]",
    )
    assert "69.02Z does not exist in NAF rév. 2; nearest: 69.20Z" in err


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_jobs_create_onto_an_existing_file_is_refused_and_leaves_it(batch: bool, tmp_path: Path, capsys) -> None:
    target = tmp_path / "jobs.txt"
    target.write_text("keep me\n")
    argv = ["jobs", "create", str(target), "--naf", "6920Z"] + (["--batch"] if batch else [])
    assert_refused(argv, capsys, keep=[tmp_path], mentions="OUTPUT is a file, not a folder")
    assert target.read_text() == "keep me\n"


def test_jobs_create_with_a_naf_code_that_does_not_exist_writes_nothing(tmp_path: Path, capsys) -> None:
    assert_refused(
        ["jobs", "create", str(tmp_path / "jobs"), "--naf", "6920Z", "--naf", "40", "--batch"],
        capsys,
        keep=[tmp_path],
        mentions="division 40 does not exist",
    )
    assert not (tmp_path / "jobs").exists()
