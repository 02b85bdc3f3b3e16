"""Turn a manifest or a BIDS folder, plus options, into the items and worker of a subject batch."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from salvo.errors import UsageError
from salvo.items import Item, Worker, template_fields
from salvo.subjects.config import COMMAND_FIELDS, PIPELINES, config_hash, merge_options, pipeline_version
from salvo.subjects.discover import IGNORED_TOP, discover_bids
from salvo.subjects.manifest import RESERVED_IDS, Subject, load_manifest
from salvo.subjects.pipeline import DENOISE_METHODS
from salvo.validate import check_layout, command_argv, duration, number, output_dir

#: The worker entry point that runs inside each subject's child process.
WORKER_TARGET = "salvo.subjects.unit:process_subject"
#: Imported once in the warm process, so that each forked subject starts fast.
PRELOAD = (
    "numpy",
    "nibabel",
    "PIL.Image",
    "filelock",
    "salvo.subjects.unit",
    "dipy.reconst.dti",
    "dipy.segment.mask",
    "dipy.denoise.patch2self",
)


@dataclass(frozen=True)
class SubjectPlan:
    """What a batch will run: its subjects, options, pipeline and config hash."""

    subjects: tuple[Subject, ...]
    global_options: Mapping[str, Any] = field(default_factory=dict)
    pipeline_command: str | None = None
    config_hash: str = ""
    pipeline: str = "builtin"


def _check_pipeline(command: str | None, options: Mapping[str, Any], pipeline: str = "builtin") -> None:
    if command is not None and pipeline != "builtin":
        raise UsageError(f"give --pipeline {pipeline} or --pipeline-command, not both")
    if command is not None:
        if not command.strip():
            raise UsageError("--pipeline-command is empty")
        command_argv(command, "--pipeline-command")  # balanced quotes, and a program that exists
        unknown = [f for f in template_fields(command) if f not in COMMAND_FIELDS]
        if unknown:
            allowed = ", ".join("{" + f + "}" for f in COMMAND_FIELDS)
            raise UsageError(f"unknown placeholder {{{unknown[0]}}} in --pipeline-command (allowed: {allowed})")
        return
    if pipeline not in PIPELINES:
        raise UsageError(f"unknown --pipeline {pipeline!r} (pipelines: {', '.join(PIPELINES)})")
    if pipeline == "csttool":
        from salvo.subjects.csttool_pipeline import check_options

        check_options(options)
        return
    if options.get("steps") is not None:
        raise UsageError("--steps chooses csttool's steps: give it with --pipeline csttool")
    method = options.get("denoise_method")
    if method is not None and method not in DENOISE_METHODS:
        raise UsageError(
            f"unknown --denoise-method {method!r}: the built-in pipeline knows {', '.join(DENOISE_METHODS)}"
        )


def _check_kinds(command: str | None, subjects: Sequence[Subject]) -> None:
    """A command that names {nifti} or {dicom} must get one from every subject ({input} takes either)."""
    if not command:
        return
    fields = set(template_fields(command))
    for kind, other in (("nifti", "a DICOM folder"), ("dicom", "a NIfTI image")):
        if kind in fields:
            lacking = [s.id for s in subjects if not getattr(s, kind)]
            if lacking:
                more = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
                raise UsageError(
                    f"subject {lacking[0]}{more} has {other} and no {kind}, but --pipeline-command uses {{{kind}}};"
                    " use {input}, which is each subject's NIfTI image or DICOM folder"
                )


def check_run_settings(
    *,
    out: Any,
    timeout_minutes: Any,
    parallel: Any,
    retries: Any,
    names: Mapping[str, str] | None = None,
) -> tuple[float, int, int]:
    """The run settings, checked (finite, in range), each error naming the parameter as the caller spells it.

    ``names`` maps ``out``, ``timeout_minutes``, ``parallel`` and ``retries`` to the caller's names
    (the CLI passes its flags; the flow keeps its parameter names). Returns (timeout in minutes,
    parallel, retries).
    """
    n = {
        "out": "out",
        "timeout_minutes": "timeout_minutes",
        "parallel": "parallel",
        "retries": "retries",
        **(names or {}),
    }
    if out is None or not str(out).strip():
        raise UsageError(f"{n['out']} is required: the folder that receives one sub-folder per subject")
    output_dir(os.path.expanduser(str(out)), n["out"])
    if isinstance(timeout_minutes, str):
        minutes = duration(timeout_minutes, n["timeout_minutes"], default_unit="m") / 60.0
    else:
        minutes = float(number(timeout_minutes, n["timeout_minutes"], minimum=0, exclusive_minimum=True))
        duration(minutes, n["timeout_minutes"], default_unit="m")  # at most a week
    workers = int(number(parallel, n["parallel"], minimum=1, maximum=1024, integer=True))
    tries = int(number(retries, n["retries"], minimum=0, maximum=100, integer=True))
    return minutes, workers, tries


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _related(a: str, b: str) -> bool:
    """Whether one of two resolved paths is, contains or is inside the other."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def check_out_layout(
    subjects: Sequence[Subject], out_dir: str | os.PathLike[str], *, sources: Sequence[str | os.PathLike[str]] = ()
) -> None:
    """Refuse an output folder where promoting a subject would replace an input or a folder Salvo uses.

    Each subject's folder ``OUT/<id>`` is replaced whole when its run succeeds, so it must not be,
    contain or lie inside any subject's input (image, DICOM folder, sidecars) or ``sources`` (the
    manifest), nor be one of the names Salvo keeps in ``OUT`` (logs, locks, reports).
    """
    out = _real(out_dir)
    # Only inputs near OUT can clash: the check stays linear in the number of subjects.
    inputs = [p for s in subjects for p in (*s.inputs, *sources) if _related(out, _real(p))]
    outputs = {s.id: os.path.join(out, s.id) for s in subjects}
    check_layout(outputs, inputs=inputs, reserved=[os.path.join(out, name) for name in RESERVED_IDS])


def check_out_beside_bids(out_dir: str | os.PathLike[str], bids_dir: str | os.PathLike[str]) -> None:
    """Refuse an output folder that is the BIDS dataset or inside it (but not under ``derivatives/`` & co).

    Subject folders written there (``sub-01_ses-test/``) would look like subjects to the next
    discovery, which would then read the batch's own outputs as inputs.
    """
    out, root = _real(out_dir), _real(bids_dir)
    if out != root and not out.startswith(root.rstrip(os.sep) + os.sep):
        return
    first = os.path.relpath(out, root).split(os.sep)[0]
    if out != root and (first in IGNORED_TOP or first.startswith(".")):
        return
    where = "is" if out == root else "is inside"
    raise UsageError(
        f"--out {out} {where} the BIDS dataset {root}: its subject folders would be read as inputs by the next run;"
        f" use {os.path.join(root, 'derivatives', 'salvo')} or a folder outside the dataset"
    )


def _given(value: str | None) -> str | None:
    """A path parameter, with an empty or blank string taken as absent (deployments ship "" defaults)."""
    if value is None or not str(value).strip():
        return None
    return str(value)


def plan_subjects(
    *,
    manifest: str | None = None,
    bids_dir: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
    pipeline_command: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    pipeline: str | None = None,
) -> SubjectPlan:
    """Load or discover the subjects (validating everything first) and fix the config hash.

    With ``out_dir``, also refuse an output layout that could overwrite an input (see
    `check_out_layout`). Empty strings count as absent for ``manifest``, ``bids_dir`` and
    ``pipeline_command``. ``pipeline``: ``builtin`` (the default) or ``csttool``, whose installation
    (and atlas data, for the steps that need it) is checked here too.
    """
    manifest, bids_dir, pipeline_command = _given(manifest), _given(bids_dir), _given(pipeline_command)
    pipeline = _given(pipeline) or "builtin"
    if bool(manifest) == bool(bids_dir):
        which = "both were given" if manifest else "neither was given"
        raise UsageError(f"give exactly one of manifest (--manifest) or bids_dir (--bids-dir); {which}")
    overrides = {k: v for k, v in (options or {}).items() if v is not None}
    if manifest:
        if include or exclude:
            raise UsageError("--include/--exclude apply to --bids-dir only")
        loaded = load_manifest(manifest)
        subjects, global_options = loaded.subjects, merge_options(loaded.global_options, overrides)
    else:
        subjects, global_options = tuple(discover_bids(bids_dir, include=include, exclude=exclude)), overrides
    _check_pipeline(pipeline_command, global_options, pipeline)
    for subject in subjects:
        _check_pipeline(pipeline_command, merge_options(global_options, subject.options), pipeline)
    _check_kinds(pipeline_command, subjects)
    if pipeline == "csttool" and not pipeline_command:
        from salvo.subjects.csttool_pipeline import check_ready

        check_ready([global_options] + [merge_options(global_options, s.options) for s in subjects if s.options])
    if out_dir is not None:
        check_out_layout(subjects, out_dir, sources=[manifest] if manifest else [])
        if bids_dir:
            check_out_beside_bids(out_dir, bids_dir)
    return SubjectPlan(
        subjects=tuple(subjects),
        global_options=global_options,
        pipeline_command=pipeline_command,
        config_hash=config_hash(global_options, pipeline_command=pipeline_command, pipeline=pipeline),
        pipeline=pipeline,
    )


def build_items(plan: SubjectPlan, *, out_dir: str, force: bool = False) -> list[Item]:
    """One Item per subject; its params are what the child's ``process_subject`` needs."""
    items = []
    cwd = os.getcwd()
    for subject in plan.subjects:
        options = merge_options(plan.global_options, subject.options)
        digest = (
            config_hash(options, pipeline_command=plan.pipeline_command, pipeline=plan.pipeline)
            if subject.options
            else plan.config_hash
        )
        params = {
            "subject": subject.to_dict(),
            "out_dir": str(out_dir),
            "config_hash": digest,
            "options": options,
            "pipeline_command": plan.pipeline_command,
            "force": force,
            "exit_with_command_code": True,  # the child exits with the command's own code
            "cwd": cwd,  # a command's relative paths mean what they meant where the batch was started
            "pipeline": plan.pipeline,
        }
        # No `inputs`: resume goes by _done.json, whose key holds the inputs' content (checked in the child).
        items.append(Item(id=subject.id, params=params))
    return items


def build_worker(plan: SubjectPlan) -> Worker:
    """The python worker that runs one subject (built-in pipeline or the user's command) in a child."""
    version = pipeline_version(plan.pipeline_command, pipeline=plan.pipeline)
    return Worker(kind="python", target=WORKER_TARGET, version=version, preload=PRELOAD)
