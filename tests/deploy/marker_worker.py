"""A `--worker-command` for tests: leave one marker per invocation, then write a small PNG.

Usage: python marker_worker.py INPUT OUTPUT_DIR MARKER_DIR [SLEEP_SECONDS [GATE_FILE]]

INPUT is a file, or just a name (a subject id). With GATE_FILE, the worker waits until that file
exists before it finishes, so a test can hold items back until everything it needs is running.

The marker ``MARKER_DIR/<input stem>.<pid>.<ns>`` holds JSON with the pids of this process's
ancestors, so a test can tell which process tree (a Dask worker, a Prefect worker) ran the item.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

#: The first bytes of every PNG file; the output check looks for them.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ancestors() -> list[int]:
    """Pids from this process's parent up to init, read from /proc."""
    pids, pid = [], os.getppid()
    while pid > 1:
        pids.append(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def main(argv: list[str]) -> int:
    """Write the marker, wait, write the plot."""
    src, out, markers = Path(argv[0]), Path(argv[1]), Path(argv[2])
    pause = float(argv[3]) if len(argv) > 3 else 0.0
    gate = Path(argv[4]) if len(argv) > 4 else None
    markers.mkdir(parents=True, exist_ok=True)
    doc = {"input": str(src), "pid": os.getpid(), "ancestors": ancestors(), "host": socket.gethostname()}
    (markers / f"{src.stem}.{os.getpid()}.{time.monotonic_ns()}").write_text(json.dumps(doc))
    time.sleep(pause)
    deadline = time.monotonic() + 300
    while gate is not None and not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    out.mkdir(parents=True, exist_ok=True)
    body = src.read_bytes()[:64] if src.is_file() else src.name.encode()  # INPUT may be a name only
    (out / f"{src.stem}.png").write_bytes(PNG_SIGNATURE + body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
