"""Files in the layouts dvmdostem really writes, for tests, the demo, the simulated model and the benchmark.

What dvmdostem writes (from its C++ writers, see ``REAL_FORMATS.md``):

- outputs such as ``GPP_monthly_tr.nc``: NETCDF4, one variable on ``(time, [pftpart], [pft] | [layer], y, x)``
  (lowercase ``y``/``x``), int, float or double, ``_FillValue`` -9999 of the variable's type,
  ``units``, ``long_name``, and a ``time`` variable with ``units`` and ``calendar = "365_day"``;
- ``run_status.nc``: NETCDF3_CLASSIC on ``(Y, X)`` (uppercase): ``run_status`` int with ``_FillValue``
  -9999 and attributes ``success=100 masked=0 timeout=-5 fail=-100``, and ``total_runtime`` int seconds;
- restart files such as ``restart-tr.nc``: NETCDF3_CLASSIC on ``Y, X, pft, pftpart, snowlayer, rootlayer,
  soillayer, rocklayer, fronts, prevten, prevtwelve``, variables ``(Y, X, ...)``.

Every file is created in place with ``NC_CLOBBER`` (``clobber=True``): an existing file at the path is
truncated, its inode reused, exactly as the model does in an ``output/`` folder it wrote before.
The grid comes from a run-mask: by default the public 10 x 10 Imnaviat test site (``data/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The public run-mask of dvmdostem's Imnaviat test site (10 x 10), kept in the package.
SITE_MASK = Path(__file__).with_name("data") / "imnaviat-run-mask.nc"

SUCCESS, MASKED, TIMEOUT, FAIL, FILL = 100, 0, -5, -100, -9999
#: What a cell that failed part-way leaves in its outputs (the model wrote some values, then stopped).
JUNK = -7777

#: Sizes of dvmdostem's fixed dimensions.
NUM_PFT, NUM_PFT_PART = 10, 3
RESTART_DIMS = {
    "pft": NUM_PFT,
    "pftpart": NUM_PFT_PART,
    "snowlayer": 6,
    "rootlayer": 10,
    "soillayer": 23,
    "rocklayer": 5,
    "fronts": 10,
    "prevten": 10,
    "prevtwelve": 12,
}


@dataclass(frozen=True)
class OutputSpec:
    """One output file: variable name, NetCDF type, per-PFT / per-part / per-layer, time step and stage."""

    var: str
    dtype: str  # "i4", "f4" or "f8"
    units: str
    long_name: str
    pft: bool = False
    pftpart: bool = False
    layer: bool = False
    monthly: bool = False
    stage: str = "tr"

    @property
    def filename(self) -> str:
        """dvmdostem's name for it: ``VAR_{monthly|yearly}_{stage}.nc``."""
        return f"{self.var}_{'monthly' if self.monthly else 'yearly'}_{self.stage}.nc"

    def dims(self) -> tuple[str, ...]:
        """Dimensions in dvmdostem's order."""
        return (
            "time",
            *(("pftpart",) if self.pftpart else ()),
            *(("pft",) if self.pft else ()),
            *(("layer",) if self.layer else ()),
            "y",
            "x",
        )


#: A small output set covering every dimension layout and type the model writes.
DEFAULT_OUTPUTS = (
    OutputSpec("GPP", "f8", "g/m2/time", "GPP", pft=True, monthly=True),
    OutputSpec("VEGC", "f8", "g/m2", "vegetation carbon", pft=True, pftpart=True),
    OutputSpec("LAI", "f4", "m2/m2", "leaf area index"),
    OutputSpec("LAYERDEPTH", "f8", "m", "layer depth", layer=True),
    OutputSpec("CMTNUM", "i4", "", "community type"),
)

#: Restart variables: name, type, extra dims after (Y, X).
RESTART_VARS = (
    ("dsr", "i4", ()),
    ("yrsdist", "i4", ()),
    ("watertab", "f8", ()),
    ("vegcov", "f8", ("pft",)),
    ("ifwoody", "i4", ("pft",)),
    ("vegc", "f8", ("pftpart", "pft")),
    ("TSsoil", "f8", ("soillayer",)),
    ("TSsnow", "f8", ("snowlayer",)),
    ("frontFT", "i4", ("fronts",)),
    ("rootfrac", "f8", ("rootlayer", "pft")),
)


def fill_of(dtype: str | np.dtype) -> np.generic:
    """-9999 in the variable's own type (dvmdostem's MISSING_I / MISSING_F / MISSING_D)."""
    return np.dtype(dtype).type(FILL)


def site_mask(
    path: str | os.PathLike[str], *, run: np.ndarray | None = None, template: str | os.PathLike[str] = SITE_MASK
) -> Path:
    """Write a run-mask: a copy of ``template`` (every variable and attribute) with ``run`` values if given."""
    from salvo.gridded.formats import read_mask, rewrite_mask

    values = read_mask(template) if run is None else np.asarray(run)
    return rewrite_mask(template, path, run=values)


def cell_values(name: str, shape: tuple[int, ...], dims: tuple[str, ...]) -> np.ndarray:
    """The deterministic 'science' of the simulated model: a value for every index of a variable."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    base = float(sum(map(ord, name)) % 97)
    weights = {"time": 0.01, "pft": 0.1, "pftpart": 0.3, "layer": 0.25, "Y": 10.0, "y": 10.0, "X": 1.0, "x": 1.0}
    return base + sum(g * weights.get(d, 0.5) for g, d in zip(grids, dims))


def _cells(values: np.ndarray, dims: tuple[str, ...], *, ran: np.ndarray, junk: np.ndarray, fill) -> np.ndarray:
    """``values`` where the cell ran, JUNK where it failed part-way, else the fill (the grid dims are y/x or Y/X)."""
    low = [d.lower() for d in dims]
    iy, ix = low.index("y"), low.index("x")
    shape = [1] * len(dims)
    shape[iy], shape[ix] = ran.shape
    ran_b = (ran if iy < ix else ran.T).reshape(shape)
    junk_b = (junk if iy < ix else junk.T).reshape(shape)
    return np.where(ran_b, values, np.where(junk_b, JUNK, fill))


def _create(path: Path, fmt: str):
    import netCDF4

    # NC_CLOBBER, in place: an existing file keeps its inode and is truncated, as in dvmdostem.
    ds = netCDF4.Dataset(os.fspath(path), "w", clobber=True, format=fmt)
    ds.set_auto_maskandscale(False)
    return ds


def create_output(
    path: str | os.PathLike[str],
    spec: OutputSpec,
    *,
    ny: int,
    nx: int,
    years: int = 2,
    layers: int = 4,
    compress: bool = False,
):
    """Create an output file as ModelData.cpp does and return it open, its variable not yet written."""
    nt = years * 12 if spec.monthly else years
    sizes = {"time": nt, "pftpart": NUM_PFT_PART, "pft": NUM_PFT, "layer": layers, "y": ny, "x": nx}
    ds = _create(Path(path), "NETCDF4")
    try:
        for d in spec.dims():
            ds.createDimension(d, sizes[d])
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 1901-1-1 0:0:0", "calendar": "365_day", "long_name": "time"})
        t[:] = np.arange(nt) * (365.0 / 12 if spec.monthly else 365.0)
        opts = {"compression": "zlib", "complevel": 4, "shuffle": True} if compress else {}
        v = ds.createVariable(spec.var, spec.dtype, spec.dims(), fill_value=fill_of(spec.dtype), **opts)
        v.setncatts({"units": spec.units, "long_name": spec.long_name})
    except BaseException:
        ds.close()
        raise
    return ds


def write_output(
    path: str | os.PathLike[str],
    spec: OutputSpec,
    *,
    status: np.ndarray,
    years: int = 2,
    layers: int = 4,
    compress: bool = False,
) -> Path:
    """Write one output file as ModelData.cpp does, for cells with ``status`` (100 ran, <0 junk, else fill)."""
    ny, nx = status.shape
    with create_output(path, spec, ny=ny, nx=nx, years=years, layers=layers, compress=compress) as ds:
        v = ds.variables[spec.var]
        dims = spec.dims()
        values = cell_values(spec.var, v.shape, dims)
        fill = fill_of(spec.dtype)
        v[:] = _cells(values, dims, ran=status == SUCCESS, junk=(status < 0) & (status != FILL), fill=fill).astype(
            spec.dtype
        )
    return Path(path)


def write_status(path: str | os.PathLike[str], *, status: np.ndarray, runtime: np.ndarray | None = None) -> Path:
    """Write ``run_status.nc`` as TEM.cpp does: NETCDF3_CLASSIC, ``run_status(Y, X)`` and ``total_runtime(Y, X)``."""
    path = Path(path)
    status = np.asarray(status)
    with _create(path, "NETCDF3_CLASSIC") as ds:
        ds.createDimension("Y", status.shape[0])
        ds.createDimension("X", status.shape[1])
        v = ds.createVariable("run_status", "i4", ("Y", "X"), fill_value=np.int32(FILL))
        v.setncatts(
            {
                "success": np.int32(SUCCESS),
                "masked": np.int32(MASKED),
                "timeout": np.int32(TIMEOUT),
                "fail": np.int32(FAIL),
            }
        )
        v[:] = status.astype("i4")
        t = ds.createVariable("total_runtime", "i4", ("Y", "X"), fill_value=np.int32(FILL))
        t.setncatts({"units": "seconds"})
        t[:] = (
            np.where(status == FILL, FILL, np.where(status != MASKED, 3, 0)) if runtime is None else np.asarray(runtime)
        ).astype("i4")
    return path


def write_restart(path: str | os.PathLike[str], *, status: np.ndarray) -> Path:
    """Write a restart file as RestartData.cpp does: NETCDF3_CLASSIC, variables ``(Y, X, ...)``."""
    path = Path(path)
    ny, nx = status.shape
    sizes = {"Y": ny, "X": nx, **RESTART_DIMS}
    with _create(path, "NETCDF3_CLASSIC") as ds:
        for d, n in sizes.items():
            ds.createDimension(d, n)
        for name, dtype, extra in RESTART_VARS:
            dims = ("Y", "X", *extra)
            fill = fill_of(dtype)
            v = ds.createVariable(name, dtype, dims, fill_value=fill)
            values = cell_values(name, tuple(sizes[d] for d in dims), dims)
            v[:] = _cells(values, dims, ran=status == SUCCESS, junk=(status < 0) & (status != FILL), fill=fill).astype(
                dtype
            )
    return path


def write_run(
    output: str | os.PathLike[str],
    *,
    status: np.ndarray,
    outputs=DEFAULT_OUTPUTS,
    years: int = 2,
    layers: int = 4,
    compress: bool = False,
    restart: bool = True,
) -> list[Path]:
    """Write a whole ``output/`` folder for cells with ``status``, in place and with clobber, like one model run."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    status = np.asarray(status)
    written = [
        write_output(out / s.filename, s, status=status, years=years, layers=layers, compress=compress) for s in outputs
    ]
    if restart:
        written.append(write_restart(out / "restart-tr.nc", status=status))
    written.append(write_status(out / "run_status.nc", status=status))
    return written
