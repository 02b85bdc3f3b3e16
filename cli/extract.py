"""`salvo extract`: the seed's batch_extract_results.py flags, on the netcdf-extract flow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import Progress, add_runner_flags, print_dry_run, print_json, print_summary, run_flow, run_options
from salvo import validate
from salvo.errors import UsageError
from salvo.extract import DEFAULT_DPI, batch_worker, extract_worker, has_existing_output, plan_batch
from salvo.extract.seed_layout import seed_layout_line
from salvo.pipelines import PIPELINES
from salvo.storage import location_kind

PIPELINE = PIPELINES["extract"].flow_name
#: The resolution a plot may be asked for (dots per inch).
DPI_RANGE = (10, 1200)


def register(subparsers: Any) -> None:
    """Add `salvo extract`."""
    p = subparsers.add_parser(
        "extract",
        help="plot every NetCDF file of a folder (netcdf-extract)",
        description="Run a plotting worker over every NetCDF file; resumable, with real timeouts.",
    )
    p.add_argument("--pattern", default="*.nc", help="glob the file names must match (default: *.nc)")
    p.add_argument("--directory", default=".", help="folder to search (default: .)")
    p.add_argument(
        "--recursive",
        action="store_true",
        help="search sub-folders too (never Salvo's own *_results/, .salvo/ or --output-dir)",
    )
    p.add_argument("--output-dir", help="put each file's plots under this folder (default: <file>_results/ beside it)")
    p.add_argument(
        "--skip-existing", action="store_true", help="skip files whose output folder already holds PNG plots"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="resume an interrupted batch (always on); also imports a seed-era batch_resume.txt",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be processed; write nothing")
    p.add_argument(
        "--worker-command",
        help="run this command per file instead, e.g. 'python extract_results.py {input} {output_dir}'",
    )
    p.add_argument(
        "--state", help="where resume records live: a folder, s3:// URL or storage block (default: <output>/.salvo)"
    )
    p.add_argument(
        "--items-per-task",
        type=int,
        help="items one Prefect task carries (default: 1 for small batches, up to 50 for large)",
    )
    p.add_argument(
        "--seed-layout",
        action="store_true",
        default=None,
        help="run your own extract_results.py unchanged, as the seed did: "
        "'python extract_results.py FILE' in the current "
        "folder, plots in <stem>/ there (detected when a batch_resume.txt sits beside a <stem>/ with plots)",
    )
    p.add_argument(
        "--worker-script",
        default=None,
        help="the seed's worker script in the current folder, with --seed-layout (default: extract_results.py)",
    )
    p.add_argument(
        "--dpi",
        default=None,
        help=f"resolution of the built-in plots, dots per inch (default: {DEFAULT_DPI}; figures are 10 x 4 inches)",
    )
    add_runner_flags(p, PIPELINE)
    p.set_defaults(func=main)


def check_args(args: argparse.Namespace) -> dict[str, Any]:
    """Every check that needs no work done, before Prefect starts; the flow's checked parameters."""
    if not Path(args.directory).exists():
        raise UsageError(f"directory does not exist: {args.directory}")
    validate.existing_dir(args.directory, "--directory")
    if args.items_per_task is not None:
        validate.number(args.items_per_task, "--items-per-task", minimum=1, integer=True)
    dpi = (
        None
        if args.dpi is None
        else validate.number(args.dpi, "--dpi", minimum=DPI_RANGE[0], maximum=DPI_RANGE[1], integer=True)
    )
    if dpi is not None and args.worker_command is not None:
        raise UsageError("--dpi applies to the built-in plots only, not to --worker-command")
    if args.output_dir is not None:
        validate.output_dir(args.output_dir, "--output-dir")
    if args.state is not None:
        if not args.state.strip():
            raise UsageError("--state is empty")
        kind, where = location_kind(args.state, "--state")  # refuses a misspelled URL
        if kind == "local":  # not an s3:// URL or a storage block's name
            validate.output_dir(where, "--state")
    extract_worker(args.worker_command)  # quotes, placeholders, program
    dask_address = validate.dask_address(args.dask_address) if args.dask_address else None
    return dict(dpi=dpi, run=run_options(args, PIPELINE, dask_address=dask_address))


def _dry_run(args: argparse.Namespace, plan: Any) -> int:
    settled = {r.item_id: r for r in plan.settled}

    def action(it: Any) -> str:
        r = settled.get(it.id)
        if r is not None:
            return "error (unreadable)" if r.status.failed else "done (batch_resume.txt)"
        return "skip (output exists)" if args.skip_existing and has_existing_output(it) else "process"

    rows = [{"file": it.id, "output_dir": it.outputs[0], "action": action(it)} for it in plan.items]
    return print_dry_run(
        args,
        "items",
        rows,
        f"Dry run: {len(rows)} file(s) match {args.pattern!r} in {args.directory}",
        lambda row: f"  {row['action']:<24} {row['file']} -> {row['output_dir']}",
    )


def main(args: argparse.Namespace) -> int:
    """Run the batch; 0 when nothing failed, 1 when an item failed, 2 for bad usage."""
    checked = check_args(args)
    plan = plan_batch(
        args.directory,
        pattern=args.pattern,
        output_dir=args.output_dir,
        recursive=args.recursive,
        worker_command=args.worker_command,
        state=args.state,
        dpi=checked["dpi"],
        resume=args.resume,
        seed_layout=args.seed_layout,
        worker_script=args.worker_script,
    )
    if plan.seed_layout and not args.json:
        print(seed_layout_line(plan))
    if not plan.items:
        msg = f"No files match {args.pattern!r} in {args.directory}; nothing to do."
        print_json({"summary": {"total": 0}, "items": [], "message": msg}) if args.json else print(msg)
        return 0
    if args.dry_run:
        return _dry_run(args, plan)
    seed = dict(seed_layout=bool(plan.seed_layout), worker_script=args.worker_script)
    where = dict(
        directory=args.directory,
        pattern=args.pattern,
        output_dir=args.output_dir,
        recursive=args.recursive,
        worker_command=args.worker_command,
        state=args.state,
        dpi=checked["dpi"],
        **seed,
    )
    done = None if args.force else _already_done(**where, planned=None if args.resume else plan)
    if done is not None:
        # Every file was finished by earlier runs: answer from their records, with no flow run.
        done["message"] = f"All {done['summary']['total']} files were finished by earlier runs; nothing to run."
        if args.json:
            print_json(done)
        else:
            print(done["message"])
            print_summary(done)
        return 0
    _prestart(batch_worker(plan, args.worker_command), checked["run"], len(plan.items) - len(plan.settled))
    doc = run_flow(
        _flow(),
        progress=Progress(quiet=args.json or getattr(args, "quiet", False), noun="files"),
        **where,
        skip_existing=args.skip_existing,
        resume=args.resume,
        run=checked["run"],
    )
    if args.json:
        print_json(doc)
    else:
        print_summary(doc)
    return 0 if doc["summary"]["failed"] == 0 else 1


def _already_done(**where: Any) -> dict[str, Any] | None:
    from salvo.spine.extract_settled import already_done  # no Prefect import: a finished batch needs no API

    return already_done(**where, load_block=_load_block)


def _load_block(name: str) -> Any:
    """The records of the storage block saved as ``name`` (Prefect's API: imported only for a block's name)."""
    from tasks.state import resolve_state

    return resolve_state(name)


def _prestart(worker: Any, run: Any, pending: int) -> None:
    """Start the items' worker processes now, so that their imports overlap with Prefect's (local runs only)."""
    if run.on_cluster or pending <= 0:
        return
    from cli.server import prepare_api
    from salvo.runner import prestart

    prepare_api()  # the API's environment and the reaper first: the worker processes inherit both
    prestart(worker, min(run.workers, pending))


def _flow() -> Any:
    from flows.netcdf_extract import netcdf_extract

    return netcdf_extract
