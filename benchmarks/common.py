"""Measuring helpers the benchmarks share: wall time and peak memory of a child process."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"


def scale() -> float:
    """SALVO_BENCH_SCALE: 1.0 runs the sizes the issues ask for; smaller for a quick look."""
    return float(os.environ.get("SALVO_BENCH_SCALE", "1.0"))


@dataclass
class Measured:
    """Wall time and peak RSS of one measured command."""

    wall_s: float
    peak_rss_mb: float
    returncode: int


def measure(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> Measured:
    """Run ``argv``; return its wall time and the peak RSS of it and its waited-for children."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace")[-3000:])
    return Measured(wall, usage.ru_maxrss / 1024, code)


def bench_env() -> dict[str, str]:
    """The environment benchmarks run commands in: this venv first on PATH, no telemetry."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def machine() -> str:
    """One line about the machine the numbers come from."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def self_peak_mb() -> float:
    """Peak RSS of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: Goal verdicts the benchmarks of this run report (``run_all`` prints them as one table at the top).
GOALS: list[dict[str, str]] = []


def goal(what: str, *, measured: str, anchor: str, target: str, met: bool, miss: str = "", why: str = "") -> str:
    """Record one goal's verdict for RESULTS.md's summary; return it as one Markdown line."""
    verdict = "met" if met else f"missed{f' by {miss}' if miss else ''}"
    GOALS.append(
        {"what": what, "measured": measured, "anchor": anchor, "target": target, "verdict": verdict, "why": why}
    )
    return f"- **Goal ({what})**: {measured} vs {anchor}; goal {target}: **{verdict}**" + (
        f". {why}" if why and not met else ""
    )


class LocalServer:
    """The benchmark's own local Prefect server (the default set-up of a `salvo` command), started untimed.

    ``with LocalServer(env, home) as env:`` starts it in ``home`` on a free port and stops it at the end,
    so that every timed command reuses it as a user's second command would.
    """

    def __init__(self, env: dict[str, str], home: Path) -> None:
        from salvo.procs import free_port

        self.env = {k: v for k, v in env.items() if k not in ("PREFECT_API_URL", "PYTEST_CURRENT_TEST")}
        self.env.update(
            PREFECT_HOME=str(home),
            SALVO_LOCAL_SERVER="1",
            SALVO_SERVER_PORT=str(free_port()),
            PREFECT_UI_ENABLED="false",
        )

    def __enter__(self) -> dict[str, str]:
        subprocess.run(
            [sys.executable, "-m", "cli", "server", "start"], env=self.env, cwd=ROOT, check=True, capture_output=True
        )
        return self.env

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            [sys.executable, "-m", "cli", "server", "stop"], env=self.env, cwd=ROOT, check=False, capture_output=True
        )
