"""Run a user's external command so that its output folders appear only when it succeeded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

from salvo.errors import SkipItem
from salvo.fsutil import atomic_dir
from salvo.items import render_command


class _Unpublished(Exception):
    """Leave the staging contexts without renaming anything into place."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode


def run_staged_command(*, command: str, stage: dict[str, str], skip_message: str | None = None, **params: Any) -> dict[str, Any]:
    """Run ``command`` with each ``stage`` placeholder pointing at a temporary folder.

    On exit 0 the temporary folders are renamed into place, unless one is empty: an empty
    folder never replaces an earlier result (the output check then reports the silent failure).
    On any other end they are removed and the command's exit code or signal becomes this
    process's, so the runner classifies it as the command's own. With ``skip_message``, the
    command's stdout is passed through and, on exit 0 with nothing written, a line holding that
    message makes the item ``skipped`` with that line (the NetCDF seed's ``Skipping.``).
    """
    try:
        with contextlib.ExitStack() as stack:
            temps = {name: str(stack.enter_context(atomic_dir(final))) for name, final in stage.items()}
            argv = render_command(command, {**params, **temps})
            proc, said = _run_passing_stdout(argv, skip_message) if skip_message else (subprocess.run(argv, stdin=subprocess.DEVNULL), None)
            if proc.returncode != 0 or any(not os.listdir(t) for t in temps.values()):
                if proc.returncode == 0 and said is not None and not any(os.listdir(t) for t in temps.values()):
                    raise SkipItem(said)
                raise _Unpublished(proc.returncode)
    except _Unpublished as exc:
        end_like(exc.returncode)
        return {"outputs": []}
    return {"outputs": list(stage.values())}


def _run_passing_stdout(argv: list[str], message: str) -> tuple[subprocess.CompletedProcess[bytes], str | None]:
    """Run ``argv``, copying its stdout to ours line by line; the last line holding ``message``."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    said, out = None, sys.stdout.buffer
    for raw in proc.stdout:  # type: ignore[union-attr]
        out.write(raw)
        out.flush()
        if message in (line := raw.decode("utf-8", "replace").strip()):
            said = line
    return subprocess.CompletedProcess(argv, proc.wait()), said


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
