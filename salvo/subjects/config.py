"""Pipeline options: merged per subject, turned into command-line flags, and hashed for resume."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from salvo.subjects import pipeline as builtin

#: The pipelines `salvo subjects --pipeline` runs when no ``--pipeline-command`` is given.
PIPELINES = ("builtin", "csttool")

#: Placeholders a ``--pipeline-command`` template may use.
COMMAND_FIELDS = ("id", "input", "nifti", "dicom", "bval", "bvec", "work_dir", "options")


def merge_options(
    global_options: Mapping[str, Any], subject_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Global options overridden by a subject's own options."""
    merged = dict(global_options)
    merged.update(subject_options or {})
    return merged


def option_flags(options: Mapping[str, Any]) -> list[str]:
    """``{'preprocessing': True, 'denoise_method': 'x'}`` -> ``['--denoise_method', 'x', '--preprocessing']``.

    Each option is spelled exactly as its key, as the seed's users' tools expect (``--denoise_method``,
    underscores kept); a key written with dashes in the manifest stays with dashes.
    """
    flags: list[str] = []
    for key in sorted(options):
        value = options[key]
        flag = "--" + key
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                flags += [flag, str(v)]
        else:
            flags += [flag, str(value)]
    return flags


def pipeline_version(pipeline_command: str | None = None, *, pipeline: str = "builtin") -> str:
    """``builtin-2+dipy<version>``, ``csttool-<version>``, or ``command-<hash>`` for a command template."""
    if pipeline_command:
        return "command-" + hashlib.sha256(pipeline_command.encode()).hexdigest()[:8]
    if pipeline == "csttool":
        from salvo.subjects.csttool_pipeline import csttool_version

        return f"csttool-{csttool_version() or 'missing'}"
    return builtin.pipeline_version()


def config_hash(options: Mapping[str, Any], *, pipeline_command: str | None = None, pipeline: str = "builtin") -> str:
    """Eight hex digits naming what decides a subject's outputs: the pipeline (and its tool's version), its options."""
    doc = {"pipeline": pipeline_command or pipeline_version(pipeline=pipeline), "options": dict(options)}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def declared_outputs(
    pipeline_command: str | None, subject_id: str, options: Mapping[str, Any], *, pipeline: str = "builtin"
) -> list[str]:
    """The output contract of one subject's run: the files its pipeline must write (relative to its folder).

    The built-in pipeline's `salvo.subjects.pipeline.OUTPUT_FILES`; csttool's files of the steps it
    runs (`salvo.subjects.csttool_pipeline.STEP_OUTPUTS`); nothing for a user's command, which
    declares none. ``_done.json`` comes on top of these, written last.
    """
    if pipeline_command:
        return []
    if pipeline == "csttool":
        from salvo.subjects.csttool_pipeline import expected_outputs, parse_steps

        steps = parse_steps(options.get("steps"))
        return expected_outputs(
            steps,
            subject_id,
            preprocessing=bool(options.get("preprocessing")),
            motion_correction=bool(options.get("perform_motion_correction")),
        )
    return list(builtin.OUTPUT_FILES)
