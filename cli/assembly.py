"""`salvo assembly run|list|status|reassemble`: the seed's batch framework on the assembly flows."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import Progress, add_runner_flags, positive_int, print_json, print_summary, run_flow
from salvo.errors import UsageError

EXPERIMENT_HELP = "parameter-distortion, expression-noise, response-noise, or a generator pkg.module:function"


def _add_location(p: argparse.ArgumentParser, *, experiment_flag: bool = True) -> None:
    g = p.add_argument_group("where")
    g.add_argument("--storage", metavar="NAME|URL",
                   help="storage block name, s3://bucket/prefix or folder (default: $SALVO_STORAGE or ./salvo-data)")
    if experiment_flag:
        g.add_argument("--experiment", help=f"which experiment: {EXPERIMENT_HELP}")
    g.add_argument("--exp-number", help="experiment number (default: the experiment's own, 01/02/03)")
    g.add_argument("--version", default="v1", help="version number (default: v1)")
    g.add_argument("--title", help="experiment title (default: the seed's, e.g. batch-parameter-distortion)")


def register(subparsers: Any) -> None:
    """Add `salvo assembly`."""
    top = subparsers.add_parser("assembly", help="multi-day dataset generation with assembly IDs (assembly-run)",
                                description="Generate datasets run by run, each with an assembly ID, and re-assemble them.")
    sub = top.add_subparsers(dest="assembly_command", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="generate one assembly", description="Run an experiment once: a new assembly ID, "
                         "samples in parallel chunks, one Parquet data file, a ledger row.")
    run.add_argument("experiment", metavar="EXPERIMENT", help=EXPERIMENT_HELP)
    _add_location(run, experiment_flag=False)
    run.add_argument("--samples", type=positive_int, help="samples (n_samples, default 100)")
    run.add_argument("--reps", type=positive_int, help="repetitions per sample and level (n_reps)")
    run.add_argument("--seed", type=int, help="base random seed (default 42)")
    run.add_argument("--config", metavar="FILE", help="YAML config (spec, parameter_generation, levels...)")
    run.add_argument("--result-name", help="data file prefix (default: the seed's, e.g. parameter_distortion_results)")
    run.add_argument("--resume", metavar="ID", help="resume this interrupted or failed assembly; finished chunks are kept")
    run.add_argument("--chunk-size", type=positive_int, default=10, help="samples per chunk (default: 10)")
    add_runner_flags(run)
    run.set_defaults(func=run_main)

    ls = sub.add_parser("list", help="the ledger: every assembly and its status")
    _add_location(ls)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=list_main)

    st = sub.add_parser("status", help="started, completed, failed or not_found")
    st.add_argument("assembly_id", metavar="ID", help="YYYYMMDD_HHMMSS_runNNN")
    _add_location(st)
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=status_main)

    re = sub.add_parser("reassemble", help="every completed assembly into one Parquet file")
    re.add_argument("result_name", metavar="RESULT_NAME", help="e.g. parameter_distortion_results")
    re.add_argument("--output", metavar="FILE.parquet", help="where to write (default: beside the data, on the storage)")
    re.add_argument("--allow-pickle", action="store_true",
                    help="also read seed-era .pkl files (unpickling runs code: only for files you trust)")
    _add_location(re)
    re.add_argument("--json", action="store_true", help="print JSON")
    re.set_defaults(func=reassemble_main)


def run_main(args: argparse.Namespace) -> int:
    """Run one assembly; 0 when completed, 1 when a chunk failed, 2 for bad usage."""
    from flows.assembly import assembly_run
    from salvo.assembly.run import plan_assembly

    # Bad input fails here, in one line, before Prefect starts.
    plan_assembly(args.experiment, exp_number=args.exp_number, version=args.version, title=args.title,
                  result_name=args.result_name, config_file=args.config, chunk_size=args.chunk_size,
                  overrides={"n_samples": args.samples, "n_reps": args.reps, "seed": args.seed})
    doc = run_flow(
        assembly_run, progress=Progress(quiet=args.json),
        experiment=args.experiment, exp_number=args.exp_number, version=args.version, storage=args.storage,
        samples=args.samples, reps=args.reps, seed=args.seed, config_file=args.config, title=args.title,
        result_name=args.result_name, assembly_id=args.resume, chunk_size=args.chunk_size,
        parallel=args.parallel or bool(args.dask_address), max_workers=args.max_workers,
        dask_address=args.dask_address, timeout=args.timeout, retries=args.retries, force=args.force,
    )
    if args.json:
        print_json(doc)
    else:
        print_summary(doc, title="ASSEMBLY RUN COMPLETE", noun="chunks")
        a = doc.get("assembly", {})
        print(f"Assembly {a.get('assembly_id')}: {a.get('status')}"
              + (f", {a['rows']} rows in {a['data_file']}" if a.get("data_file") else ""))
        print(f"Ledger: {a.get('ledger')}")
        if a.get("status") != "completed":
            print(f"Resume it with: salvo assembly run {args.experiment} --resume {a.get('assembly_id')}")
    return 0 if doc["summary"]["failed"] == 0 else 1


def _folders(args: argparse.Namespace, root: Any) -> list[str]:
    from salvo.assembly.discover import find_experiments
    from salvo.assembly.ids import experiment_folder
    from salvo.assembly.run import experiment_identity

    if getattr(args, "experiment", None) or args.title:
        _, number, title, _ = experiment_identity(args.experiment or "custom:fn", exp_number=args.exp_number,
                                                  title=args.title)
        return [experiment_folder(number, args.version, title)]
    return find_experiments(root)


def list_main(args: argparse.Namespace) -> int:
    """Print every assembly of one experiment (or of every experiment on the storage)."""
    from salvo.assembly.ledger import describe_status, read_ledger
    from tasks.assembly import storage_block

    root = storage_block(args.storage).target
    out = []
    for folder in _folders(args, root):
        for row in read_ledger(root.child(folder)):
            out.append({"experiment": folder, "assembly_id": row.assembly_id, "status": row.status,
                        "state": describe_status(row), "rows": row.n_rows, "result_file": row.result_file,
                        "timestamp": row.timestamp, "updated": row.updated, "message": row.message})
    if args.json:
        print_json(out)
        return 0
    if not out:
        print(f"No assemblies under {root.url}.")
        return 0
    print(f"{'experiment':<36} {'assembly_id':<24} {'status':<44} {'rows':>8}")
    for r in out:
        print(f"{r['experiment']:<36} {r['assembly_id']:<24} {r['state']:<44} {'' if r['rows'] is None else r['rows']:>8}")
    return 0


def status_main(args: argparse.Namespace) -> int:
    """Print started, completed, failed or not_found (a started run whose process is gone: interrupted)."""
    from salvo.assembly.ids import parse_assembly_id
    from salvo.assembly.ledger import describe_status, find_assembly
    from tasks.assembly import storage_block

    aid = str(parse_assembly_id(args.assembly_id))
    root = storage_block(args.storage).target
    found = None
    for folder in _folders(args, root):
        row = find_assembly(root.child(folder), aid)
        if row is not None:
            found = (folder, row)
            break
    text = describe_status(found[1] if found else None)
    if args.json:
        row = found[1] if found else None
        print_json({"assembly_id": aid, "status": row.status if row else "not_found",
                    "interrupted": bool(row and row.interrupted), "experiment": found[0] if found else None,
                    "rows": row.n_rows if row else None, "message": row.message if row else ""})
    else:
        print(text)
    return 0


def reassemble_main(args: argparse.Namespace) -> int:
    """Re-assemble every completed assembly; report those left out."""
    from flows.assembly import assembly_reassemble

    if args.output and not args.output.endswith(".parquet"):
        raise UsageError(f"--output {args.output!r} must end with .parquet")
    doc = run_flow(assembly_reassemble, result_name=args.result_name, experiment=args.experiment,
                   exp_number=args.exp_number, version=args.version, title=args.title, storage=args.storage,
                   output=args.output, allow_pickle=args.allow_pickle)
    if args.json:
        print_json(doc)
        return 0
    print(f"Re-assembled {doc['n_included']} assemblies, {doc['rows']} rows, into {doc['output']}")
    for aid, why in doc["excluded"].items():
        print(f"  left out {aid}: {why}")
    return 0
