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


class _Unpublished(Exception):
    """Leave the staging contexts without renaming anything into place."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode


def run_staged_command(*, command: str, stage: dict[str, str], **params: Any) -> dict[str, Any]:
    """Run ``command`` with each ``stage`` placeholder pointing at a temporary folder.

    On exit 0 the temporary folders are renamed into place, unless one is empty: an empty
    folder never replaces an earlier result (the output check then reports the silent failure).
    On any other end they are removed and the command's exit code or signal becomes this
    process's, so the runner classifies it as the command's own.
    """
    try:
        with contextlib.ExitStack() as stack:
            temps = {name: str(stack.enter_context(atomic_dir(final))) for name, final in stage.items()}
            proc = subprocess.run(render_command(command, {**params, **temps}), stdin=subprocess.DEVNULL)
            if proc.returncode != 0 or any(not os.listdir(t) for t in temps.values()):
                raise _Unpublished(proc.returncode)
    except _Unpublished as exc:
        end_like(exc.returncode)
        return {"outputs": []}
    return {"outputs": list(stage.values())}


def end_like(code: int) -> None:
    """End this worker process the way the user's command ended, so the runner classifies the
    outcome as the command's own: killed by the same signal ("crashed"), or exiting with the same
    code. Returns only for exit 0."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    if code != 0:
        os._exit(code)
