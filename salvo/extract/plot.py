"""Plotting one NetCDF file: find its time axis by CF rules, decode any CF calendar, draw readable plots.

Times are never handed to matplotlib as dates: every calendar (``standard``, ``noleap``,
``360_day``, ``julian``, ...) is drawn on a numeric axis (the file's own ``<unit> since <date>``
numbers) whose ticks are placed on calendar boundaries and labelled with dates by cftime. So no
optional plotting package (nc-time-axis) is needed, and a ``360_day`` year looks like any other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from salvo.errors import InputError, SkipItem
from salvo.extract import DEFAULT_DPI

#: Figure sizes (inches); at ``DEFAULT_DPI``, 1000 x 400 pixels, legible labels.
SERIES_SIZE = (10.0, 4.0)
MAP_SIZE = (6.5, 5.0)
#: A non-spatial dimension besides time with at most this many values is drawn as one line each.
MAX_LINES = 10

_SINCE = re.compile(r"^\s*(?P<unit>[A-Za-z]+)\s+since\s+\S", re.IGNORECASE)
_TIME_NAMES = ("time", "month", "months", "t", "date", "year", "day")
_SPATIAL_NAMES = {
    "x",
    "y",
    "lat",
    "lon",
    "latitude",
    "longitude",
    "rlat",
    "rlon",
    "nlat",
    "nlon",
    "xc",
    "yc",
    "ni",
    "nj",
}
_SPATIAL_STANDARD = {
    "latitude",
    "longitude",
    "grid_latitude",
    "grid_longitude",
    "projection_x_coordinate",
    "projection_y_coordinate",
}


# --- the time axis -------------------------------------------------------------------------------


def _time_score(var: Any) -> int:
    """How surely a 1-D variable is a CF time coordinate: 0 (not) to 4 (``axis: T``)."""
    attrs = var.attrs
    if str(attrs.get("axis", "")).upper() == "T":
        return 4
    if str(attrs.get("standard_name", "")).lower() == "time":
        return 3
    if _SINCE.match(str(attrs.get("units", ""))):
        return 2
    if np.issubdtype(var.dtype, np.datetime64) or (var.dtype == object and var.size and _is_cftime(var.values.flat[0])):
        return 2
    return 0


def _is_cftime(value: Any) -> bool:
    return type(value).__module__.startswith("cftime")


def find_time(ds: Any) -> tuple[str, str | None] | None:
    """``(dimension, variable)`` of the time axis, or None.

    CF rules first, on every 1-D variable (coordinate or not): ``axis: T``, then
    ``standard_name: time``, then units ``<unit> since <date>`` (or already-decoded dates); a
    coordinate variable (named like its dimension) wins a tie. Then, for files that follow no
    convention, a dimension named like a time (``time``, ``month``, ``year``, ...).
    """
    best: tuple[int, int, str, str] | None = None
    for name, var in ds.variables.items():
        if var.ndim != 1:
            continue
        score = _time_score(var)
        if score:
            dim = str(var.dims[0])
            rank = (score, int(str(name) == dim), dim, str(name))
            if best is None or rank[:2] > best[:2]:
                best = rank
    if best is not None:
        return best[2], best[3]
    dims = [str(d) for d in ds.dims]
    for name in _TIME_NAMES:
        if name in dims:
            return name, (name if name in ds.variables else None)
    for dim in dims:
        if "time" in dim.lower() or "month" in dim.lower():
            return dim, (dim if dim in ds.variables else None)
    return None


def find_time_dim(ds: Any) -> str | None:
    """The time-like dimension of ``ds`` (see :func:`find_time`), or None."""
    found = find_time(ds)
    return found[0] if found else None


@dataclass
class TimeAxis:
    """Numeric positions of the time steps, and how to turn a position into a date (if known)."""

    values: np.ndarray
    units: str | None = None  # "<unit> since <date>" when the positions are dates
    calendar: str = "standard"
    label: str = "time"

    @property
    def is_dates(self) -> bool:
        return self.units is not None

    def dates(self, positions: Any) -> Any:
        import cftime

        return cftime.num2date(positions, self.units, self.calendar)

    def date_label(self, position: float, fmt: str = "%Y-%m-%d") -> str:
        """The date at ``position`` (its number when it is no date: NaN, out of the calendar's range)."""
        if self.is_dates and math.isfinite(position):
            try:
                return _fmt(self.dates(position), fmt)
            except Exception:  # cftime raises ValueError, OverflowError, TypeError
                pass
        return f"{position:g}"


def _fmt(d: Any, fmt: str) -> str:
    return str(d.strftime(fmt))


def time_axis(ds: Any, dim: str, var_name: str | None) -> TimeAxis:
    """Decode the time axis of any CF calendar to numbers plus a date labeller; never fails.

    Values that cannot be read as dates (no units, units cftime cannot decode such as ``months
    since`` in a 365-day calendar) stay numbers, labelled with their units or dimension name.
    """
    if var_name is None:
        return TimeAxis(np.arange(ds.sizes[dim], dtype=float), label=f"{dim} (index)")
    var = ds[var_name]
    values = var.values
    calendar = str(var.attrs.get("calendar", var.encoding.get("calendar", "standard"))).lower()
    if np.issubdtype(values.dtype, np.datetime64):
        secs = values.astype("datetime64[s]").astype("float64")
        return _checked(TimeAxis(secs / 86400.0, "days since 1970-01-01", "proleptic_gregorian", label="time"))
    if values.dtype == object and values.size and _is_cftime(values.flat[0]):
        import cftime

        cal = getattr(values.flat[0], "calendar", calendar) or calendar
        nums = np.asarray(cftime.date2num(values, "days since 0001-01-01", cal), dtype=float)
        return _checked(TimeAxis(nums, "days since 0001-01-01", cal, label="time"))
    units = str(var.attrs.get("units", ""))
    if not np.issubdtype(values.dtype, np.number):
        return TimeAxis(np.arange(values.size, dtype=float), label=f"{dim} (index)")
    nums = values.astype("float64")
    if _SINCE.match(units):
        return _checked(TimeAxis(nums, units, calendar, label="time"), fallback_label=units)
    return TimeAxis(nums, label=f"{var_name} ({units})" if units else str(var_name))


def _checked(axis: TimeAxis, fallback_label: str | None = None) -> TimeAxis:
    """The axis itself if its first and last steps decode to dates; else a plain numeric axis."""
    finite = axis.values[np.isfinite(axis.values)]
    try:
        if finite.size == 0:
            raise ValueError("no finite time value")
        axis.dates(np.array([finite.min(), finite.max()]))
    except Exception:  # cftime raises ValueError, TypeError, OverflowError for what it cannot decode
        return TimeAxis(axis.values, None, axis.calendar, label=fallback_label or axis.label)
    return axis


_YEAR_STEPS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000)
_MONTH_STEPS = (1, 2, 3, 4, 6)


def date_ticks(axis: TimeAxis, lo: float, hi: float, *, max_ticks: int = 8) -> tuple[list[float], list[str]]:
    """Tick positions on calendar boundaries (1 January, first of a month, midnight) and their labels.

    Works for every CF calendar through cftime; returns ([], []) when the axis has no dates.
    """
    if not axis.is_dates or not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], []
    import cftime

    d0, d1 = axis.dates(lo), axis.dates(hi)
    span_days = (d1 - d0).total_seconds() / 86400.0
    cal = axis.calendar

    def pos(dates: list[Any]) -> list[float]:
        return [float(v) for v in np.atleast_1d(cftime.date2num(dates, axis.units, cal))]

    try:
        if span_days >= 3 * 365:
            years = d1.year - d0.year
            step = next((s for s in _YEAR_STEPS if years / s <= max_ticks - 1), _YEAR_STEPS[-1])
            first = (
                math.ceil(
                    (d0.year + (0 if (d0.month, d0.day, d0.hour, d0.minute, d0.second) == (1, 1, 0, 0, 0) else 1))
                    / step
                )
                * step
            )
            dates = [cftime.datetime(y, 1, 1, calendar=cal) for y in range(first, d1.year + 1, step)]
            fmt = "%Y"
        elif span_days >= 60:
            m0, m1 = d0.year * 12 + d0.month - 1, d1.year * 12 + d1.month - 1
            step = next((s for s in _MONTH_STEPS if (m1 - m0) / s <= max_ticks - 1), 12)
            start = m0 + (0 if (d0.day, d0.hour, d0.minute, d0.second) == (1, 0, 0, 0) else 1)
            start = math.ceil(start / step) * step
            dates = [cftime.datetime(m // 12, m % 12 + 1, 1, calendar=cal) for m in range(start, m1 + 1, step)]
            fmt = "%Y-%m"
        else:
            raise ValueError("short span: ticks on whole days below")
    except ValueError:
        # Days or hours: evenly spaced ticks on the numeric axis, labelled with their dates.
        from matplotlib.ticker import MaxNLocator

        ticks = [t for t in MaxNLocator(nbins=max_ticks - 1).tick_values(lo, hi) if lo <= t <= hi]
        fmt = "%Y-%m-%d" if span_days >= 3 else "%Y-%m-%d %H:%M"
        return ticks, [_fmt(axis.dates(t), fmt) for t in ticks]
    ticks = [t for t in pos(dates) if lo - 1e-9 <= t <= hi + 1e-9]
    return ticks, [_fmt(axis.dates(t), fmt) for t in ticks]


# --- variables -----------------------------------------------------------------------------------


def _is_spatial(ds: Any, dim: str) -> bool:
    if dim.lower() in _SPATIAL_NAMES:
        return True
    coord = ds.variables.get(dim)
    if coord is None:
        return False
    a = coord.attrs
    return (
        str(a.get("axis", "")).upper() in ("X", "Y")
        or str(a.get("standard_name", "")).lower() in _SPATIAL_STANDARD
        or str(a.get("units", "")).lower() in ("degrees_north", "degrees_east", "degree_north", "degree_east")
    )


@dataclass
class Reduction:
    """How a variable becomes lines over time: averaged dimensions, the dimension drawn as lines, a note."""

    spatial: list[str]
    lines: str | None
    averaged_extra: list[str]

    def note(self) -> str:
        parts = []
        if self.spatial:
            parts.append(f"mean over {', '.join(self.spatial)}")
        if self.averaged_extra:
            parts.append(f"also averaged over {', '.join(self.averaged_extra)}")
        if self.lines:
            parts.append(f"one line per {self.lines}")
        return "; ".join(parts) or "as stored"


def reduction_for(ds: Any, var: Any, time_dim: str) -> Reduction:
    """Spatial dimensions are averaged; one other small dimension (a level, a PFT) gives one line each;
    any further dimension is averaged too, and the title says so. Never a heatmap."""
    others = [str(d) for d in var.dims if d != time_dim]
    spatial = [d for d in others if _is_spatial(ds, d)]
    extra = [d for d in others if d not in spatial]
    lines = next((d for d in extra if var.sizes[d] <= MAX_LINES), None)
    return Reduction(spatial, lines, [d for d in extra if d != lines])


def _series(var: Any, time_dim: str, red: Reduction) -> list[tuple[str | None, np.ndarray]]:
    """The lines to draw: (label, values along time)."""
    reduced = var
    drop = red.spatial + red.averaged_extra
    if drop:
        reduced = reduced.mean(dim=drop, skipna=True)
    try:
        if red.lines is None:
            return [(None, np.asarray(reduced.transpose(time_dim).values, dtype="float64"))]
        arr = reduced.transpose(time_dim, red.lines)
        labels = arr[red.lines].values if red.lines in arr.coords else np.arange(arr.sizes[red.lines])
        values = np.asarray(arr.values, dtype="float64")
    except (OSError, RuntimeError) as exc:  # a chunk the library cannot read: the file is damaged
        raise InputError(f"cannot read variable {var.name!r}: {exc}") from exc
    return [(f"{red.lines}={_label(v)}", values[:, i]) for i, v in enumerate(labels)]


def _label(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def plottable(ds: Any, time_dim: str) -> list[str]:
    """Numeric data variables along ``time_dim`` (the time coordinate and bounds excluded)."""
    names = []
    for name, var in ds.data_vars.items():
        if (
            time_dim in var.dims
            and np.issubdtype(var.dtype, np.number)
            and var.size
            and not str(name).endswith(("_bnds", "_bounds"))
        ):
            if _time_score(var) and var.ndim == 1:
                continue  # a second time variable, not data
            names.append(str(name))
    return names


# --- figures -------------------------------------------------------------------------------------


def apply_time_axis(ax: Any, axis: TimeAxis) -> None:
    """Date ticks on ``ax`` (for any calendar), or a labelled numeric axis."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    finite = axis.values[np.isfinite(axis.values)]
    if axis.is_dates and finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        ticks, labels = date_ticks(axis, lo, hi)
        if len(ticks) >= 2:
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(
                FuncFormatter(lambda x, _pos, _m=dict(zip(ticks, labels)): _m.get(x) or axis.date_label(x))
            )
        else:  # a span shorter than one tick interval: label whatever ticks matplotlib picks
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: axis.date_label(x)))
        cal = "" if axis.calendar in ("standard", "gregorian", "proleptic_gregorian") else f", {axis.calendar} calendar"
        ax.set_xlabel(f"time{cal}")
    else:
        ax.set_xlabel(axis.label)


def timeseries_figure(ds: Any, name: str, time_dim: str, axis: TimeAxis, *, title_prefix: str = "") -> Any:
    """The figure of one variable's time series (the caller saves and closes it)."""
    import matplotlib.pyplot as plt

    var = ds[name]
    red = reduction_for(ds, var, time_dim)
    lines = _series(var, time_dim, red)
    fig, ax = plt.subplots(figsize=SERIES_SIZE)
    for label, values in lines:
        ax.plot(axis.values, values, label=label, linewidth=1.0)
    if any(label for label, _ in lines):
        ax.legend(fontsize="small", ncol=min(5, len(lines)), loc="best")
    apply_time_axis(ax, axis)
    units = var.attrs.get("units")
    ax.set_ylabel(f"{name} ({units})" if units else name)
    long_name = var.attrs.get("long_name")
    ax.set_title(f"{title_prefix}{name}{f' – {long_name}' if long_name else ''}: {red.note()}", fontsize="medium")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def last_step_map_figure(ds: Any, name: str, time_dim: str, axis: TimeAxis, *, title_prefix: str = "") -> Any:
    """A map of the last time step of a (time, y, x) variable."""
    import matplotlib.pyplot as plt

    var = ds[name]
    fig, ax = plt.subplots(figsize=MAP_SIZE)
    try:
        last = var.isel({time_dim: -1}).load()
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot read variable {name!r}: {exc}") from exc
    last.plot(ax=ax)
    when = (
        axis.date_label(float(axis.values[-1]))
        if axis.values.size and np.isfinite(axis.values[-1])
        else "the last step"
    )
    ax.set_title(f"{title_prefix}{name} at {when}", fontsize="medium")
    fig.tight_layout()
    return fig


# --- the whole file ------------------------------------------------------------------------------


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


def group_paths(path: str) -> list[str]:
    """Every group of a NetCDF file, root first (``/``, ``/g``, ``/g/sub``)."""
    import netCDF4

    out: list[str] = []

    def walk(g: Any, prefix: str) -> None:
        out.append(prefix or "/")
        for name, sub in g.groups.items():
            walk(sub, f"{prefix}/{name}")

    with netCDF4.Dataset(path) as nc:
        walk(nc, "")
    return out


def open_groups(path: str) -> Iterator[tuple[str, Any]]:
    """Each group as a dataset, times left undecoded; coordinates of parent groups are inherited.

    A file that cannot be opened as NetCDF, or is cut short (`salvo.ncfile`), raises `InputError` (never retried).
    """
    import xarray as xr

    from salvo.ncfile import CutShortError, check_whole

    try:
        check_whole(path)  # the netCDF library reads past the end of a cut classic file without a word
    except CutShortError as exc:
        raise InputError(str(exc)) from None
    try:
        groups = group_paths(path)
    except Exception as exc:  # netCDF4 raises OSError, RuntimeError, ValueError for bad files
        raise InputError(f"cannot read {path} as NetCDF: {exc}") from exc
    inherited: dict[str, Any] = {}
    for group in groups:
        try:
            ds = xr.open_dataset(
                path,
                engine="netcdf4",
                group=None if group == "/" else group,
                decode_times=False,
                decode_timedelta=False,
            )
        except Exception as exc:
            raise InputError(f"cannot read {path} (group {group}) as NetCDF: {exc}") from exc
        extra = {
            n: v
            for n, v in inherited.items()
            if n not in ds.variables and v.dims[0] in ds.dims and ds.sizes[v.dims[0]] == v.size
        }
        if extra:
            ds = ds.assign_coords(extra)
        for n, v in ds.variables.items():
            if v.ndim == 1 and str(v.dims[0]) == str(n):
                inherited[str(n)] = ds[n].variable
        yield group, ds


def extract_plots(*, input: str, output_dir: str, dpi: int = DEFAULT_DPI) -> dict[str, Any]:
    """Plot each numeric variable over time (every group), and a map of its last step.

    Raises `SkipItem` when the file has nothing to plot over time, `InputError` when it cannot be
    read or a plotting library is missing (deterministic: never retried).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError(f"plotting needs matplotlib: {exc}") from exc
    from salvo.fsutil import atomic_dir

    plans = []  # (group, dataset, time dim, time axis, variable names)
    reasons = []
    opened = []
    try:
        for group, ds in open_groups(input):
            opened.append(ds)
            found = find_time(ds)
            if found is None:
                continue
            dim, var_name = found
            steps = ds.sizes[dim]
            names = plottable(ds, dim)
            if steps < 2:
                reasons.append(f"only {steps} time step")
                continue
            if not names:
                reasons.append(f"no numeric variable along {dim!r}")
                continue
            plans.append((group, ds, dim, time_axis(ds, dim, var_name), names))
        if not plans:
            raise SkipItem(reasons[0] if reasons else "no time-like dimension")
        plots, used = 0, set()
        try:
            with atomic_dir(output_dir) as tmp:
                for group, ds, dim, axis, names in plans:
                    prefix = "" if group == "/" else _safe(group.strip("/").replace("/", ".")) + "."
                    title_prefix = "" if group == "/" else f"{group.strip('/')}/"
                    for name in names:
                        base = prefix + _safe(name)
                        while base in used:
                            base += "_"
                        used.add(base)
                        fig = timeseries_figure(ds, name, dim, axis, title_prefix=title_prefix)
                        fig.savefig(tmp / f"{base}_timeseries.png", dpi=dpi)
                        plt.close(fig)
                        plots += 1
                        var = ds[name]
                        if var.ndim == 3 and all(_is_spatial(ds, str(d)) for d in var.dims if d != dim):
                            fig = last_step_map_figure(ds, name, dim, axis, title_prefix=title_prefix)
                            fig.savefig(tmp / f"{base}_last_step_map.png", dpi=dpi)
                            plt.close(fig)
                            plots += 1
        except ImportError as exc:
            raise InputError(f"plotting needs a library that is missing: {exc}") from exc
    finally:
        for ds in opened:
            ds.close()
    steps = max(p[1].sizes[p[2]] for p in plans)
    return {
        "outputs": [output_dir],
        "metrics": {"plots": plots, "time_steps": int(steps), "variables": sum(len(p[4]) for p in plans)},
    }
