"""Run a user's external command as a Python worker, ending the way the command ended.

The command's output folders are staged by the runner (``salvo.contract.stage_outputs``: an
item's ``params["stage"]`` names them), so the command only ever sees temporary folders; the
runner checks them against the pipeline's output contract and renames them into place only when
it holds. Nothing here publishes anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from salvo.errors import SkipItem
from salvo.items import render_command

#: The worker target of a staged external command (its resume identity: keep it unchanged). The batch
#: runner runs it without Python when it can: the zygote spawns the command itself (``salvo.runner``).
STAGED_COMMAND = "salvo.staged:run_staged_command"


def run_staged_command(*, command: str, skip_message: str | None = None, **params: Any) -> dict[str, Any]:
    """Run ``command`` with ``params`` (its output placeholders already pointing at staged folders).

    Any end but exit 0 becomes this process's own (code or signal), so the runner classifies it as
    the command's. On exit 0 the staged folders are reported as the outputs. With ``skip_message``,
    the command's stdout is passed through and, on exit 0 with nothing written, a line holding that
    message makes the item ``skipped`` with that line (the NetCDF seed's ``Skipping.``).
    """
    params = {**(params.pop("stage", None) or {}), **params}  # called without the runner: written in place
    argv = render_command(command, params)
    if skip_message:
        proc, said = _run_passing_stdout(argv, skip_message)
    else:
        proc, said = subprocess.run(argv, stdin=subprocess.DEVNULL), None
    outputs = [str(v) for k, v in params.items() if k == "output_dir"]
    if proc.returncode == 0 and said is not None and not any(_holds_files(o) for o in outputs):
        raise SkipItem(said)
    end_like(proc.returncode)
    return {"outputs": outputs}


def _holds_files(folder: str) -> bool:
    return os.path.isdir(folder) and bool(os.listdir(folder))


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
