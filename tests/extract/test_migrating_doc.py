"""The migration page's example commands (docs/migrating/netcdf-extract.md), run as written, in order,
on small generated files: each exits 0 and does what the page says."""

from __future__ import annotations

import json
import os
import re
import sys
import shlex
from pathlib import Path

import pytest

from salvo.samples.netcdf import write_cf_file, write_series_file

PAGE = Path(__file__).resolve().parents[2] / "docs" / "migrating" / "netcdf-extract.md"
OLD_PLOT = b"\x89PNG\r\n\x1a\n" + b"plotted by the seed" * 8
#: A user's own extract_results.py: standard library only, as the seed's users had.
EXTRACT_RESULTS = """import pathlib, sys
out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
(out / "from_my_script.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + pathlib.Path(sys.argv[1]).name.encode() * 4)
"""


def examples() -> dict[str, list[str]]:
    """Each ``<!-- example: NAME -->`` block's `salvo` command lines, in page order."""
    text = PAGE.read_text()
    found = {}
    for m in re.finditer(r"<!-- example: (?P<name>[\w-]+) -->\s*```bash\n(?P<body>.*?)```", text, re.S):
        found[m["name"]] = [line.strip() for line in m["body"].splitlines() if line.strip().startswith("salvo ")]
    return found


def _run(line: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from cli.main import main

    argv = shlex.split(line)[1:]
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, f"{line!r} exited {code}: {out.err[-2000:]}"
    return code, out.out


def test_the_migration_pages_commands_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = examples()
    assert list(blocks) == ["seed-flags", "seed-layout", "worker-command", "seed-resume", "recursive"]
    data = tmp_path / "data"
    write_series_file(data / "exp_S4_000.nc", steps=6, seed=1)
    write_series_file(data / "exp_S4_001.nc", steps=5, seed=2)
    write_cf_file(data / "exp_S3_002.nc", calendar="noleap", steps=12)  # a climate model's calendar
    write_cf_file(data / "sub" / "exp_S3_003.nc", calendar="360_day", steps=12)
    monkeypatch.chdir(tmp_path)

    dry, second, third, skip, resume = blocks["seed-flags"]
    _run(dry, capsys)
    assert not list(data.glob("*_results"))  # a dry run writes nothing
    _run(second, capsys)
    assert sorted(p.name for p in data.glob("*_results")) == ["exp_S4_000_results", "exp_S4_001_results"]
    s4_plot = data / "exp_S4_000_results" / "GPP_timeseries.png"
    mtime = s4_plot.stat().st_mtime_ns
    _run(third, capsys)
    assert sorted(p.name for p in data.glob("*_results")) == [
        "exp_S3_002_results",
        "exp_S4_000_results",
        "exp_S4_001_results",
    ]
    assert s4_plot.stat().st_mtime_ns == mtime  # finished files were not plotted again
    assert (data / "exp_S3_002_results" / "tas_timeseries.png").is_file()  # the noleap file
    for line in (skip, resume):
        _, out = _run(line, capsys)
        assert "finished by earlier runs" in out
    assert s4_plot.stat().st_mtime_ns == mtime

    (tmp_path / "extract_results.py").write_text(EXTRACT_RESULTS)
    (line,) = blocks["worker-command"]
    _run(line, capsys)
    assert (data / "exp_S4_000_results" / "from_my_script.png").is_file()

    # The seed plotted exp_S4_000 into plots/ and listed it in its batch_resume.txt, in the cwd.
    (tmp_path / "plots" / "exp_S4_000").mkdir(parents=True)
    (tmp_path / "plots" / "exp_S4_000" / "tas.png").write_bytes(OLD_PLOT)
    (tmp_path / "batch_resume.txt").write_text("data/exp_S4_000.nc\n")
    (line,) = blocks["seed-resume"]
    _run(line, capsys)
    report = json.loads((tmp_path / "plots" / "batch_summary.json").read_text())
    items = {i["item_id"]: i for i in report["items"]}
    assert items["exp_S4_000.nc"]["cached"] and "batch_resume.txt" in items["exp_S4_000.nc"]["reason"]
    assert (tmp_path / "plots" / "exp_S4_000" / "tas.png").read_bytes() == OLD_PLOT
    assert not (tmp_path / "plots" / "exp_S4_000" / "GPP_timeseries.png").exists()
    assert items["exp_S4_001.nc"]["status"] == "success" and not items["exp_S4_001.nc"]["cached"]

    (line,) = blocks["recursive"]
    _run(line, capsys)
    assert (
        tmp_path / "plots" / "sub" / "exp_S3_003" / "tas_timeseries.png"
    ).is_file()  # the 360_day file, in a sub-folder


def _run_code(line: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from cli.main import main

    capsys.readouterr()
    code = main(shlex.split(line)[1:])
    return code, capsys.readouterr().out


def test_the_seed_layout_commands_run_a_seed_users_worker_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page's seed-layout block, with an extract_results.py written as the seed's users write
    theirs (xarray and matplotlib, plots in <stem>/, `Skipping.` for one time step), on real files."""
    import netCDF4

    from tests.extract.seed_workers import XARRAY

    first, second = examples()["seed-layout"]
    data = tmp_path / "data"
    write_series_file(data / "exp_S3_000.nc", steps=6, seed=1)
    write_series_file(data / "exp_S3_001.nc", steps=1, seed=2)  # a single time step
    (data / "exp_S3_002.nc").write_bytes(b"<html>502 Bad Gateway</html>")  # a failed download: not NetCDF
    with netCDF4.Dataset(data / "exp_S3_003.nc", "w") as nc:  # nothing the worker plots: exits 0 without a PNG
        nc.createDimension("time", 4)
        nc.createVariable("count", "i4", ("time",))[:] = [1, 2, 3, 4]
    (tmp_path / "extract_results.py").write_text(XARRAY)
    monkeypatch.chdir(tmp_path)
    # The seed's users run `python` with their plotting libraries: here, this interpreter.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    code, _ = _run_code(first, capsys)
    assert code == 1
    report = json.loads((tmp_path / "batch_summary.json").read_text())
    status = {i["item_id"]: i["status"] for i in report["items"]}
    assert status == {
        "exp_S3_000.nc": "success",
        "exp_S3_001.nc": "skipped",
        "exp_S3_002.nc": "error",
        "exp_S3_003.nc": "silent_failure",
    }
    assert sorted(p.name for p in (tmp_path / "exp_S3_000").iterdir()) == ["CO2.png", "GPP.png", "TAIR.png"]
    assert not (tmp_path / "exp_S3_003").exists() and not list(data.glob("*_results"))
    assert (tmp_path / "batch_resume.txt").read_text().splitlines() == ["data/exp_S3_000.nc", "data/exp_S3_001.nc"]
    plots = {p.name: p.read_bytes() for p in (tmp_path / "exp_S3_000").iterdir()}

    code, out = _run_code(second, capsys)
    assert code == 1 and out.count("Seed layout (an earlier run used it here") == 1
    report = json.loads((tmp_path / "batch_summary.json").read_text())
    cached = {i["item_id"]: i["cached"] for i in report["items"]}
    assert cached == {"exp_S3_000.nc": True, "exp_S3_001.nc": True, "exp_S3_002.nc": False, "exp_S3_003.nc": False}
    assert {p.name: p.read_bytes() for p in (tmp_path / "exp_S3_000").iterdir()} == plots
