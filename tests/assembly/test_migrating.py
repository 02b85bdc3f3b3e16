"""Issue 16 (seed 001 habits): docs/migrating/assembly.md runs as written, SAVE_RESULT_PATH on
S3, no file left by sequential_reassembly, a resume hint that works as printed, an ambiguity
error whose advice works; and issue 11's layering of the assembly modules."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from salvo.assembly.ledger import read_ledger
from salvo.storage import open_storage
from tests.helpers import child_env_for, salvo

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "migrating" / "assembly.md"
FOLDER = "01_v1_batch-parameter-distortion"


def doc_blocks() -> list[tuple[str, str]]:
    """Every fenced code block of the migration guide: (language, code), in order."""
    return re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), flags=re.S)


def test_migration_guide_examples_run_as_written(tmp_path, prefect_api, s3_bucket, s3_endpoint):
    blocks = doc_blocks()
    assert [lang for lang, _ in blocks].count("python") >= 3 and len(blocks) >= 7
    work = tmp_path / "work"
    work.mkdir()
    env = child_env_for(prefect_api)
    env.update(PYTHONPATH=f"{work}{os.pathsep}{ROOT}", AWS_ENDPOINT_URL=s3_endpoint)
    for var in ("SALVO_STORAGE", "SAVE_RESULT_PATH", "SALVO_LOCAL_STORAGE", "SALVO_S3_STORAGE"):
        env.pop(var, None)
    outputs = []
    for lang, code in blocks:
        code = code.replace("lab-bucket", s3_bucket)
        if lang == "python" and code.startswith("# scripts/batch_framework.py"):
            (work / "scripts").mkdir(exist_ok=True)
            (work / "scripts" / "batch_framework.py").write_text(code)
            assert len([line for line in code.splitlines() if line.strip()]) == 2
            continue
        argv = ["bash", "-e", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{lang} block failed:\n{code}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
        for name, value in re.findall(r"^export (\w+)=(.*)$", code, flags=re.M):
            env[name] = value.strip('"').replace("$PWD", str(work))  # carried to later blocks
    text = "\n".join(outputs)
    # Two local runs of 2 samples x 5 factors x 1 rep, re-assembled by the seed's own code.
    assert "Combined data: (20," in text and "Completed: 2" in text and "\ncompleted\n" in text
    # On S3 the data landed under SAVE_RESULT_PATH, as in the seed.
    assert f"s3://{s3_bucket}/results/{FOLDER}" in text and "Combined data: (10," in text
    s3_exp = open_storage(f"s3://{s3_bucket}/results", endpoint_url=s3_endpoint).child(FOLDER)
    assert [r.status for r in read_ledger(s3_exp)] == ["completed"]
    # sequential_reassembly left nothing in the experiment folders.
    local = work / "results" / FOLDER
    assert not list(local.glob("*_reassembled.parquet"))
    assert not [n for n in s3_exp.list("") if n.endswith("_reassembled.parquet")]
    assert (work / "seed-42.parquet").exists() and (work / "v1.parquet").exists()


def test_resume_hint_works_as_printed(tmp_path, child_env):
    store, flag = tmp_path / "my store", tmp_path / "fail-now"
    flag.touch()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"fail_flag: {flag}\nfail_sample: 1\n")
    first = salvo(
        "assembly",
        "run",
        "tests.assembly.helpers:seeded_generator",
        "--storage",
        str(store),
        "--samples",
        "3",
        "--chunk-size",
        "1",
        "--config",
        str(cfg),
        "--retries",
        "0",
        env=child_env,
        cwd=ROOT,
    )
    assert first.returncode == 1, first.stderr[-2000:]
    [hint] = [line for line in first.stdout.splitlines() if line.startswith("Resume it with: ")]
    argv = shlex.split(hint.removeprefix("Resume it with: "))
    assert argv[:3] == ["salvo", "assembly", "run"] and "--storage" in argv and "--samples" in argv
    flag.unlink()
    second = salvo(*argv[1:], env=child_env, cwd=tmp_path)  # as printed, from another folder
    assert second.returncode == 0, second.stderr[-2000:]
    exp = open_storage(str(store)).child("01_v1_batch-seeded-generator")
    [row] = read_ledger(exp)
    assert row.status == "completed" and row.assembly_id == argv[-1] and row.n_rows == 3


def test_ambiguity_error_suggests_flags_that_work(tmp_path, child_env):
    store = tmp_path / "store"
    for version in ("v1", "v2"):
        made = salvo(
            "assembly",
            "run",
            "tests.assembly.helpers:tiny_generator",
            "--storage",
            str(store),
            "--samples",
            "2",
            "--version",
            version,
            env=child_env,
            cwd=ROOT,
        )
        assert made.returncode == 0, made.stderr[-2000:]
    refused = salvo(
        "assembly", "reassemble", "tiny_generator_results", "--storage", str(store), env=child_env, cwd=ROOT
    )
    assert refused.returncode == 2
    err = refused.stderr.strip()
    assert len(err.splitlines()) == 1 and "several experiments" in err
    flags = shlex.split(err.split("e.g. ", 1)[1])
    assert flags[:2] == ["--exp-number", "01"] and "--title" in flags  # never --version alone
    done = salvo(
        "assembly",
        "reassemble",
        "tiny_generator_results",
        "--storage",
        str(store),
        *flags,
        "--json",
        env=child_env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"n_included": 1' in done.stdout


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.pure
def test_assembly_layers_do_not_leak():
    tasks = _imports(ROOT / "tasks" / "assembly.py")
    assert not [m for m in tasks if m == "flows" or m.startswith("flows.")]
    source = (ROOT / "tasks" / "assembly.py").read_text()
    assert "SALVO_STORAGE" not in source and "os.environ" not in source
    assert (
        "blocks.storage" in _imports(ROOT / "cli" / "assembly.py")
        or "blocks.storage" in (ROOT / "cli" / "assembly.py").read_text()
    )
    assert "tasks.assembly" not in (ROOT / "cli" / "assembly.py").read_text()
    for path in (ROOT / "salvo_compat" / "batch_framework.py",):
        tree = ast.parse(path.read_text())
        private = [
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
        ]
        assert private == [], f"{path.name} reads private attributes {private}"
