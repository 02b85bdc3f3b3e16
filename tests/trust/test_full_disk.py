"""A full disk is one line per item and no traceback (issue 22, item 9), on a real tmpfs mounted by the test.

The subjects' output folder, then an extract batch's records, on a full disk: each item fails with
``no space left on device writing <path>``, nothing half-written is left visible, no traceback is
printed; once there is space again, the same command finishes everything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from salvo.subjects.samples import make_manifest_study
from tests.helpers import PUBLIC_FIXTURES, salvo
from tests.trust.test_publish import _command


@pytest.fixture
def tiny_disk(tmp_path: Path):  # noqa: ANN201
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to its last byte; return the filler file (delete it to give the space back)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def _visible_leftovers(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.startswith((".salvo-tmp-", "_work", "_failed-"))
    )


def test_subjects_on_a_full_disk_fail_one_line_each_and_finish_once_there_is_space(
    tiny_disk: Path, tmp_path: Path, child_env: dict
) -> None:
    manifest = make_manifest_study(tmp_path / "study", subjects=2, shape=(6, 6, 4))
    out = tiny_disk / "out"
    out.mkdir()
    filler = _fill(tiny_disk)
    env = {**child_env, "SALVO_SPOOL_DIR": str(tmp_path / "spool")}
    args = ["subjects", "--manifest", str(manifest), "--out", str(out), "--json"]
    full = salvo(*args, env=env)
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr and "Traceback" not in full.stdout, full.stderr[-3000:]
    items = json.loads(full.stdout)["items"]
    assert len(items) == 2
    for item in items:
        assert item["status"] == "error", item
        assert item["reason"].startswith("no space left on device writing "), item["reason"]
        assert len(item["reason"].splitlines()) == 1
    assert _visible_leftovers(out) == []
    assert not list(out.glob("sub-*/metrics.json")), "a failed subject's outputs are visible"

    filler.unlink()  # space again: the same command finishes everything
    again = salvo(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [i["status"] for i in json.loads(again.stdout)["items"]] == ["success", "success"]
    for sub in sorted(p for p in out.iterdir() if p.name.startswith("sub-")):
        assert (sub / "metrics.json").is_file() and json.loads((sub / "_done.json").read_text())["status"] == "success"
    assert (out / "batch_metrics.csv").is_file() and (out / "batch_report.html").is_file()
    assert _visible_leftovers(out) == []


def test_an_item_writing_to_a_full_disk_fails_in_one_line_and_leaves_nothing(tiny_disk: Path, tmp_path: Path) -> None:
    from salvo.extract import plan_items
    from salvo.extract import BUILTIN_WORKER
    from salvo.runner import run_item

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(PUBLIC_FIXTURES / "dvmdostem-imnaviat" / "co2.nc", data / "co2.nc")
    (item,) = plan_items([data / "co2.nc"], directory=data, output_dir=tiny_disk / "out")
    filler = _fill(tiny_disk)
    result = run_item(item, BUILTIN_WORKER, timeout_s=300)
    assert result.status.value == "error", (result.status, result.reason, result.stderr_tail)
    assert result.reason == f"no space left on device writing {tiny_disk / 'out' / 'co2'}", result.reason
    assert not result.retryable, "a full disk stays full: the item is not tried again"
    assert "Traceback" not in result.stderr_tail
    assert _visible_leftovers(tiny_disk) == [] and not (tiny_disk / "out" / "co2").exists()

    filler.unlink()
    again = run_item(item, BUILTIN_WORKER, timeout_s=300)
    assert again.status.value == "success", (again.reason, again.stderr_tail)
    assert list((tiny_disk / "out" / "co2").glob("*.png"))
    assert _visible_leftovers(tiny_disk) == []


def test_records_on_a_full_disk_are_one_line_and_the_next_run_records_them(
    tiny_disk: Path, tmp_path: Path, child_env: dict
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("co2.nc", "run-mask.nc"):
        shutil.copy(PUBLIC_FIXTURES / "dvmdostem-imnaviat" / name, data / name)
    mode = tmp_path / "mode"
    mode.write_text("good")
    state = tiny_disk / "state"
    state.mkdir()
    filler = _fill(tiny_disk)
    env = {**child_env, "SALVO_SPOOL_DIR": str(tmp_path / "spool")}
    args = [
        "extract",
        "--directory",
        str(data),
        "--state",
        str(state),
        "--json",
        "--worker-command",
        _command("plot", mode, "{output_dir}", "{input}"),
    ]
    full = salvo(*args, env=env)
    assert "Traceback" not in full.stderr and "Traceback" not in full.stdout, full.stderr[-3000:]
    assert full.returncode == 1, full.stderr[-3000:]
    items = json.loads(full.stdout)["items"]
    assert [i["status"] for i in items] == ["error", "error"]
    for item in items:  # the item's claim cannot be taken: it does not run, and says why in one line
        assert item["reason"].startswith(f"no space left on device writing {state}"), item["reason"]
    assert not list(data.glob("*_results")), "an item ran without its claim"

    filler.unlink()
    again = salvo(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    doc = json.loads(again.stdout)
    assert {i["status"] for i in doc["items"]} == {"success"}
    assert len(list(state.glob("records/*"))) >= 2, "the records were written once there was space"
    final = salvo(*args, env=env)
    assert final.returncode == 0 and all(i["cached"] for i in json.loads(final.stdout)["items"])


def test_an_extract_output_folder_on_a_full_disk_is_one_line_each_and_finishes_with_space(
    tiny_disk: Path, tmp_path: Path, child_env: dict
) -> None:
    """The folder the inputs, plots, reports and batch_resume.txt live in is full: each item fails in
    one line, the batch still ends with its JSON (batch_resume.txt and the reports are skipped with
    a warning line, never a traceback), and with space again the same command finishes."""
    data = tiny_disk / "data"
    data.mkdir()
    shutil.copy(PUBLIC_FIXTURES / "dvmdostem-imnaviat" / "run-mask.nc", data / "run-mask.nc")
    mode = tmp_path / "mode"
    mode.write_text("good")
    filler = _fill(tiny_disk)
    env = {**child_env, "SALVO_SPOOL_DIR": str(tmp_path / "spool")}
    args = [
        "extract",
        "--directory",
        str(data),
        "--state",
        str(tmp_path / "state"),
        "--json",
        "--worker-command",
        _command("plot", mode, "{output_dir}", "{input}"),
    ]
    full = salvo(*args, env=env)
    assert "Traceback" not in full.stderr and "Traceback" not in full.stdout, full.stderr[-3000:]
    assert full.returncode == 1, full.stderr[-3000:]
    (item,) = json.loads(full.stdout)["items"]
    # The user's command itself fails to write its plot (its own exit code; its log cannot be written either).
    assert item["status"] == "error" and len(item["reason"].splitlines()) == 1, item
    assert _visible_leftovers(data) == [] and not (data / "run-mask_results").exists()

    filler.unlink()
    again = salvo(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [i["status"] for i in json.loads(again.stdout)["items"]] == ["success"]
    assert (data / "run-mask_results").is_dir() and (data / "batch_resume.txt").read_text().split() == ["run-mask.nc"]
