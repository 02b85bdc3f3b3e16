"""A result is published only once it checks (issue 22, item 1): real `salvo` commands, real files.

Each pipeline's re-run whose command exits 0 but writes only a log leaves the earlier good result
byte for byte as it was, and the item is a ``silent_failure`` naming what was missing.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

from salvo.subjects.samples import make_manifest_study
from tests.badinput import snapshot
from tests.helpers import PUBLIC_FIXTURES, salvo

WORKERS = Path(__file__).with_name("workers.py")


def _command(kind: str, mode_file: Path, out: str, *extra: str) -> str:
    return " ".join(
        [shlex.quote(sys.executable), shlex.quote(str(WORKERS)), kind, shlex.quote(str(mode_file)), out, *extra]
    )


def co2_extract(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """The public co2.nc (dvmdostem's Imnaviat inputs) alone in ``data/``, a mode file saying "good", and the
    `salvo extract` arguments that plot it with the test worker: ``(data, mode, args)``."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(PUBLIC_FIXTURES / "dvmdostem-imnaviat" / "co2.nc", data / "co2.nc")
    mode = tmp_path / "mode"
    mode.write_text("good")
    args = [
        "extract",
        "--directory",
        str(data),
        "--worker-command",
        _command("plot", mode, "{output_dir}", "{input}"),
        "--json",
    ]
    return data, mode, args


def _tmp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".salvo-tmp-*"))


def test_extract_rerun_writing_only_a_log_keeps_the_good_plot(tmp_path: Path, child_env: dict) -> None:
    data, mode, args = co2_extract(tmp_path)
    first = salvo(*args, env=child_env)
    assert first.returncode == 0, first.stderr[-2000:]
    good = data / "co2_results"
    assert (good / "plot.png").stat().st_size > 0
    before = snapshot([good])

    mode.write_text("log")  # the same command again, forced: exit 0, only log.txt
    again = salvo(*args, "--force", env=child_env)
    assert again.returncode == 1, again.stderr[-2000:]
    assert snapshot([good]) == before, "a re-run that wrote only a log replaced the good plot"
    item = json.loads(again.stdout)["items"][0]
    assert item["status"] == "silent_failure"
    assert "image" in item["reason"] and "log.txt" in item["reason"] and str(good) in item["reason"], item["reason"]
    assert ".salvo-tmp-" not in item["reason"], "the reason names the final folder, not the staging one"
    assert (tmp_path / "mode.runs").read_text().count("plot log") == 1, "the re-run really ran"
    assert not _tmp_leftovers(data)


def test_jobs_rerun_writing_only_a_log_keeps_the_good_dataset(
    sirene_for_trust: Path, tmp_path: Path, child_env: dict
) -> None:
    mode = tmp_path / "mode"
    mode.write_text("good")
    out = tmp_path / "out"
    args = [
        "jobs",
        "batch",
        "--naf",
        "6920Z",
        "--input",
        str(sirene_for_trust),
        "--output-dir",
        str(out),
        "--jobs-dir",
        str(tmp_path / "jobs"),
        "--json",
        "--job-command",
        _command("job", mode, "{job_output_dir}"),
    ]
    first = salvo(*args, env=child_env)
    assert first.returncode == 0, first.stderr[-2000:]
    good = out / "naf_6920Z"
    assert (good / "dataset.csv").is_file()
    before = snapshot([good])

    mode.write_text("log")
    again = salvo(*args, "--force", env=child_env)
    assert again.returncode == 1, again.stderr[-2000:]
    entry = json.loads(again.stdout)["jobs"][0]
    assert entry["status"] == "silent_failure", entry
    assert "no dataset file" in entry["error"] and "build.log" in entry["error"], entry["error"]
    assert snapshot([good]) == before, "a re-run that wrote only a log replaced the good dataset"
    assert not _tmp_leftovers(out)


def test_subject_rerun_writing_only_a_log_keeps_the_good_subject(tmp_path: Path, child_env: dict) -> None:
    manifest = make_manifest_study(tmp_path / "study", subjects=1, shape=(4, 4, 3))
    mode = tmp_path / "mode"
    mode.write_text("good")
    out = tmp_path / "out"
    args = [
        "subjects",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--json",
        "--pipeline-command",
        _command("subject", mode, "{work_dir}"),
    ]
    first = salvo(*args, env=child_env)
    assert first.returncode == 0, first.stderr[-2000:]
    subject = next(p for p in out.iterdir() if p.name.startswith("sub-"))
    published = [subject / "result.txt", subject / "metrics.json", subject / "log.txt", subject / "_done.json"]
    before = snapshot(published)
    assert "<absent>" not in before.values()

    mode.write_text("log")
    again = salvo(*args, "--force", env=child_env)
    assert again.returncode == 1, again.stderr[-2000:]
    item = json.loads(again.stdout)["items"][0]
    assert item["status"] == "silent_failure", item
    assert "no result file" in item["reason"] and "log.txt" in item["reason"], item["reason"]
    assert snapshot(published) == before, "a re-run that wrote only a log replaced the subject's outputs"
    assert json.loads((subject / "_done.json").read_text())["status"] == "success"
    assert not _tmp_leftovers(out)
