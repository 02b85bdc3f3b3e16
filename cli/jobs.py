"""`salvo jobs batch` / `salvo batch` (the seed's builder_cli.py batch) and `salvo jobs create` (create_job.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cli.common import (
    Progress,
    add_runner_flags,
    positive_int,
    print_dry_run,
    print_json,
    print_summary,
    run_flow,
    run_options,
)
from salvo import validate
from salvo.errors import UsageError
from salvo.jobs.batch import MIN_RAM_MB, check_input, check_job_command, render_jobs
from salvo.jobs.builder import DEFAULT_MAX_RAM_MB
from salvo.jobs.profiles import PROFILES
from salvo.options import MAX_WORKERS
from salvo.pipelines import PIPELINES


#: Upper limits that catch typos (an extra zero or two) before anything starts.
MAX_RAM_MB = 1 << 30
PIPELINE = PIPELINES["jobs"].flow_name


def _add_job_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--naf",
        action="append",
        required=True,
        metavar="CODE",
        help="NAF rév. 2 code: division 43, group 43.2, class 43.29 or subclass 43.29A/4329A (repeatable)",
    )
    p.add_argument("--template", help="job template (default: the shipped job_template.yaml)")
    p.add_argument("--profile", choices=list(PROFILES), default="quick", help="job profile (default: quick)")


def _add_batch_parser(subparsers: Any, name: str, help_text: str) -> None:
    p = subparsers.add_parser(
        name,
        help=help_text,
        description="Render one YAML job per NAF code and run them over a SIRENE establishments file "
        "(Parquet, or INSEE's CSV).",
    )
    _add_job_flags(p)
    p.add_argument(
        "--input",
        required=True,
        help="SIRENE establishments file: Parquet (text or typed columns), or INSEE's CSV named *.csv",
    )
    p.add_argument("--output-dir", required=True, help="base output folder: one naf_<code>/ per job")
    p.add_argument("--jobs-dir", default="jobs_generated", help="where job files go (default: jobs_generated)")
    p.add_argument("--dry-run", action="store_true", help="render and validate the jobs only")
    p.add_argument("--sample", type=positive_int, help="rows to keep per job (default: the profile's)")
    p.add_argument(
        "--workers",
        "--max-workers",
        type=positive_int,
        dest="max_workers",
        default=None,
        metavar="N",
        help="jobs run at once (default: 1, one after another as in the seed)",
    )
    p.add_argument("--verbose", action="store_true", help="one line per job on stderr, and the Prefect logs")
    p.add_argument(
        "--max-ram-mb",
        type=positive_int,
        default=DEFAULT_MAX_RAM_MB,
        help=f"bound on the memory a built-in job's process grows by, >= {MIN_RAM_MB} (default: {DEFAULT_MAX_RAM_MB})",
    )
    p.add_argument(
        "--continue-on-error",
        action="store_true",
        help="run every job even after a failure (the exit code is still 1 when a job failed)",
    )
    p.add_argument("--job-command", help="run your builder instead, e.g. 'python my_builder.py {job_file}'")
    add_runner_flags(p, PIPELINE)
    p.set_defaults(func=batch_main)


def register(subparsers: Any) -> None:
    """Add `salvo jobs {batch,create}` and the alias `salvo batch`."""
    jobs = subparsers.add_parser(
        "jobs", help="NAF-code jobs over a SIRENE Parquet (job-batch)", description="Generate and run NAF-code jobs."
    )
    sub = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)
    _add_batch_parser(sub, "batch", "render and run one job per NAF code (job-batch)")
    c = sub.add_parser(
        "create", help="render job files only (the seed's create_job.py)", description="Render and validate job files."
    )
    c.add_argument("output", help="folder for the job files, or a .yaml file for a single code without --batch")
    _add_job_flags(c)
    c.add_argument("--batch", action="store_true", help="write one naf_<code>.yaml per code into OUTPUT (a folder)")
    c.set_defaults(func=create_main)
    _add_batch_parser(subparsers, "batch", "alias of `salvo jobs batch`")


def create_main(args: argparse.Namespace) -> int:
    """Write the job file(s); 0 on success, 2 on a bad code or template."""
    out = Path(args.output)
    single_file = not args.batch and out.suffix in (".yaml", ".yml")
    if single_file and len(args.naf) > 1:
        raise UsageError(f"{out} is one file but {len(args.naf)} codes were given: pass a folder, or --batch")
    if single_file:
        if out.is_dir():
            raise UsageError(f"OUTPUT {out} is a folder, not a .yaml file: pass a file name, or --batch")
        validate.output_dir(out.parent, "OUTPUT's folder")
    else:
        validate.output_dir(out, "OUTPUT")  # an existing regular file is refused, untouched
    jobs = render_jobs(
        args.naf,
        template=args.template,
        profile=args.profile,
        jobs_dir=out.parent if single_file else out,
        write=not single_file,
    )
    if single_file:
        from salvo.fsutil import atomic_write_text
        from salvo.jobs.template import read_template, render_template

        atomic_write_text(out, render_template(read_template(args.template), naf=jobs[0].naf, profile=args.profile))
        print(out)
        return 0
    for job in jobs:
        print(job.path)
    return 0


def _dry_run(args: argparse.Namespace) -> int:
    jobs = render_jobs(args.naf, template=args.template, profile=args.profile, jobs_dir=args.jobs_dir)
    rows = [
        {
            "code": j.naf.compact,
            "naf": j.naf.dotted,
            "level": j.naf.level,
            "status": "rendered",
            "job_file": str(j.path),
            "output_dir": str(Path(args.output_dir) / j.spec.niche),
        }
        for j in jobs
    ]
    return print_dry_run(
        args,
        "jobs",
        rows,
        f"Dry run: {len(rows)} job(s) rendered and validated in {args.jobs_dir}",
        lambda r: f"  {r['code']:<8} {r['level']:<9} {r['job_file']} -> {r['output_dir']}",
    )


def _print_jobs(doc: dict[str, Any]) -> None:
    for e in doc.get("jobs", []):
        rows = "" if e["rows"] is None else f", {e['rows']} rows"
        note = " (resumed)" if e["resumed"] else ""
        print(f"  {e['code']:<8} {e['status']}{note}{rows}, {e['duration_s']:.1f} s -> {e['output_dir']}")
        for w in e["warnings"]:
            print(f"    warning: {w}")
        if e["error"]:
            print(f"    error: {e['error']}")


def check_batch_args(args: argparse.Namespace) -> None:
    """Every check of `salvo jobs batch` that can be made before Prefect starts; a UsageError (exit 2)."""
    if args.template is not None and Path(args.template).exists():
        validate.regular_file(args.template, "--template")  # a FIFO would block the read below
    check_input(args.input)
    if args.max_ram_mb < MIN_RAM_MB:
        raise UsageError(
            f"--max-ram-mb {args.max_ram_mb} is too small: the Parquet reader alone needs about {MIN_RAM_MB} MB"
        )
    validate.number(args.max_ram_mb, "--max-ram-mb", minimum=MIN_RAM_MB, maximum=MAX_RAM_MB, integer=True)
    if args.max_workers is not None:
        validate.number(args.max_workers, "--workers", minimum=1, maximum=MAX_WORKERS, integer=True)
    validate.output_dir(args.output_dir, "--output-dir")
    validate.output_dir(args.jobs_dir, "--jobs-dir")
    if args.job_command is not None:
        if not args.job_command.strip():
            raise UsageError("--job-command is empty")
        check_job_command(args.job_command)
        validate.command_argv(args.job_command, "--job-command")
    if args.dask_address:
        validate.dask_address(args.dask_address)
    # Codes, template and schema are all checked before Prefect starts (a bad one exits 2 at once).
    jobs = render_jobs(args.naf, template=args.template, profile=args.profile, jobs_dir=args.jobs_dir, write=False)
    out = Path(args.output_dir)
    validate.check_layout(
        {j.naf.compact: out / j.spec.niche for j in jobs},
        inputs=[args.input, *(j.path for j in jobs), *([args.template] if args.template else [])],
        reserved=[out / ".salvo"],
    )


def batch_main(args: argparse.Namespace) -> int:
    """Run the batch: 0 all succeeded, 1 a job failed (with or without --continue-on-error), 2 bad usage."""
    check_batch_args(args)
    run = run_options(args, PIPELINE)
    if args.dry_run:
        return _dry_run(args)
    if not args.verbose or args.json:
        # Before Prefect is imported: its INFO lines would drown the summary (they go to stderr).
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    doc = run_flow(
        _flow(),
        progress=Progress(stream=sys.stderr, quiet=args.json or not args.verbose),
        naf=args.naf,
        input=args.input,
        output_dir=args.output_dir,
        template=args.template,
        profile=args.profile,
        jobs_dir=args.jobs_dir,
        sample=args.sample,
        max_ram_mb=args.max_ram_mb,
        job_command=args.job_command,
        run=run,
    )
    if args.json:
        print_json(doc)
    else:
        print_summary(doc, noun="jobs")
        if not args.quiet:
            _print_jobs(doc)
    return exit_code(doc, continue_on_error=args.continue_on_error)


def exit_code(doc: dict[str, Any], *, continue_on_error: bool = False) -> int:
    """1 when a job failed, else 0: as every salvo command. ``continue_on_error`` decides whether the
    batch goes on after a failure, not the exit code (a nightly script must see the failure)."""
    return 1 if doc["summary"]["failed"] else 0


def _flow() -> Any:
    from flows.job_batch import job_batch

    return job_batch
