"""A user's ``--job-command``, run so that its ``naf_<code>/`` folder appears only when it succeeded.

The command never sees the final folder. It gets a staging folder next to it
(``OUTPUT_DIR/.salvo-tmp-naf_<code>-XXXX/``): ``{output_dir}`` points at that staging folder and
``{job_output_dir}`` at ``naf_<code>/`` inside it, so a builder that writes to
``{output_dir}/<niche>`` (as the seed's builder does) and one that writes to ``{job_output_dir}``
both write into the stage. On exit 0 with a non-empty folder it is renamed to its final name;
otherwise nothing is renamed, and a ``kill -9`` at any moment leaves at most the staging folder,
which the next run removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from salvo.fsutil import TMP_PREFIX, publish_dir
from salvo.items import render_command
from salvo.staged import end_like


def run_job_command(*, command: str, job_output_dir: str, **params: Any) -> dict[str, Any]:
    """Run ``command`` into a staging folder; publish its job folder on success (see the module doc)."""
    final = Path(job_output_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-", dir=final.parent))
    try:
        job_dir = stage / final.name
        job_dir.mkdir()
        values = {**params, "output_dir": str(stage), "job_output_dir": str(job_dir)}
        argv = render_command(command, values)
        try:
            code = subprocess.run(argv, stdin=subprocess.DEVNULL).returncode
        except OSError as exc:
            print(f"--job-command: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
            code = 127
        if code == 0 and any(job_dir.iterdir()):
            os.chmod(job_dir, 0o777 & ~_umask())
            publish_dir(job_dir, final)
            return {"outputs": [str(final)]}
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    end_like(code)  # the command's own exit code or signal, so the runner classifies it as such
    return {"outputs": []}  # exit 0 but nothing written: the output check calls it a silent failure


def check_job_command_output(item: Any, result: Any) -> str | None:
    """Spine verify hook: exit 0 must leave a non-empty job folder at its final name."""
    folder = Path(item.params["job_output_dir"])
    if not folder.is_dir():
        return f"--job-command exited 0 but wrote nothing to {folder} (nor to {{output_dir}}/{folder.name})"
    if not any(folder.iterdir()):
        return f"--job-command exited 0 but {folder} is empty"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
