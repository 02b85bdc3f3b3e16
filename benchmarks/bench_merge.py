"""Benchmark: the gridded merge (salvage-merge) against CDO's ``cdo ifthenelse MASK RERUN ORIG OUT``.

Two dvmdostem-shaped runs (a salvaged one and a re-run), each 8 monthly output files of
``(time=1200, y=150, x=185)`` float32 in NETCDF4, 1.98 GiB for the two runs, 10% of cells re-run;
written once uncompressed and once zlib-compressed (level 1 with shuffle, one time step a chunk,
as a model writing step by step leaves it), each merged by:
- salvo's ``merge_outputs`` (streamed, with its cell-by-cell check of the merged file, and
  run_status.nc's merge_source), one child process;
- CDO, the tool climate modellers use for exactly this: ``cdo -s -f nc4 [-z zip_1] ifthenelse
  MASK RERUN ORIG OUT`` over the 8 files, one after the other in one ``sh`` loop. MASK (1 where the
  re-run's run_status is 100) is written once beforehand, untimed.
Runs are paired (salvo, CDO; ``SALVO_BENCH_REPEAT`` pairs, default 1, 2 with ``SALVO_BENCH_FULL=1``,
interleaved); wall time is the median, peak RSS the highest,
measured by ``/usr/bin/time``. The merged values of the first salvo run are checked identical,
variable by variable, to CDO's. ``SALVO_BENCH_SCALE`` scales the number of years (1.0: 100).
With ``SALVO_BENCH_FULL=1`` the seed's eager merge (each file loaded, ``xr.where``) runs too.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FILES = 8
NY, NX, YEARS = 150, 185, 100  # 1,200 monthly steps of 150 x 185 float32: 133 MB per file at scale 1
REPEAT = int(os.environ.get("SALVO_BENCH_REPEAT", "2" if os.environ.get("SALVO_BENCH_FULL") == "1" else "1"))
FULL = os.environ.get("SALVO_BENCH_FULL") == "1"
#: zlib level (with shuffle) of the compressed outputs, and CDO's output compression to match.
LEVEL = 1


def make_data(root: Path, *, years: int, compress: bool) -> int:
    """Write a salvaged and a re-run output folder in dvmdostem's layouts; return the bytes of both runs."""
    from salvo.gridded.dvmdostem import OutputSpec, create_output, write_status

    rng = np.random.default_rng(0)
    failed = rng.random((NY, NX)) < 0.1
    write_status(root / "salvaged" / "run_status.nc", status=np.where(failed, -100, 100))
    write_status(root / "rerun" / "run_status.nc", status=np.where(failed, 100, 0))
    yy, xx = np.meshgrid(np.linspace(0, 3, NY), np.linspace(0, 3, NX), indexing="ij")
    field = (np.sin(yy) * np.cos(xx) * 100).astype("f4")  # smooth in space, as model outputs are
    for folder, offset in (("salvaged", 0.0), ("rerun", 0.5)):
        for i in range(FILES):
            spec = OutputSpec(f"VAR{i:02d}", "f4", "g/m2/month", f"variable {i}", monthly=True)
            make = _create_compressed if compress else create_output
            with make(root / folder / spec.filename, spec, ny=NY, nx=NX, years=years) as ds:
                v = ds.variables[spec.var]
                step = 120
                for t in range(0, v.shape[0], step):
                    n = min(step, v.shape[0] - t)
                    season = np.sin(np.arange(t, t + n) * np.pi / 6).astype("f4")[:, None, None] * 10
                    noise = np.round(rng.random((n, NY, NX), dtype="f4"), 2)
                    v[t : t + n] = field + season + noise + offset + i
    return sum(p.stat().st_size for folder in ("salvaged", "rerun") for p in (root / folder).iterdir())


def _create_compressed(path: Path, spec: object, *, ny: int, nx: int, years: int):  # noqa: ANN202
    """dvmdostem's layout, as ``create_output`` writes it, with the variable zlib-compressed at LEVEL (its own: 4),
    one time step a chunk. With netCDF's default chunks here (600 x 50 x 62, 7.4 MB) CDO, which reads one time
    step at a time, decompressed nine chunks per step: more than 3.5 minutes for the first file on the busy machine."""
    import netCDF4

    from salvo.gridded.dvmdostem import fill_of

    ds = netCDF4.Dataset(path, "w", format="NETCDF4")
    nt = years * 12
    for d, n in (("time", nt), ("y", ny), ("x", nx)):
        ds.createDimension(d, n)
    t = ds.createVariable("time", "f8", ("time",))
    t.setncatts({"units": "days since 1901-1-1 0:0:0", "calendar": "365_day", "long_name": "time"})
    t[:] = np.arange(nt) * (365.0 / 12)
    v = ds.createVariable(
        spec.var,
        spec.dtype,
        ("time", "y", "x"),
        fill_value=fill_of(spec.dtype),  # type: ignore[attr-defined]
        compression="zlib",
        complevel=LEVEL,
        shuffle=True,
        chunksizes=(1, ny, nx),
    )
    v.setncatts({"units": spec.units, "long_name": spec.long_name})  # type: ignore[attr-defined]
    return ds


def write_mask(root: Path) -> Path:
    """CDO's MASK: 1 where the re-run's run_status is 100, else 0, on the outputs' (y, x)."""
    import netCDF4

    with netCDF4.Dataset(root / "rerun" / "run_status.nc") as ds:
        status = np.asarray(ds.variables["run_status"][:])
    path = root / "mask.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("y", NY)
        ds.createDimension("x", NX)
        ds.createVariable("mask", "i4", ("y", "x"))[:] = (status == 100).astype("i4")
    return path


def _cdo(root: Path, out: Path, compress: bool) -> list[str]:
    z = f"-z zip_{LEVEL} " if compress else ""
    loop = (
        f"mkdir -p {out} && cd {root} && for f in salvaged/*_monthly_tr.nc; do n=$(basename $f); "
        f"cdo -s -f nc4 {z}ifthenelse mask.nc rerun/$n salvaged/$n {out}/$n || exit 1; done"
    )
    return ["sh", "-c", loop]


def _eager(salvaged: Path, rerun: Path, out: Path) -> None:
    """The seed's way: load each file and call xr.where (on the outputs' y/x)."""
    import xarray as xr

    out.mkdir()
    status = xr.open_dataset(rerun / "run_status.nc")["run_status"].load() == 100
    take = status.rename({"Y": "y", "X": "x"})
    for f in sorted(salvaged.glob("*.nc")):
        s, r = xr.open_dataset(f).load(), xr.open_dataset(rerun / f.name).load()
        merged = s.copy()
        for name, var in s.data_vars.items():
            if "y" in var.dims and "x" in var.dims:
                merged[name] = xr.where(take, r[name], var, keep_attrs=True)
            elif "Y" in var.dims and "X" in var.dims:
                merged[name] = xr.where(status, r[name], var, keep_attrs=True)
        merged.to_netcdf(out / f.name)
        s.close(), r.close()


def _child(mode: str, salvaged: str, rerun: str, out: str) -> None:
    if mode == "salvo":
        from salvo.gridded.merge import merge_outputs

        merge_outputs(salvaged, rerun_dir=rerun, output_dir=out, log=lambda _: None)
    else:
        _eager(Path(salvaged), Path(rerun), Path(out))


def _measure(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one child process tree.

    The child is started by a tiny ``/usr/bin/time`` process: Linux carries the forking process's
    high-water RSS over into ``ru_maxrss`` of a child forked from this (large) Python process.
    Peak RSS is the largest single process (for CDO's loop: the largest ``cdo``).
    """
    subprocess.run(["sync"], check=True)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss.name, *cmd], cwd=ROOT, check=True)
        wall = time.perf_counter() - start
        kb, user, system = rss.read().split()[-3:]
        return wall, int(kb) / 1024.0, float(user) + float(system)


def check_identical(ours: Path, cdo: Path) -> int:
    """Raise unless every merged variable holds the same values in both outputs; return the values compared."""
    import netCDF4

    compared = 0
    for f in sorted(cdo.glob("*.nc")):
        with netCDF4.Dataset(ours / f.name) as a, netCDF4.Dataset(f) as b:
            for name in a.variables:
                if name not in b.variables or a.variables[name].dimensions[-2:] != ("y", "x"):
                    continue
                va, vb = a.variables[name], b.variables[name]
                va.set_auto_maskandscale(False), vb.set_auto_maskandscale(False)
                for t in range(0, va.shape[0], 120):
                    x, y = np.asarray(va[t : t + 120]), np.asarray(vb[t : t + 120])
                    if x.shape != y.shape or not np.array_equal(x, y):
                        raise AssertionError(f"{f.name}:{name} differs between salvo's merge and CDO's at steps {t}..")
                    compared += x.size
    if not compared:
        raise AssertionError("no variable compared between salvo's merge and CDO's")
    return compared


def _one(root: Path, *, years: int, compress: bool) -> dict:
    (root / "salvaged").mkdir(parents=True), (root / "rerun").mkdir()
    t0 = time.perf_counter()
    size = make_data(root, years=years, compress=compress)
    write_mask(root)
    gen = time.perf_counter() - t0
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    runs: dict[str, list[tuple[float, float, float]]] = {"salvo": [], "cdo": []}
    compared = 0
    for i in range(REPEAT):
        runs["salvo"].append(
            _measure([*me, "salvo", str(root / "salvaged"), str(root / "rerun"), str(root / f"ours{i}")])
        )
        runs["cdo"].append(_measure(_cdo(root, root / f"cdo{i}", compress)))
        if i == 0:
            compared = check_identical(root / "ours0", root / "cdo0")
        out_size = sum(p.stat().st_size for p in (root / f"ours{i}").iterdir() if p.name != "run_status.nc")
        shutil.rmtree(root / f"ours{i}"), shutil.rmtree(root / f"cdo{i}")
    if FULL:
        runs["eager"] = [_measure([*me, "eager", str(root / "salvaged"), str(root / "rerun"), str(root / "eager")])]
    return {"size": size, "gen": gen, "runs": runs, "compared": compared, "out_size": out_size}


def run() -> str:
    """Run the benchmark on uncompressed and compressed data; return a markdown section."""
    from benchmarks.common import goal

    if shutil.which("cdo") is None:
        return "## Gridded merge vs CDO\n\nCDO is not installed (`make bench` installs it from Debian's packages).\n"
    scale = float(os.environ.get("SALVO_BENCH_SCALE", "1.0"))
    years = max(1, round(YEARS * scale))
    results = {}
    for compress in (False, True):
        root = Path(tempfile.mkdtemp(prefix="salvo-bench-merge-", dir=os.environ.get("SALVO_BENCH_DIR")))
        try:
            results[compress] = _one(root, years=years, compress=compress)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    lines = [
        "## Gridded merge vs CDO (salvage-merge)",
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        f"Scale {scale}: {12 * years} monthly steps.",
        "",
        "| data | method | wall time (s) | runs (s) | vs CDO (wall) | CPU user+sys (s) | vs CDO (CPU)"
        " | peak RSS (MiB) |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    names = {
        "salvo": "salvo `merge_outputs` (streamed, checked cell by cell)",
        "cdo": f"`cdo ifthenelse` x {FILES} files",
        "eager": "seed: load each file + `xr.where`",
    }
    goals, notes = [], []
    for compress, res in results.items():
        label = f"zlib level {LEVEL}" if compress else "uncompressed"
        med = {
            k: (statistics.median(w for w, _, _ in v), max(r for _, r, _ in v), statistics.median(c for _, _, c in v))
            for k, v in res["runs"].items()
        }
        for key, (wall, rss, cpu) in med.items():
            each = ", ".join(f"{w:.1f}" for w, _, _ in res["runs"][key])
            lines.append(
                f"| {label}, {res['size'] / 2**30:.2f} GiB in | {names[key]} | {wall:.1f} | {each} | "
                f"{wall / med['cdo'][0]:.2f}x | {cpu:.1f} | {cpu / max(med['cdo'][2], 1e-6):.2f}x | {rss:.0f} |"
            )
        notes.append(
            f"{label}: inputs {res['size'] / 2**30:.2f} GiB (both runs) written in {res['gen']:.0f} s; merged output "
            f"{res['out_size'] / 2**30:.2f} GiB; {res['compared']:,} merged values identical to CDO's"
        )
        ratio, mem = med["salvo"][0] / med["cdo"][0], med["salvo"][1]
        goals.append(
            goal(
                f"merge, {label}",
                measured=f"{med['salvo'][0]:.1f} s, {mem:.0f} MiB",
                anchor=f"`cdo ifthenelse` {med['cdo'][0]:.1f} s, {med['cdo'][1]:.0f} MiB",
                target="<= 1.0x CDO, <= 300 MiB",
                met=ratio <= 1.0 and mem <= 300,
                miss=f"{ratio:.2f}x CDO (CPU {med['salvo'][2] / max(med['cdo'][2], 1e-6):.2f}x), {mem:.0f} MiB",
                why=WHY_COMPRESSED if compress else WHY_PLAIN,
            )
        )
    return "\n".join([*lines, "", *(f"- {n}" for n in notes), *goals]) + "\n"


WHY_PLAIN = (
    "both read two runs and write one through NetCDF/HDF5; salvo also checks every merged cell (a digest per "
    "slab taken while writing, then the closed file read back once) and merges run_status.nc, which CDO does not"
)
WHY_COMPRESSED = (
    "the time is zlib's: decompressing both runs and compressing the merged one; salvo also reads the "
    "merged file back (decompressing it again) for its cell-by-cell check"
)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        _child(*sys.argv[2:6])
    else:
        sys.path.insert(0, str(ROOT))
        print(run())
