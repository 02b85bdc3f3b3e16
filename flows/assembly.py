"""assembly-run and assembly-reassemble: the seed's multi-day dataset generation, as flows."""

from __future__ import annotations

import tempfile
from typing import Any

from prefect import flow
from prefect.states import Failed

from blocks.storage import child_credentials, storage_block
from flows.batch import BatchOptions, batch_state, finish_batch, run_batch, run_namer, tag_current_run
from salvo.assembly.ids import experiment_folder
from salvo.assembly.ledger import Heartbeat
from salvo.assembly.run import (
    chunk_items,
    experiment_identity,
    plan_assembly,
    point_at_data_file,
    report_base,
    report_section,
    report_title,
)
from salvo.html_report import Section
from salvo.options import RunOptions
from salvo.pipelines import PIPELINES
from salvo.storage import StorageError, StorageLost
from tasks.assembly import abandon_assembly, close_assembly, open_assembly, reassemble_files

ASSEMBLY = PIPELINES["assembly"]
RUN, REASSEMBLE = ASSEMBLY.flow("assembly_run").name, ASSEMBLY.flow("assembly_reassemble").name


def _lost(message: str) -> Any:
    """The run's end when its storage is gone: Failed, with one line and no traceback."""
    return Failed(message=message, data=StorageLost(message))


@flow(name=RUN, flow_run_name=run_namer(RUN), log_prints=True)
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
    run: RunOptions | None = None,
) -> Any:
    """Generate one assembly: ``started``, chunks of samples in parallel, data file, ``completed``.

    Without ``seed`` (here or in the config) a fresh seed is drawn and recorded in the ledger.
    Give ``assembly_id`` of an interrupted or failed run to resume it: finished chunks are kept,
    and its recorded seed is reused. If the storage stops answering, no new chunk starts and the
    run ends Failed with one line naming the storage. ``run``: timeout, workers, retries, force
    per chunk; it always stops at the first failed chunk (``fail_fast``).
    """
    tag_current_run(RUN)
    # An assembly cannot complete without every chunk: after a chunk fails (once its retries are
    # spent) no new chunk starts; finished ones are kept for --resume (fail_fast="always" in the table).
    run = RunOptions.of(RUN, run)
    given = {"n_samples": samples, "n_reps": reps, "seed": seed}
    overrides = {**(config or {}), **{k: v for k, v in given.items() if v is not None}}
    plan = plan_assembly(
        experiment,
        exp_number=exp_number,
        version=version,
        title=title,
        result_name=result_name,
        config_file=config_file,
        overrides=overrides,
        chunk_size=chunk_size,
    )
    root = storage_block(storage)
    exp = root.child(plan.folder)
    try:
        plan = open_assembly(plan, exp, assembly_id)
    except StorageError as exc:
        return _lost(str(exc))
    items, worker = chunk_items(plan, root.target)
    options = BatchOptions(
        state=exp.child("records"),
        run=run,
        settings={"pipeline": RUN, "assembly_id": plan.assembly_id},
    )
    try:
        with child_credentials(root), Heartbeat(exp.target, plan.assembly_id):
            outcome = run_batch(items, worker, pipeline=RUN, options=options)
            point_at_data_file(outcome.results, plan, exp.target)
            base = report_base(plan, exp.target)  # links made from where the report lies once uploaded
            section = Section(*report_section(plan, exp.target, ok=outcome.summary.ok, base=base))
            with tempfile.TemporaryDirectory(prefix="salvo-assembly-") as tmp:
                doc = finish_batch(
                    outcome,
                    pipeline=RUN,
                    report_dir=tmp,
                    title=report_title(plan),
                    sections=[section],
                    link_base=base,
                )
                doc = close_assembly(doc, plan, exp, len(items))
    except StorageError as exc:  # the storage is gone: one line, no traceback, nothing more to do
        # A failed chunk whose storage no longer answers stops the batch: the records' storage-loss
        # listener of `run_batch` (the records lie in the experiment's folder) raises StorageLost.
        why = exc.why if isinstance(exc, StorageLost) else str(exc)
        abandon_assembly(plan, exp, why)
        return _lost(
            f"assembly {plan.assembly_id} stopped, finished chunks kept (resume it with "
            f"--resume {plan.assembly_id} once the storage is back): {why}"
        )
    except Exception as exc:
        abandon_assembly(plan, exp, f"{type(exc).__name__}: {exc}")
        raise
    return batch_state(doc)


@flow(name=REASSEMBLE, flow_run_name=run_namer(REASSEMBLE), log_prints=True)
def assembly_reassemble(
    result_name: str,
    experiment: str | None = None,
    exp_number: str | None = None,
    version: str = "v1",
    title: str | None = None,
    storage: str | None = None,
    output: str | None = None,
    allow_pickle: bool = False,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Stream every completed assembly of ``result_name`` into one Parquet file (also a subflow).

    The experiment folder comes from ``experiment`` or ``title`` (with ``exp_number`` and
    ``version``); without them, the one experiment on the storage holding ``result_name``.
    ``seeds`` keeps only the assemblies generated with those base seeds.
    """
    tag_current_run(REASSEMBLE)
    folder = None
    if experiment or title:
        _, number, name, _ = experiment_identity(experiment or "custom:fn", exp_number=exp_number, title=title)
        folder = experiment_folder(number, version, name)
    return reassemble_files(result_name, storage_block(storage), folder, output, allow_pickle, seeds)
