"""Pipeline options: merged per subject, turned into command-line flags, and hashed for resume."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from salvo.subjects.pipeline import PIPELINE_VERSION

#: Placeholders a ``--pipeline-command`` template may use.
COMMAND_FIELDS = ("id", "input", "nifti", "dicom", "bval", "bvec", "work_dir", "options")


def merge_options(global_options: Mapping[str, Any], subject_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
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


def pipeline_version(pipeline_command: str | None = None) -> str:
    """``builtin-1`` for the built-in pipeline, ``command-<hash>`` for a command template."""
    if not pipeline_command:
        return PIPELINE_VERSION
    return "command-" + hashlib.sha256(pipeline_command.encode()).hexdigest()[:8]


def config_hash(options: Mapping[str, Any], *, pipeline_command: str | None = None) -> str:
    """Eight hex digits naming what decides a subject's outputs: the pipeline and its options."""
    doc = {"pipeline": pipeline_command or PIPELINE_VERSION, "options": dict(options)}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]
