"""Demo of assembly-run / assembly-reassemble: two small runs of the seed's response-noise
experiment on a local storage, a status query, and the re-assembly into one Parquet file."""

from __future__ import annotations

from pathlib import Path

from cli.common import Progress, run_flow


def run_demo(root: Path) -> list[str]:
    """Generate two assemblies under ``root`` in parallel chunks, then re-assemble them."""
    from flows.assembly import assembly_reassemble, assembly_run
    from salvo.assembly.ledger import describe_status, find_assembly
    from salvo.options import RunOptions
    from salvo.storage import open_storage

    storage = root / "storage"
    params = dict(
        experiment="response-noise",
        storage=str(storage),
        samples=12,
        reps=2,
        chunk_size=4,
        run=RunOptions(workers=2, retries=0),
    )
    runs = [run_flow(assembly_run, progress=Progress(), **params, seed=seed)["assembly"] for seed in (1, 2)]
    doc = run_flow(assembly_reassemble, result_name="response_noise_results", storage=str(storage))
    exp = open_storage(str(storage)).child(runs[0]["folder"])
    status = describe_status(find_assembly(exp, runs[0]["assembly_id"]))
    return [
        f"assembly-run: assemblies {runs[0]['assembly_id']} and {runs[1]['assembly_id']}: "
        f"{runs[0]['rows']} + {runs[1]['rows']} rows (status of the first: {status})",
        f"  data files: {storage}/{runs[0]['folder']}/response_noise_results_<assembly_id>.parquet",
        f"  ledger:     {runs[0]['ledger']}",
        f"  reports:    {storage}/{runs[0]['folder']}/reports/<assembly_id>/",
        f"assembly-reassemble: {doc['n_included']} assemblies, {doc['rows']} rows -> {doc['output']}",
        f"  try: salvo assembly list --storage {storage}",
    ]
