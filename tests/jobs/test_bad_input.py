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
    pq.write_table(t.set_column(i, pa.field("codeCommuneEtablissement", pa.float32()), pa.array([1.0] * t.num_rows, pa.float32())), src)
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
]


@pytest.mark.parametrize("command", [["jobs", "batch"], ["batch"]], ids=["jobs-batch", "batch-alias"])
@pytest.mark.parametrize(("extra", "mentions"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_up_front(command: list[str], extra: list[str], mentions: str, world: dict[str, Path], capsys) -> None:
    tmp = world["tmp"]
    special = {"@csv": lambda: _csv_without_naf(tmp), "@wrongtype": lambda: _typed_wrong(tmp),
               "@chained": lambda: _chained(world)}
    argv = {"--naf": "6920Z", "--input": str(world["sirene"]), "--output-dir": str(world["out"]), "--jobs-dir": str(tmp / "jobs")}
    rest = []
    for i in range(0, len(extra), 2):
        flag, value = extra[i], extra[i + 1]
        value = str(special[value]()) if value in special else value.replace("{tmp}", str(tmp))
        if flag in argv:
            argv[flag] = value
        else:
            rest += [flag, value]
    args = [*command, *(x for kv in argv.items() for x in kv), *rest]
    assert_refused(args, capsys, keep=[tmp], mentions=mentions)
    assert not (tmp / "out" / ".salvo").exists(), "nothing may start before the checks pass"


def _chained(world: dict[str, Path]) -> Path:
    """An input that is itself an earlier job's output: publishing naf_6920Z again would delete it."""
    dest = world["out"] / "naf_6920Z" / "dataset.parquet"
    write_synthetic_sirene(dest, rows=100, seed=4)
    return dest
