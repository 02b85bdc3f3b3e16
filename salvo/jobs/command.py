"""A user's ``--job-command``, run so that its ``naf_<code>/`` folder appears only when it succeeded.

The command never sees the final folder. The runner stages it (``salvo.contract.stage_outputs``)
next to it (``OUTPUT_DIR/.salvo-tmp-naf_<code>-XXXX/``): ``{output_dir}`` points at that staging
folder and ``{job_output_dir}`` at ``naf_<code>/`` inside it, so a builder that writes to
``{output_dir}/<niche>`` (as the seed's builder does) and one that writes to ``{job_output_dir}``
both write into the stage. On exit 0, the runner checks it against the jobs output contract
(:func:`check_job_command_output`) and renames it to its final name only when it holds; otherwise
nothing is renamed, and a ``kill -9`` at any moment leaves at most the staging folder, which the
next run removes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from salvo.items import render_command
from salvo.staged import end_like

#: Dataset files a job folder may hold (the built-in builder's names and formats).
DATASET_SUFFIXES = (".csv", ".parquet")


def run_job_command(*, command: str, job_output_dir: str, **params: Any) -> dict[str, Any]:
    """Run ``command`` into its (staged) job folder; end the way it ended (see the module doc)."""
    import subprocess

    values = {**params, "job_output_dir": job_output_dir}
    Path(job_output_dir).mkdir(parents=True, exist_ok=True)
    argv = render_command(command, values)
    try:
        code = subprocess.run(argv, stdin=subprocess.DEVNULL).returncode
    except OSError as exc:
        print(f"--job-command: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        code = 127
    end_like(code)  # the command's own exit code or signal, so the runner classifies it as such
    return {"outputs": [job_output_dir]}


def check_job_command_output(item: Any, result: Any) -> str | None:
    """The jobs output contract for a ``--job-command`` (on the staged folder): at least one
    non-empty dataset file (``.csv``/``.parquet``); when the command wrote a ``build.json`` with
    ``rows``, every dataset file holds that many rows."""
    from salvo.contract import folder_listing, result_files

    folder = Path(item.params["job_output_dir"])
    if not folder.is_dir() or not any(folder.iterdir()):
        return f"--job-command exited 0 but wrote nothing to {folder} (nor to {{output_dir}}/{folder.name})"
    data = [f for f in result_files(folder) if f.endswith(DATASET_SUFFIXES)]
    if not data:
        return (
            f"--job-command exited 0 but {folder} holds no dataset file (.csv or .parquet), "
            f"only {folder_listing(folder)}"
        )
    expected = _reported_rows(folder)
    if expected is not None:
        from salvo.jobs.builder import count_rows

        for name in data:
            got = count_rows(folder / name)
            if got != expected:
                return f"{folder / name} has {got} rows, the job reported {expected}"
    return None


def _reported_rows(folder: Path) -> int | None:
    for p in sorted(folder.rglob("build.json")):
        try:
            rows = json.loads(p.read_text(encoding="utf-8")).get("rows")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(rows, int):
            return rows
    return None
