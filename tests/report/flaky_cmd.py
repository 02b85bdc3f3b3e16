"""A command wrapper for the report tests: the first run for one key fails, every other run is the real command.

Usage: python flaky_cmd.py MARKER_DIR KEY FAIL_KEY COMMAND...
When KEY == FAIL_KEY and MARKER_DIR/FAIL_KEY.failed does not exist yet, it writes that marker and exits 3
(an ordinary error, retried); otherwise it execs COMMAND.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    markers, key, fail_key, *command = sys.argv[1:]
    marker = Path(markers) / (Path(fail_key).name + ".failed")
    if Path(key).name == Path(fail_key).name and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("failed once\n")
        print(f"{key}: first attempt fails on purpose", file=sys.stderr)
        sys.exit(3)
    os.execvp(command[0], command)
