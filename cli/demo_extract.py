"""Demo of netcdf-extract: sample files (one corrupt, one single-step, one in a noleap calendar), plotted in
parallel, then resumed."""

from __future__ import annotations

from pathlib import Path

from cli.common import Progress, run_flow

NOLEAP = "exp_S3_noleap.nc"


def run_demo(root: Path) -> list[str]:
    """Make sample NetCDF files under ``root`` and run the pipeline twice (the second resumes)."""
    from flows.netcdf_extract import netcdf_extract
    from salvo.options import RunOptions
    from salvo.samples.netcdf import make_netcdf_samples, write_cf_file

    data = root / "netcdf"
    if not data.exists():
        make_netcdf_samples(data, count=24)
    if not (data / NOLEAP).exists():  # a demo folder made before the calendar sample existed
        write_cf_file(data / NOLEAP, calendar="noleap", steps=36)
    out = root / "netcdf-plots"
    params = dict(directory=str(data), output_dir=str(out), run=RunOptions(workers=2, retries=0))
    first = run_flow(netcdf_extract, progress=Progress(), **params)
    second = run_flow(netcdf_extract, progress=Progress(quiet=True), **params)
    s1, s2 = first["summary"], second["summary"]
    noleap = next(i for i in first["items"] if i["item_id"] == NOLEAP)
    return [
        f"netcdf-extract: {s1['total']} files: {s1['counts']} "
        "(the corrupt file is an error, the single-step file is skipped)",
        f"  {NOLEAP} (a climate model's noleap calendar): {noleap['status']}, "
        f"plots with date ticks in {out}/{Path(NOLEAP).stem}/",
        f"  re-run resumed {s2['resumed']} finished files in {s2['wall_time_s']:.1f} s "
        f"(first run {s1['wall_time_s']:.1f} s)",
        f"  plots:   {out}/<file>/",
        f"  reports: {first['reports']['text']}",
        f"           {first['reports']['json']}",
    ]
