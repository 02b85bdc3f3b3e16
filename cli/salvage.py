"""`salvo salvage`, `salvo merge`, `salvo recover`, and the seed's standalone `pyddt-salvage` / `pyddt-merge`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from salvo.errors import UsageError
from salvo.pipelines import PIPELINES

GRIDDED = PIPELINES["gridded"]

SALVAGE_HELP = "Salvage a failed batch run by creating a backup and preparing for re-run."
MERGE_HELP = "Merge outputs from a salvaged run and a rerun of failed cells."


def _salvage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("output_dir", help="Path to the output directory containing run_status.nc")
    p.add_argument("backup_dir", help="Path where the backup should be created (must not exist)")
    p.add_argument("--original-mask", required=True, help="Path to the original run-mask.nc used for this run")
    p.add_argument(
        "--new-mask", required=True, help="Path where the new run-mask (failed cells only) should be written"
    )
    p.add_argument("--run-status", help="Path to run_status.nc (default: OUTPUT_DIR/run_status.nc)")
    p.add_argument("--verbose", "-v", action="store_true", help="Print detailed progress information")
    p.add_argument(
        "--copy",
        action="store_true",
        help="Copy the outputs (reflinks where the filesystem can) and leave OUTPUT_DIR as it is "
        "(default: move OUTPUT_DIR to BACKUP_DIR and leave an empty OUTPUT_DIR for the re-run)",
    )


def _merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("salvaged_dir", help="Path to the salvaged output directory (backup from original run)")
    p.add_argument("rerun_dir", help="Path to the rerun output directory (results from re-running failed cells)")
    p.add_argument("output_dir", help="Path where merged outputs should be written")
    _allow_missing_arg(p)
    p.add_argument("--verbose", "-v", action="store_true", help="Print detailed progress information")


def _allow_missing_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-missing",
        action="append",
        default=[],
        metavar="NAME",
        help="a NetCDF file the re-run may lack (repeatable); without it a missing file is an error. "
        "The re-run's cells are then marked failed (merge_source -k), never 100",
    )


def run_salvage(args: argparse.Namespace) -> int:
    """Back up the outputs and write the failed-cells mask; 0 on success."""
    from salvo.gridded.checks import check_salvage
    from salvo.gridded.salvage import salvage_run

    check_salvage(
        args.output_dir,
        args.backup_dir,
        original_mask=args.original_mask,
        new_mask=args.new_mask,
        run_status=args.run_status,
        copy=args.copy,
    )
    salvage_run(
        args.output_dir,
        backup_dir=args.backup_dir,
        original_mask=args.original_mask,
        new_mask=args.new_mask,
        run_status=args.run_status,
        copy=args.copy,
        verbose=args.verbose,
        log=print,
    )
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Merge a salvaged run with its re-run into a new folder; 0 on success, 1 if the merged files fail their check."""
    from salvo.gridded.checks import check_merge
    from salvo.gridded.merge import MergeVerificationError, merge_outputs

    check_merge(args.salvaged_dir, args.rerun_dir, args.output_dir)
    try:
        report = merge_outputs(
            args.salvaged_dir,
            rerun_dir=args.rerun_dir,
            output_dir=args.output_dir,
            allow_missing=args.allow_missing,
            verbose=args.verbose,
            log=print,
        )
    except MergeVerificationError as exc:
        raise _run_failed(str(exc)) from None
    if not args.verbose:
        print(
            f"✓ Merge complete\n  Merged: {len(report.merged)} files\n  Total successful cells: {report.total_success}"
        )
    return 0


def run_recover(args: argparse.Namespace) -> int:
    """Run the salvage-merge flow; 0 when every enabled cell succeeded, 1 otherwise."""
    from cli.common import Progress, print_json, run_flow, run_options
    from salvo.gridded.checks import check_recover
    from salvo.gridded.recovery import plan_layout
    from salvo.gridded.report import console_lines
    from salvo.items import render_command

    # Every check before Prefect starts: bad input is one line and exit 2, nothing touched.
    _from_config(args)
    timeout = check_recover(
        model_command=args.model_command,
        mask=args.mask,
        output=args.output,
        work_dir=args.work_dir,
        max_rounds=args.max_rounds,
        timeout=args.timeout,
    )
    run = run_options(args, GRIDDED.flow_name, timeout_s=timeout)
    plan_layout(args.mask, output=args.output, work=args.work_dir)
    render_command(args.model_command, {"mask": args.mask, "output": args.output, "config": args.config or ""})
    if args.cells_per_batch is not None:
        return _recover_batches(args, run)
    if run.slurm is not None:
        raise UsageError("--cluster slurm runs a recovery's batches as SLURM jobs: give --cells-per-batch N too")
    from flows.salvage_merge import salvage_merge

    doc = run_flow(
        salvage_merge,
        progress=Progress(stream=sys.stderr, quiet=True),
        model_command=args.model_command,
        mask=args.mask,
        output=args.output,
        max_rounds=int(args.max_rounds),
        work_dir=args.work_dir,
        full_copy=args.copy,
        allow_missing=list(args.allow_missing),
        run=run,
        config=args.config,
    )
    if args.json:
        print_json(doc)
    else:
        lines = console_lines(doc)
        print("\n".join(lines if not args.quiet else [ln for ln in lines if _is_summary_line(ln)]))
    return 0 if doc["summary"]["ok"] else 1


def _from_config(args: argparse.Namespace) -> None:
    """``--config config/config.js``: dvmdostem's own configuration gives the run-mask and output folder
    (flags given as well win), and fills the model command's ``{config}``."""
    if args.config is None:
        if args.mask is None or args.output is None:
            raise UsageError("give --mask and --output, or dvmdostem's --config config/config.js")
        return
    from salvo.gridded.dvmconfig import config_paths, read_config

    mask, output = config_paths(read_config(args.config), config=args.config)
    args.mask, args.output = args.mask or mask, args.output or output


def _recover_batches(args: argparse.Namespace, run: Any) -> int:
    """``--cells-per-batch N``: the run split into batches, each recovered as an item, then merged."""
    from cli.common import Progress, print_json, run_flow
    from flows.recover_batches import recover_batches

    for flag, value in (("--cells-per-batch", args.cells_per_batch), ("--max-queued", args.max_queued)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")
    doc = run_flow(
        recover_batches,
        progress=Progress(stream=sys.stderr, quiet=args.json),
        model_command=args.model_command,
        mask=args.mask,
        output=args.output,
        cells_per_batch=args.cells_per_batch,
        max_queued=args.max_queued,
        max_rounds=int(args.max_rounds),
        work_dir=args.work_dir,
        full_copy=args.copy,
        run=run,
        config=args.config,
    )
    if args.json:
        print_json(doc)
    else:
        merged = doc.get("merge", {})
        print(
            f"{len(doc.get('batches', []))} batches: {doc['summary'].get('succeeded', 0)} recovered, "
            f"{doc['summary'].get('failed', 0)} failed"
        )
        print(
            f"merge: {merged['error']}"
            if "error" in merged
            else f"merged into {merged['output']}: "
            f"{merged['success_cells']} of {merged['enabled_cells']} cells succeeded"
        )
    return 0 if doc["summary"]["ok"] else 1


def _is_summary_line(line: str) -> bool:
    """With --quiet, recover prints its closing summary and errors only, not each round."""
    return not line.lstrip().lower().startswith("round")


def register(subparsers: Any) -> None:
    """Add `salvo salvage`, `salvo merge` and `salvo recover`."""
    p = subparsers.add_parser(
        "salvage", help="back up a partly failed gridded run and write a failed-cells mask", description=SALVAGE_HELP
    )
    _salvage_args(p)
    p.set_defaults(func=run_salvage)
    p = subparsers.add_parser("merge", help="merge a salvaged gridded run with its re-run", description=MERGE_HELP)
    _merge_args(p)
    p.set_defaults(func=run_merge)
    p = subparsers.add_parser(
        "recover",
        help="run a gridded model, re-running failed cells until all succeed (salvage-merge)",
        description="Run the model; while enabled cells failed: salvage, re-run the failed cells, merge. "
        "The original run-mask is always put back.",
    )
    p.add_argument(
        "--model-command",
        required=True,
        help="the model's command line; it reads the run-mask at --mask and writes --output "
        "({mask} and {output} are filled in if present)",
    )
    p.add_argument(
        "--mask", help="the run-mask the model reads (kept and restored); default: IO.runmask_file of --config"
    )
    p.add_argument(
        "--output",
        help="the folder the model writes; ends up holding the merged outputs; default: IO.output_dir of --config",
    )
    p.add_argument(
        "--config",
        metavar="config/config.js",
        help="dvmdostem's own configuration: the run-mask and "
        "output folder come from its IO section; {config} in --model-command is filled in "
        "(per batch: the batch's copy)",
    )
    p.add_argument(
        "--cells-per-batch",
        type=int,
        default=None,
        metavar="N",
        help="split the run into batches of N enabled cells (dvmdostem's scripts use 25), recover each batch as "
        "an item (here, on Dask or on SLURM), then merge them into --output",
    )
    p.add_argument(
        "--max-queued",
        type=int,
        default=15,
        metavar="N",
        help="with --cells-per-batch: most batches running or queued at once (default: 15, as dvmdostem's scripts)",
    )
    p.add_argument("--max-rounds", default=3, help="most re-run rounds (default: 3)")
    p.add_argument(
        "--timeout",
        default=None,
        metavar="DURATION",
        help="kill a model run (its whole process group) after this long: seconds, or 90s, 15m, 2h "
        f"(default: {GRIDDED.timeout_s / 3600:g}h)",
    )
    p.add_argument(
        "--work-dir", help="where each round's backups, masks, re-runs and merges go (default: OUTPUT.recovery)"
    )
    p.add_argument(
        "--copy",
        action="store_true",
        help="back up each round with copies (reflinks where possible) instead of moving the output folder",
    )
    _allow_missing_arg(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    from cli.common import add_runner_flags

    # The shared flags, as every batch command has them. A round runs one model process (one worker);
    # --retries gives that model run extra tries within its round (default 0: the rounds are the retries).
    add_runner_flags(p, GRIDDED.flow_name, parallel_switch=False, dask=False)
    p.set_defaults(func=run_recover)


def _run_failed(message: str) -> Exception:
    from cli.common import RunFailed

    return RunFailed(message)


def _standalone(prog: str, description: str, add: Any, run: Any, argv: list[str] | None) -> int:
    from cli.common import CliError
    from cli.main import OneLineErrorParser

    parser = OneLineErrorParser(prog=prog, description=description)
    add(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def salvage_main(argv: list[str] | None = None) -> int:
    """`pyddt-salvage OUTPUT_DIR BACKUP_DIR --original-mask M --new-mask N [--run-status P] [--verbose]`."""
    return _standalone("pyddt-salvage", SALVAGE_HELP, _salvage_args, run_salvage, argv)


def merge_main(argv: list[str] | None = None) -> int:
    """`pyddt-merge [--verbose] SALVAGED_DIR RERUN_DIR OUTPUT_DIR`."""
    return _standalone("pyddt-merge", MERGE_HELP, _merge_args, run_merge, argv)
