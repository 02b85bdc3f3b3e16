"""A stand-in for a user's own `extract_results.py`: `ok_*`, `slow_*`, `silent_*`, `hang_*`, `segv_*` inputs."""

EXTRACT = r"""
import os, sys, time, pathlib
inp, out, counter = sys.argv[1], sys.argv[2], sys.argv[3]
mode = pathlib.Path(inp).name.split("_")[0]  # the file name says how to behave
pathlib.Path(counter).mkdir(parents=True, exist_ok=True)
pathlib.Path(counter, f"{pathlib.Path(inp).name}.{os.getpid()}").touch()
if mode == "slow":
    time.sleep(float(os.environ.get("SLOW_SECONDS", "1")))
if mode == "silent":
    sys.exit(0)
if mode == "hang":
    time.sleep(3600)
if mode == "segv":
    import ctypes; ctypes.string_at(0)
pathlib.Path(out).mkdir(parents=True, exist_ok=True)
(pathlib.Path(out) / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
"""


def write_script(folder) -> str:
    """Write the stand-in script; return its path."""
    import pathlib

    path = pathlib.Path(folder) / "extract_results.py"
    path.write_text(EXTRACT)
    return str(path)


def command(script: str, counter: str) -> str:
    """The --worker-command template that runs the stand-in."""
    return f"python3 {script} {{input}} {{output_dir}} {counter}"
