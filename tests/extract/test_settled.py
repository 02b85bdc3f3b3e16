"""A fully resumed `salvo extract` is answered from the records alone (salvo.spine.extract_settled), directly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from salvo.spine.extract_settled import already_done, plan_for
from salvo.spine.settled import split_finished
from salvo.index import flush_all
from salvo.outcome import ItemResult, Status
from salvo.spine.records import record_store, write_record

pytestmark = pytest.mark.pure

WORKER = "python3 -c pass {input} {output_dir}"
PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 16


def _finished_batch(tmp_path: Path, n: int = 3) -> Path:
    """Inputs, outputs and records of a batch an earlier run finished (the records as a batch writes them)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        (src / f"f{i}.nc").write_text(f"input {i}\n")
    plan, worker, options = plan_for(str(src), "*.nc", None, False, WORKER, None)
    _, pending = split_finished(plan.items, worker, options=options)
    store = record_store(options.state)
    for it, key in pending:
        Path(it.outputs[0]).mkdir(parents=True)
        (Path(it.outputs[0]) / "plot.png").write_bytes(PNG)
        write_record(store, key, ItemResult(it.id, Status.SUCCESS, outputs=[it.outputs[0]], duration_s=0.01))
    flush_all()
    return src


def test_a_finished_batch_is_answered_with_every_report_written(tmp_path: Path) -> None:
    src = _finished_batch(tmp_path)
    doc = already_done(directory=str(src), worker_command=WORKER)
    assert doc is not None
    assert doc["summary"]["total"] == doc["summary"]["resumed"] == 3 and doc["summary"]["counts"] == {"success": 3}
    assert [i["item_id"] for i in doc["items"]] == ["f0.nc", "f1.nc", "f2.nc"] and all(
        i["cached"] for i in doc["items"]
    )
    assert set(doc["reports"]) == {"text", "json", "trace", "html", "resume"}
    assert all(os.path.isfile(p) for p in doc["reports"].values())
    assert json.loads(Path(doc["reports"]["json"]).read_text())["items"] == doc["items"]
    assert Path(doc["reports"]["resume"]).read_text() == "f0.nc\nf1.nc\nf2.nc\n"
    assert "f2.nc" in Path(doc["reports"]["html"]).read_text() and "f2.nc" in Path(doc["reports"]["text"]).read_text()


@pytest.mark.parametrize("lost", ["folder", "link to it"])
def test_a_finished_item_whose_output_is_gone_runs_again(tmp_path: Path, lost: str) -> None:
    src = _finished_batch(tmp_path)
    out = src / "f1_results"
    shutil.rmtree(out)
    if lost == "link to it":
        out.symlink_to(tmp_path / "nowhere")  # a dangling link is no output either
    assert already_done(directory=str(src), worker_command=WORKER) is None


def test_the_answer_imports_neither_prefect_nor_the_plotting_stack(tmp_path: Path) -> None:
    src = _finished_batch(tmp_path)
    code = (
        "import sys\nfrom salvo.spine.extract_settled import already_done\n"
        f"assert already_done(directory={str(src)!r}, worker_command={WORKER!r}) is not None\n"
        "print(sorted(m for m in ('prefect', 'numpy', 'matplotlib', 'xarray') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
