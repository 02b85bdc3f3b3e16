"""docs/migrating/job-batch.md: every `salvo` command in its shell blocks, and its Python block, run
as written (in a folder holding `data/sirene_latest.parquet`, synthetic), and do what the page says.

Each runs as a real `salvo` child process against the tests' Prefect API, as a user would run it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from salvo.jobs.synth import write_synthetic_sirene
from tests.helpers import salvo

PAGE = Path(__file__).resolve().parents[2] / "docs" / "migrating" / "job-batch.md"

MY_BUILDER = """
import sys
from pathlib import Path

job_file, _, input_path, _, output_dir = sys.argv[1:6]
niche = next(line.split(":", 1)[1].strip().strip('"') for line in open(job_file) if line.startswith("niche:"))
folder = Path(output_dir) / niche
folder.mkdir(parents=True, exist_ok=True)
(folder / "dataset.csv").write_text("built by my_builder from " + input_path + "\\n")
"""


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def page_commands() -> list[str]:
    """Every `salvo ...` command of the page's bash blocks, continuation lines joined."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("salvo "):
                commands.append(" ".join(line.split()))
    return commands


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_synthetic_sirene(tmp_path / "data" / "sirene_latest.parquet", rows=4_000, seed=9, row_group_rows=1_000)
    (tmp_path / "my_template.yaml").write_text(_blocks("yaml")[0])
    (tmp_path / "my_builder.py").write_text(MY_BUILDER)
    return tmp_path


def test_the_page_has_the_seed_commands() -> None:
    commands = page_commands()
    assert len(commands) >= 8
    for flag in ("--dry-run", "--continue-on-error", "--json", "--template", "--job-command", "--profile quick"):
        assert any(flag in c for c in commands), flag
    assert any(c.startswith("salvo jobs create") and "--batch" in c for c in commands)


@pytest.mark.parametrize("command", page_commands())
def test_every_command_on_the_page_runs(command: str, workdir: Path, child_env: dict[str, str]) -> None:
    argv = shlex.split(command)[1:]
    proc = salvo(*argv, env=child_env, cwd=workdir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    if "--json" in argv:
        doc = json.loads(out)
        assert [e["status"] for e in doc["jobs"]] == ["success", "success"]
    if "jobs" == argv[0] and argv[1] == "create":
        target = workdir / argv[2]
        assert (target / "naf_6920Z.yaml").is_file() if "--batch" in argv else target.is_file()
        return
    output = workdir / argv[argv.index("--output-dir") + 1]
    codes = [argv[i + 1] for i, a in enumerate(argv) if a == "--naf"]
    if "--dry-run" in argv:
        assert not output.exists()
        assert all((workdir / "jobs_generated" / f"naf_{c}.yaml").is_file() for c in codes)
        return
    for code in codes:
        assert (output / f"naf_{code}" / "dataset.csv").is_file(), code
    if "--job-command" in argv:
        assert (output / "naf_6920Z" / "dataset.csv").read_text().startswith("built by my_builder")
    assert not [p for p in output.iterdir() if p.name.startswith(".salvo-tmp-")]


def test_the_python_example_runs(workdir: Path, child_env: dict[str, str]) -> None:
    (code,) = _blocks("python")
    script = code + "\nimport json\nprint(json.dumps([e['status'] for e in summary['jobs']]))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=child_env, cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["success", "success"]
    assert (workdir / "out" / "batch_results" / "naf_4329A" / "dataset.parquet").is_file()
