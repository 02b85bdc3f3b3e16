"""A `--job-command` for the tests: writes part of its output, leaves a marker, then waits or fails.

Usage: python slow_writer.py MODE MARKER JOB_OUTPUT_DIR
MODE: ``hang`` (write half, then sleep), ``fail`` (write half, exit 3), ``ok`` (write everything).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    mode, marker, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    (out / "dataset.csv").write_text("siret\n1\n")
    if mode == "ok":
        (out / "dataset.parquet").write_bytes(b"complete")
        return 0
    marker.write_text(str(out))
    if mode == "fail":
        print("half written, giving up", file=sys.stderr)
        return 3
    time.sleep(600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
