"""Run a user's external command so that its output folders appear only when it succeeded.

Two ways run the same contract. The batch runner (``salvo.runner``) recognises the worker target
:data:`STAGED_COMMAND` and runs the command itself: :func:`make_stages` creates the staging
folders, the warm zygote spawns the command directly into them (no Python process per item), and
:func:`finish_stages` publishes or discards them by how the command ended. :func:`run_staged_command`
is the same contract inside one Python process, for a caller that runs it as a Python function.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

from salvo.fsutil import TMP_PREFIX, _umask, atomic_dir, publish_dir
from salvo.items import render_command

#: The worker target of a staged external command (its resume identity: keep it unchanged).
STAGED_COMMAND = "salvo.staged:run_staged_command"


def make_stages(stage: Mapping[str, str]) -> dict[str, str]:
    """A fresh staging folder beside each final folder of ``stage`` (placeholder -> final path).

    Named as :func:`salvo.fsutil.atomic_dir` names them, so that what a killed run leaves is found
    and removed by ``remove_partial`` as before. On a failure, the folders made so far are removed.
    """
    temps: dict[str, str] = {}
    try:
        for name, final in stage.items():
            parent, base = os.path.split(os.path.normpath(final))
            os.makedirs(parent, exist_ok=True)
            temps[name] = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{base}-", dir=parent)
    except BaseException:
        discard_stages(temps)
        raise
    return temps


def staged_params(params: Mapping[str, Any], temps: Mapping[str, str]) -> dict[str, Any]:
    """An item's params as its command sees them: each staged placeholder pointing at its staging folder."""
    return {**{k: v for k, v in params.items() if k != "stage"}, **temps}


_mode: list[int] = []


def _folder_mode() -> int:
    """The mode a folder made by ``mkdir`` would have (mkdtemp makes 0700); the umask read once."""
    if not _mode:
        _mode.append(0o777 & ~_umask())
    return _mode[0]


def discard_stages(temps: Mapping[str, str]) -> None:
    """Remove staging folders (nothing below them is running any more)."""
    for t in temps.values():
        shutil.rmtree(t, ignore_errors=True)


def finish_stages(temps: Mapping[str, str], stage: Mapping[str, str], exit_code: int) -> list[str]:
    """After the command ended: publish its staging folders, or discard them; the outputs published.

    The one publication step of a staged command. On exit 0 each staging folder is renamed to its
    final name, unless one is empty: an empty folder never replaces an earlier result (the output
    check then reports the silent failure). On any other end nothing is renamed.
    """
    try:
        if exit_code != 0 or any(not os.listdir(t) for t in temps.values()):
            return []
        mode = _folder_mode()
        for name, final in stage.items():
            os.chmod(temps[name], mode)
            publish_dir(temps[name], final)
        return list(stage.values())
    finally:
        discard_stages({k: t for k, t in temps.items() if os.path.exists(t)})


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
