"""``salvo subjects``: the seed's ``csttool batch``, over a manifest or a BIDS folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import CliError, add_runner_flags, fail, print_json, print_summary, run_flow, run_options
from salvo.errors import UsageError
from salvo.pipelines import PIPELINES

PIPELINE = PIPELINES["subjects"].flow_name

DESCRIPTION = """Run a pipeline over every subject of a study, each in its own child process with its own
log (OUT/<id>/logs/<id>.log), locked, written to OUT/<id>/_work and promoted atomically, with
OUT/<id>/_done.json written last. Subjects done with the same config hash are skipped.
Exit code: 0 all succeeded or skipped, 1 some failed, 2 bad input (checked before anything runs)."""


def register(subparsers: Any) -> None:
    """Add ``salvo subjects`` to the ``salvo`` command."""
    p = subparsers.add_parser(
        "subjects", help="run a pipeline over every subject of a study (manifest or BIDS)", description=DESCRIPTION
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", metavar="FILE", help="JSON manifest with global_options and subjects")
    src.add_argument("--bids-dir", metavar="DIR", help="find sub-*/[ses-*/]dwi/*_dwi.nii[.gz] units in a BIDS dataset")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output folder: one sub-folder per subject, reports, logs"
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="keep only units whose id matches (BIDS; repeatable)",
    )
    p.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="drop units whose id matches (BIDS; repeatable)"
    )
    p.add_argument("--preprocessing", action="store_true", default=None, help="set the global option preprocessing")
    p.add_argument(
        "--denoise_method",
        "--denoise-method",
        dest="denoise_method",
        metavar="NAME",
        help="set the global option denoise_method (built-in: patch2self, nlmeans, mppca, none;"
        " csttool: patch2self, nlmeans); used with --preprocessing",
    )
    p.add_argument(
        "--pipeline",
        choices=("builtin", "csttool"),
        default="builtin",
        help="builtin: DIPY brain mask, denoising, tensor fit, dti_FA/MD/RGB maps (default); "
        "csttool: the installed csttool's preprocess, track, extract, metrics"
        " (pip install 'salvo[csttool]')",
    )
    p.add_argument(
        "--steps",
        metavar="LIST",
        help="csttool steps to run, a prefix of preprocess,track,extract,metrics (default: all four; "
        "extract and metrics need `csttool fetch-data` done once)",
    )
    p.add_argument(
        "--pipeline-command",
        metavar="TEMPLATE",
        help="run this command per subject instead of the built-in pipeline; placeholders: "
        "{id} {input} (the NIfTI image or DICOM folder) {nifti} {dicom} {bval} {bvec} {work_dir} "
        "{options} (each option as --key value, the key spelled as in the manifest)",
    )
    g = p.add_argument_group("running")
    g.add_argument("--force", action="store_true", help="re-run subjects even when done with the same config hash")
    # The seed's `--parallel N` is `--workers N`; its bare --timeout is in minutes.
    add_runner_flags(g, PIPELINE, timeout_unit="m", worker_aliases=("--parallel",), parallel_switch=False)
    p.set_defaults(func=run_subjects)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.preprocessing:
        options["preprocessing"] = True
    if args.denoise_method:
        options["denoise_method"] = args.denoise_method
    if args.steps is not None:
        options["steps"] = [s.strip() for s in args.steps.split(",") if s.strip()]
    return options


def _check(args: argparse.Namespace) -> dict[str, Any]:
    """Every up-front check, in one pass; raises UsageError. Returns the flow's parameters."""
    from salvo import validate
    from salvo.options import MAX_TIMEOUT_S
    from salvo.subjects.plan import check_run_settings, plan_subjects

    run = run_options(args, PIPELINE)
    check_run_settings(
        out=args.out,
        timeout_minutes=(run.timeout_s or MAX_TIMEOUT_S) / 60.0,
        parallel=run.workers,
        retries=run.retries,
        names={"out": "--out", "timeout_minutes": "--timeout", "parallel": "--workers", "retries": "--retries"},
    )
    if args.manifest is not None:
        validate.regular_file(args.manifest, "--manifest")
    if args.bids_dir is not None:
        validate.existing_dir(args.bids_dir, "--bids-dir")
    if args.pipeline_command is not None:
        validate.command_argv(args.pipeline_command, "--pipeline-command")
    if args.dask_address:
        validate.dask_address(args.dask_address)
    out = str(Path(args.out).expanduser())
    params = dict(
        manifest=args.manifest,
        bids_dir=args.bids_dir,
        include=args.include,
        exclude=args.exclude,
        options=_options(args),
        pipeline_command=args.pipeline_command,
        pipeline=args.pipeline,
    )
    plan_subjects(**params, out_dir=out)  # the manifest, the units, the command and the output layout
    return dict(params, out=out, run=run, echo=not (args.json or args.quiet))


def run_subjects(args: argparse.Namespace) -> int:
    """Validate, run the ``subject-batch`` flow, print its summary; return the exit code."""
    try:
        params = _check(args)  # every input problem is reported before a flow run starts (or Prefect loads)
        from flows.subject_batch import subject_batch

        doc = run_flow(subject_batch, **params)
    except UsageError as exc:
        return fail(str(exc))
    except CliError as exc:
        return fail(str(exc), exc.exit_code)
    if args.json:
        print_json(doc)
    elif args.quiet:  # the monitor's lines are off: errors and the closing summary only
        print_summary(doc, title="BATCH COMPLETE", noun="subjects")
    return 0 if doc["summary"]["failed"] == 0 else 1
