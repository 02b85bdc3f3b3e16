"""``salvo subjects``: the seed's ``csttool batch``, over a manifest or a BIDS folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import CliError, fail, positive_float, positive_int, print_json, run_flow
from salvo.errors import UsageError

DESCRIPTION = """Run a pipeline over every subject of a study, each in its own child process with its own
log (OUT/logs/<id>.log), locked, written to OUT/<id>/_work and promoted atomically, with
OUT/<id>/_done.json written last. Subjects done with the same config hash are skipped.
Exit code: 0 all succeeded or skipped, 1 some failed, 2 bad input."""


def register(subparsers: Any) -> None:
    """Add ``salvo subjects`` to the ``salvo`` command."""
    p = subparsers.add_parser("subjects", help="run a pipeline over every subject of a study (manifest or BIDS)", description=DESCRIPTION)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", metavar="FILE", help="JSON manifest with global_options and subjects")
    src.add_argument("--bids-dir", metavar="DIR", help="find sub-*/[ses-*/]dwi/*_dwi.nii[.gz] units in a BIDS dataset")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: one sub-folder per subject, reports, logs")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="keep only units whose id matches (BIDS; repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="drop units whose id matches (BIDS; repeatable)")
    p.add_argument("--preprocessing", action="store_true", default=None, help="set the global option preprocessing")
    p.add_argument("--denoise-method", "--denoise_method", dest="denoise_method", metavar="NAME",
                   help="set the global option denoise_method (built-in: none, gaussian, median, patch2self)")
    p.add_argument("--pipeline-command", metavar="TEMPLATE",
                   help="run this command per subject instead of the built-in pipeline; placeholders: "
                        "{id} {nifti} {dicom} {bval} {bvec} {work_dir} {options}")
    g = p.add_argument_group("running")
    g.add_argument("--parallel", type=positive_int, default=1, metavar="N", help="subjects run at once (default: 1)")
    g.add_argument("--dask-address", metavar="tcp://HOST:PORT", help="run on this existing Dask cluster")
    g.add_argument("--timeout", type=positive_float, default=120.0, metavar="MINUTES", help="per-subject limit in minutes (default: 120)")
    g.add_argument("--retries", type=int, default=0, metavar="N", help="retries for crashed subjects (default: 0)")
    g.add_argument("--force", action="store_true", help="re-run subjects even when done with the same config hash")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout, nothing else")
    p.set_defaults(func=run_subjects)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.preprocessing:
        options["preprocessing"] = True
    if args.denoise_method:
        options["denoise_method"] = args.denoise_method
    return options


def run_subjects(args: argparse.Namespace) -> int:
    """Validate, run the ``subject-batch`` flow, print its summary; return the exit code."""
    from flows.subject_batch import subject_batch
    from salvo.subjects.plan import plan_subjects

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        return fail(f"--out is not a folder: {out}")
    if args.retries < 0:
        return fail("--retries must be >= 0")
    params = dict(
        manifest=args.manifest, bids_dir=args.bids_dir, include=args.include, exclude=args.exclude,
        options=_options(args), pipeline_command=args.pipeline_command,
    )
    try:
        plan_subjects(**params)  # every input problem is reported before a flow run starts
        doc = run_flow(
            subject_batch, out=str(out), timeout_minutes=args.timeout, parallel=args.parallel, dask_address=args.dask_address,
            retries=args.retries, force=args.force, echo=not args.json, **params,
        )
    except UsageError as exc:
        return fail(str(exc))
    except CliError as exc:
        return fail(str(exc), exc.exit_code)
    if args.json:
        print_json(doc)
    return 0 if doc["summary"]["failed"] == 0 else 1
