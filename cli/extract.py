"""`salvo extract`: the seed's batch_extract_results.py flags, on the netcdf-extract flow."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import Progress, add_runner_flags, print_json, print_summary, run_flow
from salvo.extract import discover_inputs, extract_worker, has_existing_output, plan_items


def register(subparsers: Any) -> None:
    """Add `salvo extract`."""
    p = subparsers.add_parser("extract", help="plot every NetCDF file of a folder (netcdf-extract)", description="Run a plotting worker over every NetCDF file; resumable, with real timeouts.")
    p.add_argument("--pattern", default="*.nc", help="glob the file names must match (default: *.nc)")
    p.add_argument("--directory", default=".", help="folder to search (default: .)")
    p.add_argument("--recursive", action="store_true", help="search sub-folders too")
    p.add_argument("--output-dir", help="put each file's plots under this folder (default: <file>_results/ beside it)")
    p.add_argument("--skip-existing", action="store_true", help="skip files whose output folder already holds PNG plots")
    p.add_argument("--resume", action="store_true", help="resume an interrupted batch (always on; kept for the seed's users)")
    p.add_argument("--dry-run", action="store_true", help="show what would be processed; write nothing")
    p.add_argument("--worker-command", help="run this command per file instead, e.g. 'python extract_results.py {input} {output_dir}'")
    p.add_argument("--state", help="where resume records live: a folder, s3:// URL or storage block (default: <output>/.salvo)")
    p.add_argument("--items-per-task", type=int, help="items one Prefect task carries (default: 1 for small batches, up to 20 for large)")
    add_runner_flags(p)
    p.set_defaults(func=main)


def _dry_run(args: argparse.Namespace) -> int:
    files = discover_inputs(args.directory, pattern=args.pattern, recursive=args.recursive)
    extract_worker(args.worker_command)  # a bad worker command fails a dry run too
    items = plan_items(files, directory=args.directory, output_dir=args.output_dir, worker_command=args.worker_command)
    plan = [{"file": it.id, "output_dir": it.outputs[0], "action": "skip (output exists)" if args.skip_existing and has_existing_output(it) else "process"} for it in items]
    if args.json:
        print_json({"dry_run": True, "items": plan})
        return 0
    print(f"Dry run: {len(plan)} file(s) match {args.pattern!r} in {args.directory}")
    for row in plan:
        print(f"  {row['action']:<22} {row['file']} -> {row['output_dir']}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the batch; 0 when nothing failed, 1 when an item failed, 2 for bad usage."""
    files = discover_inputs(args.directory, pattern=args.pattern, recursive=args.recursive)
    if not files:
        msg = f"No files match {args.pattern!r} in {args.directory}; nothing to do."
        print_json({"summary": {"total": 0}, "items": [], "message": msg}) if args.json else print(msg)
        return 0
    if args.dry_run:
        return _dry_run(args)
    extract_worker(args.worker_command)  # fail on a bad worker command before starting Prefect
    where = dict(directory=args.directory, pattern=args.pattern, output_dir=args.output_dir, recursive=args.recursive,
                 worker_command=args.worker_command, state=args.state)
    done = None if args.force else _already_done(**where)
    if done is not None:
        # Every file was finished by earlier runs: answer from their records, with no flow run.
        done["message"] = f"All {done['summary']['total']} files were finished by earlier runs; nothing to run."
        if args.json:
            print_json(done)
        else:
            print(done["message"])
            print_summary(done)
        return 0
    doc = run_flow(
        _flow(), progress=Progress(quiet=args.json),
        directory=args.directory, pattern=args.pattern, output_dir=args.output_dir, recursive=args.recursive,
        skip_existing=args.skip_existing, parallel=args.parallel or bool(args.dask_address), max_workers=args.max_workers,
        dask_address=args.dask_address, timeout=args.timeout, retries=args.retries, force=args.force,
        worker_command=args.worker_command, state=args.state, items_per_task=args.items_per_task,
    )
    if args.json:
        print_json(doc)
    else:
        print_summary(doc)
    return 0 if doc["summary"]["failed"] == 0 else 1


def _already_done(**where: Any) -> dict[str, Any] | None:
    from flows.netcdf_extract import already_done

    return already_done(**where)


def _flow() -> Any:
    from flows.netcdf_extract import netcdf_extract

    return netcdf_extract
