"""Demo of netcdf-extract: sample files (one corrupt, one single-step), plotted in parallel, then resumed."""

from __future__ import annotations

from pathlib import Path

from cli.common import Progress, run_flow


def run_demo(root: Path) -> list[str]:
    """Make sample NetCDF files under ``root`` and run the pipeline twice (the second resumes)."""
    from flows.netcdf_extract import netcdf_extract
    from salvo.samples.netcdf import make_netcdf_samples

    data = root / "netcdf"
    if not data.exists():
        make_netcdf_samples(data, count=24)
    out = root / "netcdf-plots"
    params = dict(directory=str(data), output_dir=str(out), parallel=True, max_workers=2, retries=0)
    first = run_flow(netcdf_extract, progress=Progress(), **params)
    second = run_flow(netcdf_extract, progress=Progress(quiet=True), **params)
    s1, s2 = first["summary"], second["summary"]
    return [
        f"netcdf-extract: {s1['total']} files: {s1['counts']} (the corrupt file is an error, the single-step file is skipped)",
        f"  re-run resumed {s2['resumed']} finished files in {s2['wall_time_s']:.1f} s (first run {s1['wall_time_s']:.1f} s)",
        f"  plots:   {out}/<file>/",
        f"  reports: {first['reports']['text']}",
        f"           {first['reports']['json']}",
    ]
