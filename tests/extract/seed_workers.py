"""Workers written the way the seed's users write their `extract_results.py`.

Both take one argument, the file as the seed's glob spelled it, write their PNGs into `<stem>/` of
the folder they run in (sub-folders too), print `... Skipping.` for a file with a single time step
and exit 0 without plots, and fail with a traceback (exit 1) on a file they cannot open.
"""

#: Standard library only; behaves by the file's first bytes: GOOD, ONESTEP, NOPLOTS, anything else
#: (corrupt). Each run leaves a marker `<name>.<pid>` in $CALLS holding its working folder and
#: whether `<stem>/` already existed there when it started. NO_PLOTS=1 makes every run write no PNG.
STDLIB = r"""
import os, sys
from pathlib import Path

nc_file = sys.argv[1]
stem = Path(nc_file).stem
calls = Path(os.environ["CALLS"])
calls.mkdir(parents=True, exist_ok=True)
(calls / f"{Path(nc_file).name}.{os.getpid()}").write_text(f"{os.getcwd()}\n{os.path.exists(stem)}\n")
if os.environ.get("HANG_ON") == Path(nc_file).name:
    import time
    time.sleep(3600)
data = open(nc_file, "rb").read()
if data.startswith(b"ONESTEP"):
    print(f"{nc_file} has only one time step. Skipping.")
    sys.exit(0)
if not data.startswith((b"GOOD", b"NOPLOTS")):
    raise ValueError(f"cannot read {nc_file}: not a NetCDF file")
os.makedirs(os.path.join(stem, "maps"), exist_ok=True)
with open(os.path.join(stem, "log.txt"), "w") as fh:
    fh.write("plotting\n")
if data.startswith(b"NOPLOTS") or os.environ.get("NO_PLOTS") == "1":
    print("no variable to plot")
    sys.exit(0)
Path(stem, "maps", "GPP.png").write_bytes(b"\x89PNG\r\n\x1a\n" + data * 8)
Path(stem, "summary.png").write_bytes(b"\x89PNG\r\n\x1a\n" + stem.encode() * 8)
print(f"Saved plots to {stem}/")
"""

#: A real plotting worker on real NetCDF files: xarray and matplotlib, as the seed's users have.
XARRAY = r"""
import os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import xarray as xr

nc_file = sys.argv[1]
stem = os.path.splitext(os.path.basename(nc_file))[0]
ds = xr.open_dataset(nc_file, decode_times=False)
if "time" not in ds.dims or ds.sizes["time"] < 2:
    print(f"{nc_file}: only one time step. Skipping.")
    sys.exit(0)
os.makedirs(stem, exist_ok=True)
for name, var in ds.data_vars.items():
    if "time" in var.dims and var.dtype.kind == "f" and not name.startswith("no_plot"):
        series = var.mean(dim=[d for d in var.dims if d != "time"]) if var.ndim > 1 else var
        fig, ax = plt.subplots()
        ax.plot(series.values)
        fig.savefig(os.path.join(stem, f"{name}.png"))
        plt.close(fig)
print("done")
"""
