"""Small helpers the tests share: process checks and running the `salvo` command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from salvo.procs import process_alive as alive  # noqa: F401 - the tests' name for it

#: Public files in the real tools' formats, copied into the repository with their provenance
#: (tests/data/PROVENANCE.md): a clone alone has everything the tests read.
PUBLIC_FIXTURES = Path(__file__).resolve().parent / "data"


def child_env_for(api_url: str) -> dict[str, str]:
    """Environment for a child process (salvo, a Dask worker): this interpreter, this Prefect API."""
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        SALVO_LOCAL_SERVER="0",  # tests name their API; never leave a local server behind
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def wait_until(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def salvo(
    *args: str, env: dict[str, str], cwd: str | os.PathLike[str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run `salvo ARGS` in a child process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def markers(folder: str | os.PathLike[str], name: str = "*") -> list[Path]:
    """Invocation markers written by test workers (one file per run of an item)."""
    d = Path(folder)
    # Not the hidden temporary file a worker writes a marker to before renaming it into place:
    # pathlib's glob matches dot-files, and one read mid-write is empty.
    return sorted(p for p in d.glob(f"{name}.*") if not p.name.startswith(".")) if d.is_dir() else []
