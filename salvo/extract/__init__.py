"""The NetCDF extraction pipeline's domain: find inputs, find the time axis, plot, check plots."""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from salvo.errors import InputError, SkipItem, UsageError
from salvo.fsutil import TMP_PREFIX, atomic_dir
from salvo.items import Item, Worker, template_fields

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Suffix of the per-file output folder beside the inputs (the seed's default layout).
OUTPUT_SUFFIX = "_results"
_TIME_NAMES = ("time", "month", "months", "t", "date", "year", "day")
_SPATIAL_HINTS = {"x", "y", "lat", "lon", "latitude", "longitude", "rlat", "rlon", "nlat", "nlon"}


def discover_inputs(directory: str | os.PathLike[str], *, pattern: str = "*.nc", recursive: bool = False) -> list[Path]:
    """Files under ``directory`` whose name matches the glob ``pattern``, sorted."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"directory does not exist: {root}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [
        p for p in candidates
        if p.is_file() and fnmatch.fnmatch(p.name, pattern)
        and not any(part.startswith((".", TMP_PREFIX)) for part in p.relative_to(root).parts)
    ]
    return sorted(found)


def output_dir_for(nc_file: str | os.PathLike[str], *, directory: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where a file's plots go: ``<stem>_results/`` beside it, or mirrored under ``output_dir``."""
    f = Path(nc_file)
    if output_dir is None:
        return f.with_name(f.stem + OUTPUT_SUFFIX)
    rel = f.relative_to(directory)
    return Path(output_dir) / rel.parent / rel.stem


def png_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The valid, non-empty PNG files in ``folder``."""
    d = Path(folder)
    if not d.is_dir():
        return []
    good = []
    for p in sorted(d.glob("*.png")):
        with open(p, "rb") as fh:
            if fh.read(8) == PNG_SIGNATURE and p.stat().st_size > 8:
                good.append(p)
    return good


def check_for_output(item: Any, result: Any) -> str | None:
    """Verifier: the reason an exit-0 item is a silent failure, or None if its plots are there."""
    out = Path(item.outputs[0] if item.outputs else item.params["output_dir"])
    if not out.is_dir():
        return f"exited 0 but wrote no output folder {out}"
    if not png_files(out):
        return f"exited 0 but {out} holds no valid PNG plot"
    return None


def find_time_dim(ds: Any) -> str | None:
    """The time-like dimension: ``time``, a coordinate with CF ``axis: T`` or datetimes, or ``month``."""
    for dim in ds.dims:
        if dim in ds.coords:
            coord = ds.coords[dim]
            if coord.attrs.get("axis") == "T" or np.issubdtype(coord.dtype, np.datetime64):
                return str(dim)
            if "since" in str(coord.attrs.get("units", "")):
                return str(dim)
    for name in _TIME_NAMES:
        if name in ds.dims:
            return name
    for dim in ds.dims:
        if "time" in str(dim).lower() or "month" in str(dim).lower():
            return str(dim)
    return None


def _spatial_dims(var: Any, time_dim: str) -> list[str]:
    others = [d for d in var.dims if d != time_dim]
    hinted = [d for d in others if str(d).lower() in _SPATIAL_HINTS]
    return hinted if len(hinted) >= 2 else others


def extract_plots(*, input: str, output_dir: str) -> dict[str, Any]:
    """Plot each numeric variable's spatial-mean time series, and a map of its last step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    try:
        ds = xr.open_dataset(input, engine="netcdf4", decode_times=True)
    except Exception as exc:
        raise InputError(f"cannot read {input} as NetCDF: {exc}") from exc
    with ds:
        time_dim = find_time_dim(ds)
        if time_dim is None:
            raise SkipItem("no time-like dimension")
        steps = ds.sizes[time_dim]
        if steps < 2:
            raise SkipItem(f"only {steps} time step")
        names = [n for n, v in ds.data_vars.items() if time_dim in v.dims and np.issubdtype(v.dtype, np.number)]
        if not names:
            raise SkipItem(f"no numeric variable along {time_dim!r}")
        plots = 0
        with atomic_dir(output_dir) as tmp:
            for name in names:
                var = ds[name]
                spatial = _spatial_dims(var, time_dim)
                series = var.mean(dim=spatial) if spatial else var
                fig, ax = plt.subplots(figsize=(6, 3))
                series.plot(ax=ax)
                ax.set_title(f"{name}: mean over {', '.join(map(str, spatial)) or 'nothing'}")
                fig.savefig(tmp / f"{name}_timeseries.png", dpi=60, bbox_inches="tight")
                plt.close(fig)
                plots += 1
                if len(spatial) == 2 and var.ndim == 3:
                    fig, ax = plt.subplots(figsize=(4, 3))
                    var.isel({time_dim: -1}).plot(ax=ax)
                    fig.savefig(tmp / f"{name}_last_step_map.png", dpi=60, bbox_inches="tight")
                    plt.close(fig)
                    plots += 1
    return {"outputs": [output_dir], "metrics": {"plots": plots, "time_steps": int(steps), "variables": len(names)}}


#: Placeholders a `--worker-command` template may use.
COMMAND_FIELDS = {"input", "output_dir", "name", "stem"}
BUILTIN_WORKER = Worker("python", "salvo.extract:extract_plots", verify="salvo.extract:check_for_output", version="1", preload=("xarray", "netCDF4", "matplotlib.pyplot"))


def extract_worker(worker_command: str | None = None) -> Worker:
    """The built-in plotting worker, or the user's command run with a staged output folder."""
    if not worker_command:
        return BUILTIN_WORKER
    unknown = sorted(set(template_fields(worker_command)) - COMMAND_FIELDS)
    if unknown:
        raise UsageError(f"unknown placeholder {{{unknown[0]}}} in --worker-command; use {{input}}, {{output_dir}}, {{name}} or {{stem}}")
    program = shlex.split(worker_command)[0]
    if shutil.which(program) is None:
        raise UsageError(f"worker command not found: {program}")
    return Worker("python", "salvo.staged:run_staged_command", verify="salvo.extract:check_for_output")


def plan_items(files: list[Path], *, directory: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None = None, worker_command: str | None = None) -> list[Item]:
    """One item per input file, with its output folder (absolute paths: keys do not depend on the cwd)."""
    items = []
    directory = Path(directory).resolve()
    output_dir = None if output_dir is None else Path(output_dir).resolve()
    for f in (Path(p).resolve() for p in files):
        out = str(output_dir_for(f, directory=directory, output_dir=output_dir))
        item_id = f.relative_to(directory).as_posix()
        if worker_command:
            params = {"command": worker_command, "stage": {"output_dir": out}, "input": str(f), "name": f.name, "stem": f.stem}
        else:
            params = {"input": str(f), "output_dir": out}
        items.append(Item(item_id, inputs=(str(f),), params=params, outputs=(out,)))
    return items


def has_existing_output(item: Item) -> bool:
    """The seed's --skip-existing test: the output folder already holds PNG plots."""
    return bool(png_files(item.outputs[0]))
