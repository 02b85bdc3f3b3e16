"""Workers of the report tests: real functions run in real child processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def flaky(marker: str, out: str, size: int = 200_000) -> dict:
    """Fails (exit 1 through an exception) the first time, succeeds the next: one retry, two attempts.

    It does real work each time (CPU and a file written), so the attempt's figures are not empty.
    """
    total = sum(i * i for i in range(size))
    if not os.path.exists(marker):
        Path(marker).write_text("failed once\n")
        raise RuntimeError(f"first attempt fails on purpose ({total})")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(os.urandom(64 * 1024))
    return {"outputs": [out]}


def steady(out: str) -> dict:
    """Succeeds at once."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("ok\n")
    return {"outputs": [out]}


def flaky_generator(config: dict, samples: list[int]):
    """An assembly generator whose chunk holding sample 0 fails once (``config['marker']``), then succeeds."""
    import pandas as pd

    if 0 in samples and not os.path.exists(config["marker"]):
        Path(config["marker"]).write_text("failed once\n")
        raise RuntimeError("chunk 0 fails once on purpose")
    return pd.DataFrame([{"sample": s, "value": float(s)} for s in samples])


if __name__ == "__main__":  # as a command: `python workers.py MARKER OUT` fails once, then succeeds
    marker, out = sys.argv[1], sys.argv[2]
    if not os.path.exists(marker):
        Path(marker).write_text("failed once\n")
        print("first attempt fails on purpose", file=sys.stderr)
        sys.exit(3)
    Path(out).write_text("ok\n")
