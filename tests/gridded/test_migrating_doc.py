"""The examples of docs/migrating/dvmdostem.md, run as written on real-layout data (a simulated dvmdostem)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cli.main import main as salvo_main
from cli.salvage import merge_main, salvage_main
from salvo.gridded import read_mask, read_merge_source, read_status
from salvo.gridded.dvmdostem import SITE_MASK, site_mask
from salvo.gridded.fakemodel import ModelSpec, simulate_run

from .conftest import tree_digest

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating" / "dvmdostem.md"
DVMDOSTEM = "dvmdostem -p 10 -e 10 -s 10 -t 10 -n 5 -l monitor"
FAILING = [(2, 3), (7, 8), (9, 0)]


def examples() -> dict[str, list[str]]:
    """Each ``<!-- example: NAME -->`` bash block of the page, as its command lines."""
    text = DOC.read_text()
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```bash\n(.*?)```", text, flags=re.S)
    return {
        name: [line for line in body.splitlines() if line.strip() and not line.startswith("#")] for name, body in found
    }


def _site(root: Path) -> tuple[Path, str]:
    """A site folder with the run-mask, and the simulated model's command standing in for dvmdostem."""
    root.mkdir()
    run = read_mask(SITE_MASK).copy()
    run[0, 0] = 0
    site_mask(root / "run-mask.nc", run=run)
    cells = ";".join(f"{y},{x}" for y, x in FAILING)
    model = (
        f"{sys.executable} -m salvo.gridded.fakemodel --mask {root / 'run-mask.nc'} --output {root / 'output'} "
        f"--fail-cells {cells} --state {root / 'model-state.json'} --years 2 --layers 3"
    )
    return root, model


def _run(line: str, *, cwd: Path, model: str) -> int:
    line = line.replace(DVMDOSTEM, model)
    argv = shlex.split(line)
    prog, args = argv[0], argv[1:]
    if prog == sys.executable:  # the model
        return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=300).returncode
    if prog == "cp":
        shutil.copy2(cwd / args[0], cwd / args[1])
        return 0
    entry = {"salvo": salvo_main, "pyddt-salvage": salvage_main, "pyddt-merge": merge_main}[prog]
    return entry(args)


def test_the_page_has_the_examples_this_test_runs():
    ex = examples()
    assert set(ex) == {"by-hand", "by-hand-salvo", "recover"}
    assert all(DVMDOSTEM in " ".join(lines) for lines in ex.values())


@pytest.mark.pure
@pytest.mark.slow  # seconds on an idle machine: make test runs it, make test-fast does not
@pytest.mark.parametrize("name", ["by-hand", "by-hand-salvo"])
def test_by_hand_example_merges_the_rerun_into_the_first_run(tmp_path, monkeypatch, name):
    site, model = _site(tmp_path / "site")
    monkeypatch.chdir(site)
    mask_before = (site / "run-mask.nc").read_bytes()
    first_digest = None
    for line in examples()[name]:
        if first_digest is None and "salvage" in line:
            first_digest = tree_digest(site / "output")
        assert _run(line, cwd=site, model=model) == 0, line
    assert tree_digest(site / "backup") == first_digest  # the re-run into output/ did not touch the backup
    assert (site / "run-mask.nc").read_bytes() == mask_before
    enabled = read_mask(site / "run-mask.nc") == 1
    assert (read_status(site / "merged" / "run_status.nc")[enabled] == 100).all()
    source = read_merge_source(site / "merged" / "run_status.nc")
    assert sorted(zip(*map(list, np.nonzero(source == 1)))) == FAILING
    clean, _ = _site(tmp_path / "clean")
    simulate_run(
        clean / "run-mask.nc", output=clean / "output", spec=ModelSpec(years=2, layers=3), state=clean / "s.json"
    )
    for f in sorted((clean / "output").glob("*.nc")):
        got = (
            xr.open_dataset(site / "merged" / f.name, decode_cf=False).load().drop_vars("merge_source", errors="ignore")
        )
        xr.testing.assert_identical(got, xr.open_dataset(f, decode_cf=False).load())


def test_recover_example_recovers_every_cell(tmp_path, monkeypatch, capsys):
    site, model = _site(tmp_path / "site")
    monkeypatch.chdir(site)
    mask_before = (site / "run-mask.nc").read_bytes()
    [line] = examples()["recover"]
    assert _run(line, cwd=site, model=model) == 0
    assert "✓ Recovered" in capsys.readouterr().out
    assert (site / "run-mask.nc").read_bytes() == mask_before
    enabled = read_mask(site / "run-mask.nc") == 1
    assert (read_status(site / "output" / "run_status.nc")[enabled] == 100).all()
    assert (site / "output.recovery" / "round-1" / "salvaged" / "run_status.nc").is_file()
