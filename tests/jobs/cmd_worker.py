"""A `--job-command` builder for the tests: builds, fails or hangs per code, as a mode file says.

Usage: python cmd_worker.py MARKER_DIR NAF_CODE JOB_FILE INPUT OUTPUT_DIR
MARKER_DIR/mode.json maps a code to "fail" or "hang"; other codes are built with the built-in builder.
Every start leaves MARKER_DIR/<code>.<pid>, so tests can count runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    markers, code, job_file, input_path, output_dir = sys.argv[1:6]
    folder = Path(markers)
    (folder / f"{code}.{os.getpid()}").write_text("started\n")
    mode = json.loads((folder / "mode.json").read_text()).get(code, "build")
    if mode == "fail":
        print(f"boom: {code} cannot be built", file=sys.stderr)
        return 3
    if mode == "hang":
        child = subprocess.Popen(["sleep", "600"])
        (folder / f"{code}.grandchild").write_text(str(child.pid))
        time.sleep(600)
        return 0
    from salvo.jobs.builder import run_job

    run_job(job_file, input=input_path, output_dir=output_dir, max_ram_mb=128)
    return 0


if __name__ == "__main__":
    sys.exit(main())
