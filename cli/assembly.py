"""`salvo assembly run|list|status|reassemble`: the seed's batch framework on the assembly flows."""

from __future__ import annotations

import argparse
import functools
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.common import (
    Progress,
    RunFailed,
    add_output_flags,
    add_runner_flags,
    positive_int,
    print_json,
    print_summary,
    run_flow,
    run_options,
)
from salvo import validate
from salvo.errors import UsageError
from salvo.storage import StorageError, check_location, parse_location
from salvo.pipelines import PIPELINES

PIPELINE = PIPELINES["assembly"].flow_name

EXPERIMENT_HELP = "parameter-distortion, expression-noise, response-noise, or a generator pkg.module:function"


def _add_location(p: argparse.ArgumentParser, *, experiment_flag: bool = True) -> None:
    g = p.add_argument_group("where")
    g.add_argument(
        "--storage",
        metavar="NAME|URL",
        help="storage block name, s3://bucket/prefix or folder (default: $SALVO_STORAGE or ./salvo-data)",
    )
    if experiment_flag:
        g.add_argument("--experiment", help=f"which experiment: {EXPERIMENT_HELP}")
    g.add_argument("--exp-number", help="experiment number (default: the experiment's own, 01/02/03)")
    g.add_argument("--version", default="v1", help="version number (default: v1)")
    g.add_argument("--title", help="experiment title (default: the seed's, e.g. batch-parameter-distortion)")


def register(subparsers: Any) -> None:
    """Add `salvo assembly`."""
    top = subparsers.add_parser(
        "assembly",
        help="multi-day dataset generation with assembly IDs (assembly-run)",
        description="Generate datasets run by run, each with an assembly ID, and re-assemble them.",
    )
    sub = top.add_subparsers(dest="assembly_command", metavar="ACTION", required=True)

    run = sub.add_parser(
        "run",
        help="generate one assembly",
        description="Run an experiment once: a new assembly ID, "
        "samples in parallel chunks, one Parquet data file, a ledger row.",
    )
    run.add_argument("experiment", metavar="EXPERIMENT", help=EXPERIMENT_HELP)
    _add_location(run, experiment_flag=False)
    run.add_argument("--samples", type=positive_int, help="samples (n_samples, default 100)")
    run.add_argument("--reps", type=positive_int, help="repetitions per sample and level (n_reps)")
    run.add_argument(
        "--seed",
        type=int,
        help="base random seed (default: a fresh one each run, recorded in the ledger; a resumed run reuses its own)",
    )
    run.add_argument("--config", metavar="FILE", help="YAML config (spec, parameter_generation, levels...)")
    run.add_argument("--result-name", help="data file prefix (default: the seed's, e.g. parameter_distortion_results)")
    run.add_argument(
        "--resume", metavar="ID", help="resume this interrupted or failed assembly; finished chunks are kept"
    )
    run.add_argument("--chunk-size", type=positive_int, default=10, help="samples per chunk (default: 10)")
    add_runner_flags(run, PIPELINE)
    run.set_defaults(func=run_main)

    ls = sub.add_parser("list", help="the ledger: every assembly and its status")
    _add_location(ls)
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_output_flags(ls)
    ls.set_defaults(func=list_main)

    st = sub.add_parser("status", help="started, completed, failed or not_found")
    st.add_argument("assembly_id", metavar="ID", help="YYYYMMDD_HHMMSS_runNNN")
    _add_location(st)
    st.add_argument("--json", action="store_true", help="print JSON")
    add_output_flags(st)
    st.set_defaults(func=status_main)

    re = sub.add_parser("reassemble", help="every completed assembly into one Parquet file")
    re.add_argument("result_name", metavar="RESULT_NAME", help="e.g. parameter_distortion_results")
    re.add_argument(
        "--output", metavar="FILE.parquet", help="where to write (default: beside the data, on the storage)"
    )
    re.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read seed-era .pkl files (unpickling runs code: only for files you trust)",
    )
    re.add_argument(
        "--seed",
        type=int,
        action="append",
        dest="seeds",
        metavar="SEED",
        help="only assemblies generated with this base seed (repeat for several)",
    )
    _add_location(re)
    re.add_argument("--json", action="store_true", help="print JSON")
    add_output_flags(re)
    re.set_defaults(func=reassemble_main)


def _checked(main: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A storage that stops answering ends the command with one line and exit 1."""

    @functools.wraps(main)
    def wrapper(args: argparse.Namespace) -> int:
        from salvo.assembly.reassemble import MissingData

        try:
            return main(args)
        except (StorageError, MissingData) as exc:
            raise RunFailed(str(exc)) from None

    return wrapper


def _storage(args: argparse.Namespace) -> Any:
    """The storage block of ``--storage`` (or ``$SALVO_STORAGE``), checked before any flow starts."""
    from blocks.storage import STORAGE_ENV, storage_block

    if args.storage is not None:
        check_location(args.storage, "--storage")
    elif os.environ.get(STORAGE_ENV):
        check_location(os.environ[STORAGE_ENV], f"${STORAGE_ENV}")
    return storage_block(args.storage)


def resume_hint(args: argparse.Namespace, *, storage: str, assembly_id: str) -> str:
    """The command that resumes this assembly as run: same storage, experiment and sampling flags."""
    argv = ["salvo", "assembly", "run", args.experiment, "--storage", storage]
    for flag, value in (
        ("--exp-number", args.exp_number),
        ("--title", args.title),
        ("--result-name", args.result_name),
        ("--samples", args.samples),
        ("--reps", args.reps),
        ("--config", os.path.abspath(args.config) if args.config else None),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.version != "v1":
        argv += ["--version", args.version]
    if args.chunk_size != 10:
        argv += ["--chunk-size", str(args.chunk_size)]
    return shlex.join([*argv, "--resume", assembly_id])


@_checked
def run_main(args: argparse.Namespace) -> int:
    """Run one assembly; 0 when completed, 1 when a chunk failed, 2 for bad usage."""
    from flows.assembly import assembly_run
    from salvo.assembly.run import plan_assembly, resume_plan

    # Bad input fails here, in one line, before any flow starts (nothing reaches Prefect's database).
    if args.dask_address:
        validate.dask_address(args.dask_address)
    run = run_options(args, PIPELINE)
    plan = plan_assembly(
        args.experiment,
        exp_number=args.exp_number,
        version=args.version,
        title=args.title,
        result_name=args.result_name,
        config_file=args.config,
        chunk_size=args.chunk_size,
        overrides={"n_samples": args.samples, "n_reps": args.reps, "seed": args.seed},
    )
    block = _storage(args)
    if args.resume:
        plan, _ = resume_plan(plan, block.target.child(plan.folder), args.resume)
    doc = run_flow(
        assembly_run,
        progress=Progress(quiet=args.json),
        experiment=args.experiment,
        exp_number=args.exp_number,
        version=args.version,
        storage=args.storage,
        samples=args.samples,
        reps=args.reps,
        seed=plan.seed,
        config_file=args.config,
        title=args.title,
        result_name=args.result_name,
        assembly_id=args.resume,
        chunk_size=args.chunk_size,
        run=run,
    )
    if args.json:
        print_json(doc)
    else:
        print_summary(doc, title="ASSEMBLY RUN COMPLETE", noun="chunks")
        a = doc.get("assembly", {})
        print(
            f"Assembly {a.get('assembly_id')}: {a.get('status')}, seed {a.get('seed')}"
            + (f", {a['rows']} rows in {a['data_file']}" if a.get("data_file") else "")
        )
        print(f"Ledger: {a.get('ledger')}")
        if a.get("status") != "completed":
            print("Resume it with: " + resume_hint(args, storage=block.reference, assembly_id=a.get("assembly_id")))
    return 0 if doc["summary"]["failed"] == 0 else 1


def _folders(args: argparse.Namespace, root: Any) -> list[str]:
    from salvo.assembly.discover import find_experiments
    from salvo.assembly.ids import experiment_folder
    from salvo.assembly.run import experiment_identity

    if getattr(args, "experiment", None) or args.title:
        _, number, title, _ = experiment_identity(
            args.experiment or "custom:fn", exp_number=args.exp_number, title=args.title
        )
        return [experiment_folder(number, args.version, title)]
    return find_experiments(root)


@_checked
def list_main(args: argparse.Namespace) -> int:
    """Print every assembly of one experiment (or of every experiment on the storage)."""
    from salvo.assembly.ledger import describe_status, read_ledger

    root = _storage(args).target
    out = []
    for folder in _folders(args, root):
        for row in read_ledger(root.child(folder)):
            out.append(
                {
                    "experiment": folder,
                    "assembly_id": row.assembly_id,
                    "status": row.status,
                    "state": describe_status(row),
                    "seed": row.seed,
                    "rows": row.n_rows,
                    "result_file": row.result_file,
                    "timestamp": row.timestamp,
                    "updated": row.updated,
                    "message": row.message,
                }
            )
    if args.json:
        print_json(out)
        return 0
    if not out:
        print(f"No assemblies under {root.url}.")
        return 0
    print(f"{'experiment':<36} {'assembly_id':<24} {'status':<44} {'seed':>10} {'rows':>8}")
    for r in out:
        seed = "" if r["seed"] is None else r["seed"]
        rows = "" if r["rows"] is None else r["rows"]
        print(f"{r['experiment']:<36} {r['assembly_id']:<24} {r['state']:<44} {seed:>10} {rows:>8}")
    return 0


@_checked
def status_main(args: argparse.Namespace) -> int:
    """Print started, completed, failed or not_found (a started run whose process is gone: interrupted)."""
    from salvo.assembly.ids import parse_assembly_id
    from salvo.assembly.ledger import describe_status, find_assembly

    aid = str(parse_assembly_id(args.assembly_id))
    root = _storage(args).target
    found = None
    for folder in _folders(args, root):
        row = find_assembly(root.child(folder), aid)
        if row is not None:
            found = (folder, row)
            break
    text = describe_status(found[1] if found else None)
    if args.json:
        row = found[1] if found else None
        print_json(
            {
                "assembly_id": aid,
                "status": row.status if row else "not_found",
                "interrupted": bool(row and row.interrupted),
                "experiment": found[0] if found else None,
                "rows": row.n_rows if row else None,
                "seed": row.seed if row else None,
                "message": row.message if row else "",
            }
        )
    else:
        print(text)
    return 0


def _precheck_reassembly(args: argparse.Namespace, root: Any) -> None:
    """What the flow would refuse (ambiguous experiment, pickles, nothing to read), refused now."""
    from salvo.assembly.discover import locate_experiment
    from salvo.assembly.reassemble import plan_reassembly

    folder = (
        _folders(args, root)[0]
        if (args.experiment or args.title)
        else locate_experiment(root, result_name=args.result_name)
    )
    parts, _ = plan_reassembly(root.child(folder), args.result_name, allow_pickle=args.allow_pickle, seeds=args.seeds)
    if not parts:
        chosen = f" with seed {', '.join(map(str, args.seeds))}" if args.seeds else ""
        raise UsageError(f"no completed assembly of {args.result_name!r}{chosen} in {root.child(folder).url}")


@_checked
def reassemble_main(args: argparse.Namespace) -> int:
    """Re-assemble every completed assembly; report those left out."""
    from flows.assembly import assembly_reassemble

    if args.output:
        check_location(args.output, "--output")
        if not args.output.endswith(".parquet"):
            raise UsageError(f"--output {args.output!r} must end with .parquet")
        output = parse_location(args.output, "--output", block_names=False)
        if output.kind == "local":
            validate.output_dir(Path(output.path).parent, "--output's folder")
            if os.path.isdir(output.path):
                raise UsageError(f"--output {args.output} is a folder, not a file")
    for seed in args.seeds or ():
        validate.number(seed, "--seed", minimum=0, maximum=2**32 - 1, integer=True)
    _precheck_reassembly(args, _storage(args).target)
    doc = run_flow(
        assembly_reassemble,
        result_name=args.result_name,
        experiment=args.experiment,
        exp_number=args.exp_number,
        version=args.version,
        title=args.title,
        storage=args.storage,
        output=args.output,
        allow_pickle=args.allow_pickle,
        seeds=args.seeds,
    )
    if args.json:
        print_json(doc)
        return 0
    print(f"Re-assembled {doc['n_included']} assemblies, {doc['rows']} rows, into {doc['output']}")
    for aid, why in doc["excluded"].items():
        print(f"  left out {aid}: {why}")
    for seed, ids in doc.get("repeated_seeds", {}).items():
        print(f"  warning: {', '.join(ids)} share seed {seed}: their samples repeat each other")
    return 0
