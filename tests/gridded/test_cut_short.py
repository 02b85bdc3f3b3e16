"""A NetCDF file cut short is an error, never a plot or a merge of what is missing (issue 28), through the commands.

The public dvmdostem files are all NETCDF4; the classic-format copies (CDF-1, CDF-2 64-bit offset,
CDF-5) are made here with netCDF4-python's ``format=``, from the public climate file's first 24
time steps (to keep the plotting short).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from cli.main import main as salvo_main
from salvo.gridded.dvmdostem import write_run
from salvo.gridded.formats import read_mask
from salvo.ncfile import classic_layout

from tests.helpers import PUBLIC_FIXTURES, salvo

from .conftest import tree_digest
from .ncforms import convert, cut

CLIMATE = PUBLIC_FIXTURES / "dvmdostem-imnaviat" / "projected-climate.nc"
FORMATS = {"cdf1": "NETCDF3_CLASSIC", "cdf2": "NETCDF3_64BIT_OFFSET", "cdf5": "NETCDF3_64BIT_DATA"}


def _short_climate(path: Path, steps: int = 24) -> Path:
    """The public climate file's first ``steps`` time steps, NETCDF4 as the original."""
    with netCDF4.Dataset(CLIMATE) as s, netCDF4.Dataset(path, "w", format="NETCDF4") as d:
        s.set_auto_maskandscale(False)
        d.set_auto_maskandscale(False)
        for name, dim in s.dimensions.items():
            d.createDimension(name, None if dim.isunlimited() else len(dim))
        d.setncatts({k: s.getncattr(k) for k in s.ncattrs()})
        for name, var in s.variables.items():
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            new = d.createVariable(name, var.dtype, var.dimensions, fill_value=attrs.pop("_FillValue", None))
            new.setncatts(attrs)
            values = var[...]
            new[...] = values[:steps] if var.dimensions[:1] == ("time",) else values
    return path


def _cut_points(path: Path) -> dict[str, int]:
    layout = classic_layout(path)
    fixed = [v for v in layout.variables if not v.record and v.data_bytes][-1]
    first_record = min(v.begin for v in layout.variables if v.record)
    return {
        "header": layout.header_size // 2,
        "fixed": fixed.begin + fixed.data_bytes // 2,
        "record": first_record + (layout.data_end - first_record) * 2 // 3,
    }


def test_cut_inputs_of_each_format_are_bad_input_never_retried_and_earlier_plots_stay(tmp_path, child_env):
    data, out = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    short = _short_climate(tmp_path / "climate-nc4.nc")
    for tag, fmt in FORMATS.items():
        for where in ("header", "fixed", "record"):
            convert(short, data / f"{tag}-{where}.nc", fmt)
    (data / "nc4-half.nc").write_bytes(short.read_bytes())
    first = salvo("extract", "--directory", str(data), "--output-dir", str(out), "--json", env=child_env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout)["summary"]["counts"] == {"success": 10}
    plots = _plots(out)
    assert len(plots) >= 10 and {name.split("/")[0] for name in plots} == {p.stem for p in data.iterdir()}

    expected = {}
    for tag in FORMATS:
        for where, n in _cut_points(data / f"{tag}-header.nc").items():
            whole = data / f"{tag}-{where}.nc"
            cut(whole, tmp_path / "cut.nc", n)
            (tmp_path / "cut.nc").replace(whole)
            expected[whole.name] = n
    half = short.stat().st_size // 2
    cut(short, data / "nc4-half.nc", half)
    expected["nc4-half.nc"] = half

    again = salvo(
        "extract",
        "--directory",
        str(data),
        "--output-dir",
        str(out),
        "--retries",
        "2",
        "--json",
        env=child_env,
        timeout=600,
    )
    assert again.returncode == 1, again.stderr[-2000:]
    doc = json.loads(again.stdout)
    items = {Path(r["item_id"]).name: r for r in doc["items"]}
    assert set(items) == set(expected)
    for name, n in expected.items():
        r = items[name]
        assert r["status"] == "error" and r["attempt"] == 1, r  # a deterministic input error: never retried
        head = f"bad input: {data / name} is cut short: {n} of "
        assert r["reason"].startswith(head) and r["reason"].endswith(" bytes"), r["reason"]
    assert _plots(out) == plots  # the earlier plots of the whole files are all still there, unchanged


def _plots(out: Path) -> dict[str, str]:
    """Every file of the per-input output folders (the reports, their per-run copies in runs/ and the records
    beside them change with each run)."""
    return {
        name: digest for name, digest in tree_digest(out).items() if "/" in name and not name.startswith((".", "runs/"))
    }


def _layout_run(folder: Path, mask: Path) -> None:
    run = read_mask(mask)
    status = np.where(run == 1, 100, 0).astype("i4")
    status[1, 1] = -100
    write_run(folder, status=status)


@pytest.mark.pure
def test_salvage_and_merge_refuse_a_cut_run_status_and_output_naming_both(tmp_path, capsys):
    from salvo.gridded.dvmdostem import SITE_MASK

    mask = tmp_path / "run-mask.nc"
    mask.write_bytes(SITE_MASK.read_bytes())
    for folder in ("output", "rerun"):
        _layout_run(tmp_path / folder, mask)
    status, gpp = tmp_path / "output" / "run_status.nc", tmp_path / "output" / "GPP_monthly_tr.nc"
    n_status, n_gpp = status.stat().st_size - 100, gpp.stat().st_size // 2
    cut(status, tmp_path / "s.nc", n_status).replace(status)
    cut(gpp, tmp_path / "g.nc", n_gpp).replace(gpp)
    before = tree_digest(tmp_path)

    code = salvo_main(
        [
            "salvage",
            str(tmp_path / "output"),
            str(tmp_path / "backup"),
            "--original-mask",
            str(mask),
            "--new-mask",
            str(tmp_path / "failed.nc"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"bad input: {status} is cut short: {n_status} of " in err and f"{gpp} is cut short: {n_gpp} of " in err

    code = salvo_main(["merge", str(tmp_path / "output"), str(tmp_path / "rerun"), str(tmp_path / "merged")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"bad input: {status} is cut short: {n_status} of " in err and f"{gpp} is cut short: {n_gpp} of " in err
    assert tree_digest(tmp_path) == before and not (tmp_path / "backup").exists()


CUTTING_MODEL = """
import os, subprocess, sys
from pathlib import Path
args = sys.argv[1:]
subprocess.run([sys.executable, "-m", "salvo.gridded.fakemodel", *args], check=True)
output = Path(args[args.index("--output") + 1])
count = output.parent / "runs-of-the-cutting-model"
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
if n == 2:  # the re-run is killed while writing its run_status.nc: a classic file, cut
    status = output / "run_status.nc"
    os.truncate(status, status.stat().st_size // 2)
"""


def test_a_rerun_that_leaves_a_cut_run_status_is_not_merged_and_the_output_is_put_back(runs):
    from flows.salvage_merge import salvage_merge

    script = runs.root / "cutting_model.py"
    script.write_text(CUTTING_MODEL)
    model = (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} --mask {{mask}} --output {{output}} "
        f"--years 2 --layers 3 "
        f"--fail-cells '1,1' --state {runs.root / 'model-state.json'}"
    )
    mask = runs.mask()
    state = salvage_merge(model, mask=str(mask), output=str(runs.root / "output"), max_rounds=2, return_state=True)
    assert state.is_failed()
    doc = state.result(raise_on_failure=False).doc
    work = runs.root / "output.recovery"
    cut_file = work / "round-1" / "rerun" / "run_status.nc"
    assert doc["rounds"][-1]["round"] == 1 and not doc["rounds"][-1]["model"]["wrote_status"]
    assert f"{cut_file} is cut short: " in doc["summary"]["stopped"]
    assert tree_digest(runs.root / "output") == tree_digest(work / "round-1" / "salvaged")
    assert json.loads((work / "journal.json").read_text())["rounds"]["1"]["step"] == "rerun-failed"
