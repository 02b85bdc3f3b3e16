"""A seed-era `extract_results.py` runs unchanged (issue 29), the seed's skip convention (issue 22.6),
and batch_resume.txt kept current per file, names with line breaks refused (issue 22.10).

The worker is run as the seed ran it, `python extract_results.py FILE` from the working folder, and
writes `<stem>/` there; Salvo stages that folder, checks it, publishes it, records and resumes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from salvo.errors import UsageError
from salvo.extract import plan_batch
from salvo.extract.seed_layout import detect
from tests.extract.seed_workers import STDLIB
from tests.helpers import alive, markers, salvo, wait_until

PNG = b"\x89PNG\r\n\x1a\n"


def _seed_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A working folder as the seed's users have it: their worker, and data/ with four files."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "extract_results.py").write_text(STDLIB)
    (work / "data" / "exp_S3_good.nc").write_bytes(b"GOOD exp_S3_good")
    (work / "data" / "exp_S3_single.nc").write_bytes(b"ONESTEP")
    (work / "data" / "exp_S3_corrupt.nc").write_bytes(b"\x00\x01 truncated")
    (work / "data" / "exp_S3_empty.nc").write_bytes(b"NOPLOTS")
    return work, tmp_path / "calls"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _items(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {i["item_id"]: i for i in json.loads(proc.stdout)["items"]}


def test_a_seed_worker_runs_unchanged_staged_checked_and_resumed(tmp_path: Path, child_env: dict) -> None:
    work, calls = _seed_folder(tmp_path)
    env = {**child_env, "CALLS": str(calls)}
    proc = salvo("extract", "--directory", "data", "--seed-layout", "--retries", "0", "--json", env=env, cwd=work)
    assert proc.returncode == 1, proc.stderr
    items = _items(proc)
    assert {k: v["status"] for k, v in items.items()} == {
        "exp_S3_good.nc": "success",
        "exp_S3_single.nc": "skipped",
        "exp_S3_corrupt.nc": "error",
        "exp_S3_empty.nc": "silent_failure",
    }
    assert items["exp_S3_single.nc"]["reason"] == "data/exp_S3_single.nc has only one time step. Skipping."
    assert "exp_S3_empty/ holds no valid PNG" in items["exp_S3_empty.nc"]["reason"]
    assert "not a NetCDF file" in items["exp_S3_corrupt.nc"]["reason"]
    # The plots are in <stem>/ of the working folder, sub-folders included, as the worker wrote them.
    assert sorted(_tree(work / "exp_S3_good")) == ["log.txt", "maps/GPP.png", "summary.png"]
    assert not (work / "exp_S3_empty").exists() and not (work / "exp_S3_single").exists()  # nothing unchecked published
    # The worker ran as the seed ran it (the path as globbed), in a staging working folder, not in the real one.
    ran_in, existed = markers(calls, "exp_S3_good.nc")[0].read_text().split("\n")[:2]
    assert Path(ran_in).parent.parent.name == ".salvo-seed-staging" and Path(ran_in).resolve() != work.resolve()
    assert existed == "False"
    assert not list((work / ".salvo-seed-staging").glob("*/*")) and not list(work.glob(".salvo-tmp*"))
    # batch_resume.txt: in the working folder, the finished files as the seed's glob spelled them.
    assert (work / "batch_resume.txt").read_text().splitlines() == ["data/exp_S3_good.nc", "data/exp_S3_single.nc"]
    assert (work / "batch_processing_summary.txt").is_file()
    good = _tree(work / "exp_S3_good")

    # Resumed: the good and the skipped files are not run again; the failed ones are.
    again = salvo("extract", "--directory", "data", "--seed-layout", "--retries", "0", "--json", env=env, cwd=work)
    assert again.returncode == 1, again.stderr
    items = _items(again)
    assert items["exp_S3_good.nc"]["cached"] and items["exp_S3_single.nc"]["cached"]
    assert len(markers(calls, "exp_S3_good.nc")) == 1 and len(markers(calls, "exp_S3_single.nc")) == 1
    assert len(markers(calls, "exp_S3_empty.nc")) == 2
    assert _tree(work / "exp_S3_good") == good

    # --force, and this time the worker exits 0 without a PNG: the earlier <stem>/ stays byte for byte.
    forced = salvo(
        "extract",
        "--directory",
        "data",
        "--seed-layout",
        "--force",
        "--pattern",
        "*good*",
        "--json",
        env={**env, "NO_PLOTS": "1"},
        cwd=work,
    )
    assert forced.returncode == 1, forced.stderr
    item = _items(forced)["exp_S3_good.nc"]
    assert item["status"] == "silent_failure" and "the earlier one is kept" in item["reason"]
    assert _tree(work / "exp_S3_good") == good
    # ... and the re-run saw no <stem>/ in its working folder: it wrote into a staging one.
    assert {m.read_text().split("\n")[1] for m in markers(calls, "exp_S3_good.nc")} == {"False"}


def test_the_seed_layout_is_detected_and_said_in_one_line(tmp_path: Path, child_env: dict) -> None:
    work, calls = _seed_folder(tmp_path)
    # What a seed run left: plots for the good file and its resume list (it failed on others, so kept it).
    (work / "exp_S3_good" / "maps").mkdir(parents=True)
    (work / "exp_S3_good" / "maps" / "GPP.png").write_bytes(PNG + b"drawn by the seed")
    (work / "batch_resume.txt").write_text("data/exp_S3_good.nc\n")
    proc = salvo("extract", "--directory", "data", "--resume", env={**child_env, "CALLS": str(calls)}, cwd=work)
    assert proc.returncode == 1, proc.stderr
    said = [line for line in proc.stdout.splitlines() if line.startswith("Seed layout")]
    assert len(said) == 1 and "batch_resume.txt and exp_S3_good/" in said[0], proc.stdout
    assert not markers(calls, "exp_S3_good.nc")  # imported from the seed's list: its plots exist
    assert (work / "exp_S3_good" / "maps" / "GPP.png").read_bytes() == PNG + b"drawn by the seed"
    assert markers(calls, "exp_S3_single.nc")
    assert not list((work / "data").glob("*_results"))  # not Salvo's own layout

    # Detected again by a later run, from the state Salvo kept, and --skip-existing looks in <stem>/.
    (work / "batch_resume.txt").unlink()
    proc = salvo("extract", "--directory", "data", env={**child_env, "CALLS": str(calls)}, cwd=work)
    assert [line for line in proc.stdout.splitlines() if line.startswith("Seed layout (an earlier run used it here")], (
        proc.stdout
    )
    assert "exp_S3_good.nc success (cached)" in proc.stdout or "Resumed from earlier runs: 2" in proc.stdout, (
        proc.stdout
    )
    assert not markers(calls, "exp_S3_good.nc") and not list((work / "data").glob("*_results"))


def test_skip_existing_looks_where_the_seed_looked(tmp_path: Path, child_env: dict) -> None:
    work, calls = _seed_folder(tmp_path)
    (work / "exp_S3_good" / "deep" / "er").mkdir(parents=True)
    (work / "exp_S3_good" / "deep" / "er" / "old.png").write_bytes(PNG + b"old")  # a sub-folder's PNG counts
    (work / "exp_S3_empty").mkdir()
    (work / "exp_S3_empty" / "notes.txt").write_text("no plot")  # a folder without a PNG does not
    proc = salvo(
        "extract",
        "--directory",
        "data",
        "--seed-layout",
        "--skip-existing",
        "--json",
        env={**child_env, "CALLS": str(calls)},
        cwd=work,
    )
    items = _items(proc)
    assert (
        items["exp_S3_good.nc"]["status"] == "skipped"
        and items["exp_S3_good.nc"]["reason"] == "output exists (--skip-existing)"
    )
    assert not markers(calls, "exp_S3_good.nc") and markers(calls, "exp_S3_empty.nc")


def test_batch_resume_lists_every_finished_file_after_kill_9(tmp_path: Path, child_env: dict) -> None:
    work, calls = tmp_path / "work", tmp_path / "calls"
    (work / "data").mkdir(parents=True)
    (work / "extract_results.py").write_text(STDLIB)
    for i in range(14):
        (work / "data" / f"f{i:02d}.nc").write_bytes(b"GOOD")
    env = {**child_env, "CALLS": str(calls), "HANG_ON": "f12.nc"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "extract", "--directory", "data", "--seed-layout", "--workers", "1"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: bool(markers(calls, "f12.nc")), timeout=180), "the 13th file never started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    hung = int(markers(calls, "f12.nc")[0].suffix[1:])
    assert wait_until(lambda: not alive(hung), timeout=10)  # the orchestrator's death took the worker with it
    finished = sorted(p.name for p in work.glob("f*") if p.is_dir())
    assert finished == [f"f{i:02d}" for i in range(12)]
    assert sorted((work / "batch_resume.txt").read_text().splitlines()) == [f"data/f{i:02d}.nc" for i in range(12)]


@pytest.mark.pure
def test_a_name_with_a_line_break_is_refused_at_planning(tmp_path: Path) -> None:
    (tmp_path / "a.nc").write_bytes(b"x")
    (tmp_path / "b\nc.nc").write_bytes(b"x")
    with pytest.raises(UsageError, match="line break.*batch_resume.txt"):
        plan_batch(str(tmp_path))
    (tmp_path / "b\nc.nc").rename(tmp_path / "b\u2028c.nc")  # splitlines() breaks there too
    with pytest.raises(UsageError, match="line break"):
        plan_batch(str(tmp_path))


@pytest.mark.pure
def test_detection_needs_the_script_and_a_stem_folder_with_plots(tmp_path: Path) -> None:
    (tmp_path / "batch_resume.txt").write_text("./a.nc\n")
    (tmp_path / "a").mkdir()
    assert detect(tmp_path, ["a.nc"]) is None  # no extract_results.py
    (tmp_path / "extract_results.py").write_text(STDLIB)
    assert detect(tmp_path, ["a.nc"]) is None  # a/ holds no plot
    (tmp_path / "a" / "x.png").write_bytes(PNG + b"x")
    assert detect(tmp_path, ["b.nc"]) is None  # not an input's stem
    assert detect(tmp_path, ["a.nc"]) == f"batch_resume.txt and a/ with plots in {tmp_path}"
    (tmp_path / "a.nc").write_bytes(b"GOOD")
    assert plan_batch(str(tmp_path), cwd=str(tmp_path), seed_layout=None).seed_layout
    assert (
        plan_batch(str(tmp_path), cwd=str(tmp_path), seed_layout=None, output_dir=str(tmp_path / "o")).seed_layout
        is None
    )


@pytest.mark.pure
@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(worker_command="python3 x.py {input} {output_dir}"), "--worker-command does not apply"),
        (dict(recursive=True), "--recursive does not apply"),
        (dict(dpi=80), "--dpi does not apply"),
    ],
)
def test_seed_layout_refuses_salvos_own_layout_flags(tmp_path: Path, flags: dict, message: str) -> None:
    (tmp_path / "extract_results.py").write_text(STDLIB)
    (tmp_path / "a.nc").write_bytes(b"GOOD")
    with pytest.raises(UsageError, match=message):
        plan_batch(str(tmp_path), cwd=str(tmp_path), seed_layout=True, **flags)
    with pytest.raises(UsageError, match="is not there"):
        plan_batch(str(tmp_path), cwd=str(tmp_path), seed_layout=True, worker_script="plots.py")


def test_a_worker_commands_skipping_line_is_a_skip(tmp_path: Path) -> None:
    """Issue 22.6 in Salvo's own layout: exit 0, nothing written, `Skipping.` on stdout."""
    from flows.batch import BatchFailed
    from flows.netcdf_extract import netcdf_extract
    from salvo.options import RunOptions

    script = tmp_path / "extract_results.py"
    script.write_text(
        "import sys\nif 'single' in sys.argv[1]:\n    print(sys.argv[1] + ' has only one time step. Skipping.')\n"
        "else:\n    print('nothing to plot')\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "single.nc").write_bytes(b"x")
    (data / "quiet.nc").write_bytes(b"y")
    with pytest.raises(BatchFailed) as info:
        netcdf_extract(
            directory=str(data), worker_command=f"python3 {script} {{input}} {{output_dir}}", run=RunOptions(retries=0)
        )
    items = {i["item_id"]: i for i in info.value.summary["items"]}
    assert items["single.nc"]["status"] == "skipped"
    assert items["single.nc"]["reason"] == f"{data / 'single.nc'} has only one time step. Skipping."
    assert items["quiet.nc"]["status"] == "silent_failure"  # exit 0, no plots, no skip line
    assert not list(data.glob("*_results"))


@pytest.mark.pure
def test_the_journal_salvo_appends_to_is_never_imported_as_a_seed_list(tmp_path: Path) -> None:
    from salvo.extract import resume_files
    from salvo.extract.journal import ResumeJournal
    from salvo.outcome import ItemResult, Status

    journal = ResumeJournal(tmp_path, {"a.nc": "a.nc", "b.nc": "b.nc"}, {"a.nc": "a_results", "b.nc": "b_results"})
    journal(ItemResult("a.nc", Status.SUCCESS))
    journal(ItemResult("b.nc", Status.ERROR))  # a failure is not listed
    journal(ItemResult("a.nc", Status.SUCCESS))  # listed once
    # As a kill -9 leaves it: never rewritten at the end.
    assert (tmp_path / "batch_resume.txt").read_text() == "a.nc\n"
    assert resume_files(tmp_path, None, cwd=tmp_path) == []
    (tmp_path / "batch_resume.txt").unlink()
    (tmp_path / "batch_resume.txt").write_text("a.nc\nb.nc\n")  # the seed wrote a new list since
    assert resume_files(tmp_path, None, cwd=tmp_path) == [tmp_path / "batch_resume.txt"]
    journal.close()
