"""Run a user's external command so that its output folders appear only when it succeeded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

from salvo.fsutil import atomic_dir
from salvo.items import render_command


def run_staged_command(*, command: str, stage: dict[str, str], **params: Any) -> dict[str, Any]:
    """Run ``command`` with each ``stage`` placeholder pointing at a temporary folder.

    On exit 0 the temporary folders are renamed into place; on any other end they are removed
    and the command's exit code or signal becomes this process's, so the runner classifies it.
    """
    with contextlib.ExitStack() as stack:
        temps = {name: str(stack.enter_context(atomic_dir(final))) for name, final in stage.items()}
        argv = render_command(command, {**params, **temps})
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            sys.stdout.flush()
            sys.stderr.flush()
            if proc.returncode < 0:  # die the same way, so the outcome reads "crashed"
                signal.signal(-proc.returncode, signal.SIG_DFL)
                os.kill(os.getpid(), -proc.returncode)
            os._exit(proc.returncode)
    return {"outputs": list(stage.values())}
