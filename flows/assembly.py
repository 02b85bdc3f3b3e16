"""assembly-run and assembly-reassemble: the seed's multi-day dataset generation, as flows."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.batch import BatchFailed, BatchOptions, run_batch, run_namer, tag_current_run
from salvo.assembly.run import chunk_items, experiment_identity, plan_assembly
from salvo.assembly.ids import experiment_folder
from salvo.assembly.ledger import Heartbeat
from tasks.assembly import (abandon_assembly, child_credentials, close_assembly, open_assembly,
                            reassemble_files, storage_block)

RUN, REASSEMBLE = "assembly-run", "assembly-reassemble"


@flow(name=RUN, flow_run_name=run_namer(RUN, "experiment"), log_prints=True)
def assembly_run(
    experiment: str = "parameter-distortion",
    exp_number: str | None = None,
    version: str = "v1",
    storage: str | None = None,
    samples: int | None = None,
    reps: int | None = None,
    seed: int | None = None,
    config_file: str | None = None,
    config: dict[str, Any] | None = None,
    title: str | None = None,
    result_name: str | None = None,
    assembly_id: str | None = None,
    chunk_size: int = 10,
    parallel: bool = False,
    max_workers: int | None = None,
    dask_address: str | None = None,
    timeout: float = 900.0,
    retries: int = 2,
    force: bool = False,
) -> dict[str, Any]:
    """Generate one assembly: ``started``, chunks of samples in parallel, data file, ``completed``.

    Give ``assembly_id`` of an interrupted or failed run to resume it: finished chunks are kept.
    """
    tag_current_run(RUN)
    overrides = {**(config or {}), "n_samples": samples, "n_reps": reps, "seed": seed}
    plan = plan_assembly(experiment, exp_number=exp_number, version=version, title=title,
                         result_name=result_name, config_file=config_file, overrides=overrides,
                         chunk_size=chunk_size)
    root = storage_block(storage)
    exp = root.child(plan.folder)
    plan = open_assembly(plan, exp, assembly_id)
    items, worker = chunk_items(plan, root.target)
    options = BatchOptions(
        state=exp.child("records"), timeout_s=timeout, max_workers=max_workers,
        parallel=parallel, dask_address=dask_address, retries=retries, force=force,
        settings={"pipeline": RUN, "assembly_id": plan.assembly_id})
    try:
        with child_credentials(root), Heartbeat(exp.target, plan.assembly_id):
            outcome = run_batch(items, worker, pipeline=RUN, options=options)
            doc = close_assembly(outcome, plan, exp, len(items))
    except Exception as exc:
        abandon_assembly(plan, exp, f"{type(exc).__name__}: {exc}")
        raise
    if doc["summary"]["failed"]:
        raise BatchFailed(doc)
    return doc


@flow(name=REASSEMBLE, flow_run_name=run_namer(REASSEMBLE, "result_name"), log_prints=True)
def assembly_reassemble(
    result_name: str,
    experiment: str | None = None,
    exp_number: str | None = None,
    version: str = "v1",
    title: str | None = None,
    storage: str | None = None,
    output: str | None = None,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Stream every completed assembly of ``result_name`` into one Parquet file (also a subflow).

    The experiment folder comes from ``experiment`` or ``title`` (with ``exp_number`` and
    ``version``); without them, the one experiment on the storage holding ``result_name``.
    """
    tag_current_run(REASSEMBLE)
    folder = None
    if experiment or title:
        _, number, name, _ = experiment_identity(experiment or "custom:fn", exp_number=exp_number,
                                                 title=title)
        folder = experiment_folder(number, version, name)
    return reassemble_files(result_name, storage_block(storage), folder, output, allow_pickle)
