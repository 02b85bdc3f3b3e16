"""A gridded run split into batches of cells (`salvo recover --cells-per-batch N`), as dvmdostem's cluster
scripts split it: each batch recovered on its own, then all merged into one full-domain output that
equals an unsplit run's cell for cell; dvmdostem's own config.js read directly."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from salvo.errors import UsageError
from salvo.gridded.dvmconfig import config_paths, read_config, strip_comments
from salvo.gridded.formats import read_mask
from salvo.gridded.split import BATCH_VAR, FAIL_LOG, Batch, merge_batches, split_mask
from tests.helpers import PUBLIC_FIXTURES, salvo

#: dvmdostem's public run-mask of the Imnaviat Creek 10 x 10 site.
SITE = PUBLIC_FIXTURES / "dvmdostem-imnaviat" / "run-mask.nc"
#: The simulated model: cells chosen by the seed fail on their first run, then succeed.
FAILING = [(0, 1), (2, 7), (5, 5), (9, 0), (9, 9)]


def _model(extra: str = "") -> str:
    cells = ";".join(f"{y},{x}" for y, x in FAILING)
    return (
        f"{shlex.quote(sys.executable)} -m salvo.gridded.fakemodel --mask {{mask}} --output {{output}} "
        f"--fail-cells '{cells}' --fail-runs 1 --seed 4 {extra}"
    )


@pytest.mark.pure
def test_the_public_run_mask_splits_into_batches_of_its_enabled_cells(tmp_path: Path) -> None:
    run = read_mask(SITE)
    batches = split_mask(SITE, cells_per_batch=25, root=tmp_path / "b")
    enabled = int((run == 1).sum())
    assert len(batches) == -(-enabled // 25)
    seen = np.zeros(run.shape, dtype=int)
    for b in batches:
        own = read_mask(b.mask)
        assert own.shape == run.shape  # the full grid, as dvmdostem's split script writes it
        assert int(own.sum()) == len(b.cells) <= 25
        assert {(int(y), int(x)) for y, x in zip(*np.nonzero(own))} == set(b.cells)
        seen += own
    assert np.array_equal(seen, (run == 1).astype(int))  # every enabled cell in exactly one batch
    # The same split again keeps the plan; another size in the same folder is refused in one line.
    assert split_mask(SITE, cells_per_batch=25, root=tmp_path / "b") == batches
    with pytest.raises(UsageError, match="another split"):
        split_mask(SITE, cells_per_batch=10, root=tmp_path / "b")


@pytest.mark.pure
def test_dvmdostems_config_js_comments_and_paths() -> None:
    text = (
        '{\n  // dvmdostem config\n  "IO": {\n    "runmask_file": "input/run-mask.nc", // the mask\n'
        '    "output_dir": "output/",\n    "url": "http://example.org/a" /* kept */\n  }\n}\n'
    )
    doc = json.loads(strip_comments(text))
    assert doc["IO"]["url"] == "http://example.org/a"
    assert config_paths(doc, config="c.js", cwd="/run") == ("/run/input/run-mask.nc", "/run/output")


@pytest.mark.pure
def test_a_config_without_its_io_section_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.js"
    bad.write_text('{"calibration": {} // no IO\n}')
    with pytest.raises(UsageError, match="no IO section"):
        read_config(bad)
    bad.write_text('{"IO": {"runmask_file": "m.nc",}}')
    with pytest.raises(UsageError, match="not dvmdostem's JSON"):
        read_config(bad)


def _values(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for p in sorted(folder.glob("*.nc")):
        with netCDF4.Dataset(p) as ds:
            ds.set_auto_maskandscale(False)
            out[p.name] = {k: np.asarray(v[:]) for k, v in ds.variables.items() if k != BATCH_VAR}
    return out


def test_a_split_run_recovered_and_merged_equals_an_unsplit_run_cell_for_cell(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    for site in (whole, split):
        site.mkdir()
        shutil.copy(SITE, site / "run-mask.nc")
    ref = salvo(
        "recover",
        "--model-command",
        _model(),
        "--mask",
        str(whole / "run-mask.nc"),
        "--output",
        str(whole / "output"),
        "--json",
        env=child_env,
        timeout=600,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = salvo(
        "recover",
        "--model-command",
        _model(),
        "--mask",
        str(split / "run-mask.nc"),
        "--output",
        str(split / "output"),
        "--cells-per-batch",
        "25",
        "--max-queued",
        "2",
        "--json",
        env=child_env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert len(doc["batches"]) == 4 and doc["summary"]["failed"] == 0
    assert doc["merge"]["success_cells"] == doc["merge"]["enabled_cells"] == 100
    a, b = _values(whole / "output"), _values(split / "output")
    assert sorted(a) == sorted(b)
    for name in a:
        assert sorted(a[name]) == sorted(b[name]), name
        for var in a[name]:
            assert np.array_equal(a[name][var], b[name][var]), f"{name}:{var} differs"
    with netCDF4.Dataset(split / "output" / "run_status.nc") as ds:
        which = np.asarray(ds.variables[BATCH_VAR][:])
        source = np.asarray(ds.variables["merge_source"][:])
    plan = json.loads((split / "output.recovery" / "batches" / "batches.json").read_text())
    for entry in plan["batches"]:
        for y, x in entry["cells"]:
            assert which[y, x] == entry["number"]
    assert all(source[y, x] == 1 for y, x in FAILING)  # re-run once in its batch
    assert int((source == 1).sum()) == len(FAILING)
    # Resumed: every batch is recorded; nothing is run again and the merged output is the same.
    again = salvo(
        "recover",
        "--model-command",
        _model(),
        "--mask",
        str(split / "run-mask.nc"),
        "--output",
        str(split / "output"),
        "--cells-per-batch",
        "25",
        "--json",
        env=child_env,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert all(item["cached"] for item in json.loads(again.stdout)["items"])


def test_a_batch_whose_cells_keep_failing_is_merged_as_failed_and_the_run_exits_1(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    shutil.copy(SITE, tmp_path / "run-mask.nc")
    proc = salvo(
        "recover",
        "--model-command",
        _model().replace("--fail-runs 1", "--fail-runs -1"),
        "--mask",
        str(tmp_path / "run-mask.nc"),
        "--output",
        str(tmp_path / "output"),
        "--cells-per-batch",
        "50",
        "--max-rounds",
        "1",
        "--json",
        env=child_env,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["merge"]["success_cells"] == 100 - len(FAILING)
    with netCDF4.Dataset(tmp_path / "output" / "run_status.nc") as ds:
        status = np.asarray(ds.variables["run_status"][:])
    assert all(status[y, x] != 100 for y, x in FAILING)


def test_dvmdostems_config_gives_mask_and_output_and_each_batch_its_own_copy(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "input").mkdir()
    shutil.copy(SITE, tmp_path / "input" / "run-mask.nc")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.js").write_text(
        "{\n"
        "  // as dvmdostem ships it, with comments\n"
        '  "IO": {"runmask_file": "input/run-mask.nc", "output_dir": "output/"}\n'
        "}\n"
    )
    model = (
        f"{shlex.quote(sys.executable)} -c \"import json,subprocess,sys; io=json.load(open(sys.argv[1]))['IO']; "
        f"sys.exit(subprocess.call([sys.executable, '-m', 'salvo.gridded.fakemodel', '--mask', io['runmask_file'], "
        f"'--output', io['output_dir']]))\" {{config}}"
    )
    proc = salvo(
        "recover",
        "--model-command",
        model,
        "--config",
        "config/config.js",
        "--cells-per-batch",
        "40",
        "--json",
        env=child_env,
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert len(doc["batches"]) == 3 and doc["merge"]["success_cells"] == 100
    assert (tmp_path / "output" / "run_status.nc").is_file()
    for entry in doc["batches"]:
        cfg = json.loads((Path(entry["output"]).parent / "config.js").read_text())
        assert cfg["IO"]["output_dir"].rstrip("/") == entry["output"]


def _batch_outputs(tmp_path: Path, n: int = 2) -> list[Batch]:
    from salvo.gridded.dvmdostem import write_run

    run = read_mask(SITE)
    batches = split_mask(SITE, cells_per_batch=50, root=tmp_path / "b")[:n]
    for b in batches:
        own = read_mask(b.mask)
        write_run(b.output, status=np.where(own == 1, 100, 0).astype("i4"))
    assert run.shape == (10, 10)
    return batches


def test_a_batch_lacking_a_file_the_others_wrote_is_refused_by_name(tmp_path: Path) -> None:
    batches = _batch_outputs(tmp_path)
    victim = sorted(Path(batches[1].output).glob("*_tr.nc"))[0]
    victim.unlink()
    with pytest.raises(UsageError, match=f"batch-002 lacks {victim.name}"):
        merge_batches(batches, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_the_batches_fail_logs_are_concatenated(tmp_path: Path) -> None:
    batches = _batch_outputs(tmp_path)
    (Path(batches[0].output) / FAIL_LOG).write_text("cell 0 3 failed\n")
    (Path(batches[1].output) / FAIL_LOG).write_text("cell 7 7 failed")
    report = merge_batches(batches, tmp_path / "merged")
    text = (tmp_path / "merged" / FAIL_LOG).read_text()
    assert text == "# batch-001\ncell 0 3 failed\n# batch-002\ncell 7 7 failed\n"
    assert len(report["fail_logs"]) == 2
