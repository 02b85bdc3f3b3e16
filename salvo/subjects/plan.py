"""Turn a manifest or a BIDS folder, plus options, into the items and worker of a subject batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from salvo.errors import UsageError
from salvo.items import Item, Worker, template_fields
from salvo.subjects.config import COMMAND_FIELDS, config_hash, merge_options, pipeline_version
from salvo.subjects.discover import discover_bids
from salvo.subjects.manifest import Subject, load_manifest
from salvo.subjects.pipeline import DENOISE_METHODS

#: The worker entry point that runs inside each subject's child process.
WORKER_TARGET = "salvo.subjects.unit:process_subject"
#: Imported once in the warm process, so that each forked subject starts fast.
PRELOAD = ("numpy", "nibabel", "PIL.Image", "filelock", "salvo.subjects.unit")


@dataclass(frozen=True)
class SubjectPlan:
    """What a batch will run: its subjects, options, pipeline and config hash."""

    subjects: tuple[Subject, ...]
    global_options: Mapping[str, Any] = field(default_factory=dict)
    pipeline_command: str | None = None
    config_hash: str = ""


def _check_pipeline(command: str | None, options: Mapping[str, Any]) -> None:
    if command is not None:
        if not command.strip():
            raise UsageError("--pipeline-command is empty")
        unknown = [f for f in template_fields(command) if f not in COMMAND_FIELDS]
        if unknown:
            allowed = ", ".join("{" + f + "}" for f in COMMAND_FIELDS)
            raise UsageError(f"unknown placeholder {{{unknown[0]}}} in --pipeline-command (allowed: {allowed})")
        return
    method = options.get("denoise_method")
    if method is not None and method not in DENOISE_METHODS:
        raise UsageError(f"unknown --denoise-method {method!r}: the built-in pipeline knows {', '.join(DENOISE_METHODS)}")


def plan_subjects(
    *,
    manifest: str | None = None,
    bids_dir: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
    pipeline_command: str | None = None,
) -> SubjectPlan:
    """Load or discover the subjects (validating everything first) and fix the config hash."""
    if bool(manifest) == bool(bids_dir):
        raise UsageError("give exactly one of --manifest or --bids-dir")
    overrides = {k: v for k, v in (options or {}).items() if v is not None}
    if manifest:
        if include or exclude:
            raise UsageError("--include/--exclude apply to --bids-dir only")
        loaded = load_manifest(manifest)
        subjects, global_options = loaded.subjects, merge_options(loaded.global_options, overrides)
    else:
        subjects, global_options = tuple(discover_bids(bids_dir, include=include, exclude=exclude)), overrides
    _check_pipeline(pipeline_command, global_options)
    for subject in subjects:
        _check_pipeline(pipeline_command, merge_options(global_options, subject.options))
    return SubjectPlan(
        subjects=tuple(subjects),
        global_options=global_options,
        pipeline_command=pipeline_command,
        config_hash=config_hash(global_options, pipeline_command=pipeline_command),
    )


def build_items(plan: SubjectPlan, *, out_dir: str, force: bool = False) -> list[Item]:
    """One Item per subject; its params are what the child's ``process_subject`` needs."""
    items = []
    for subject in plan.subjects:
        options = merge_options(plan.global_options, subject.options)
        digest = config_hash(options, pipeline_command=plan.pipeline_command) if subject.options else plan.config_hash
        params = {
            "subject": subject.to_dict(),
            "out_dir": str(out_dir),
            "config_hash": digest,
            "options": options,
            "pipeline_command": plan.pipeline_command,
            "force": force,
        }
        # No `inputs`: resume goes by _done.json, so the spine need not read every image to key it.
        items.append(Item(id=subject.id, params=params))
    return items


def build_worker(plan: SubjectPlan) -> Worker:
    """The python worker that runs one subject (built-in pipeline or the user's command) in a child."""
    return Worker(kind="python", target=WORKER_TARGET, version=pipeline_version(plan.pipeline_command), preload=PRELOAD)
