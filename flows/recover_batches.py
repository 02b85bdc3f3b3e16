"""recover-batches: a gridded run split into batches of cells, each recovered as an item, then merged.

``salvo recover --cells-per-batch N`` (or this flow from Python or a deployment) splits the run-mask
as dvmdostem's cluster scripts do, runs each batch's own recovery (model, then salvage, re-run and
merge of its failed cells, round after round: the ``salvage-merge`` pipeline, as a command) as one
item of a batch, locally, on Dask or as SLURM jobs, at most ``max_queued`` at once, then joins every
batch into one full-domain output (:func:`salvo.gridded.split.merge_batches`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.batch import BatchOptions, batch_state, finish_batch, run_batch, run_namer, tag_current_run
from salvo.errors import UsageError
from salvo.gridded.formats import STATUS_FILE
from salvo.gridded.dvmconfig import read_config, write_batch_config
from salvo.gridded.recovery import plan_layout
from salvo.gridded.split import Batch, merge_batches, split_mask
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.pipelines import PIPELINES

PIPELINE = PIPELINES["gridded"].flow_name  # its options and records: the gridded pipeline's
FLOW = PIPELINES["gridded"].flow("recover_batches").name
#: What the items are: one batch's whole recovery, as `salvo recover` runs it.
BATCH_WORKER = Worker("command", "{argv}", verify="salvo.gridded.split:verify_batch")


def batch_argv(
    batch: Batch, *, model_command: str, max_rounds: int, run: RunOptions, full_copy: bool, config: str | None = None
) -> list[str]:
    """The command that recovers one batch: `salvo recover` on its own run-mask and folders (and its own
    copy of dvmdostem's config.js, when one was given)."""
    argv = [
        sys.executable,
        "-m",
        "cli",
        "recover",
        "--model-command",
        model_command,
        "--mask",
        batch.mask,
        "--output",
        batch.output,
        "--work-dir",
        batch.work,
        "--max-rounds",
        str(max_rounds),
        "--json",
    ]
    if config is not None:
        argv += ["--config", str(Path(batch.mask).with_name("config.js"))]
    if run.timeout_s is not None:
        argv += ["--timeout", f"{run.timeout_s:g}s"]
    return argv + (["--copy"] if full_copy else [])


def batch_run(run: RunOptions, *, max_rounds: int, max_queued: int) -> RunOptions:
    """How the batches run: at most ``max_queued`` at once, no retries (the rounds are the retries), each
    given the time of its model runs and merges; on SLURM, at most ``max_queued`` jobs."""
    per_batch = None if run.timeout_s is None else run.timeout_s * (max_rounds + 1) + 600.0
    values = {
        **run.model_dump(exclude={"timeout_s", "retries", "workers", "fail_fast", "items_per_task", "slurm"}),
        "timeout_s": per_batch,
        "retries": 0,
        "workers": max_queued,
        "fail_fast": False,
        "items_per_task": 1,
    }
    if run.slurm is not None:
        values["slurm"] = run.slurm.model_copy(update={"max_jobs": min(run.slurm.max_jobs, max_queued)})
    return RunOptions.model_validate(values)


@task(name="merge batches")
def merge_task(batches: list[Batch], output: str) -> dict[str, Any]:
    return merge_batches(batches, output)


@flow(name=FLOW, flow_run_name=run_namer(FLOW))
def recover_batches(
    model_command: str,
    mask: str = "run-mask.nc",
    output: str = "output",
    cells_per_batch: int = 25,
    max_queued: int = 15,
    max_rounds: int = 3,
    work_dir: str | None = None,
    full_copy: bool = False,
    run: RunOptions | None = None,
    config: str | None = None,
) -> Any:
    """Split ``mask`` into batches of ``cells_per_batch`` cells, recover each (at most ``max_queued`` at
    once), merge them into ``output``. Failed when a batch still has failed cells or the merge refused."""
    tag_current_run(PIPELINE)
    t0 = time.monotonic()
    run = RunOptions.of(PIPELINE, run)
    layout = plan_layout(mask, output=output, work=work_dir)
    batches = split_mask(layout.mask, cells_per_batch=cells_per_batch, root=layout.work / "batches")
    if config is not None:  # each batch's own config.js, pointing at its run-mask and output folder
        doc = read_config(config)
        for b in batches:
            write_batch_config(doc, Path(b.mask).with_name("config.js"), mask=b.mask, output=b.output)
    items = [
        Item(
            id=b.name,
            params={
                "argv": batch_argv(
                    b, model_command=model_command, max_rounds=max_rounds, run=run, full_copy=full_copy, config=config
                )
            },
            outputs=(b.output,),
        )
        for b in batches
    ]
    options = BatchOptions(
        state=str(layout.work / ".salvo"),
        run=batch_run(run, max_rounds=max_rounds, max_queued=max_queued),
        log_dir=str(layout.work / "logs"),
        settings={"pipeline": PIPELINE, "split": cells_per_batch},
    )
    outcome = run_batch(items, BATCH_WORKER, pipeline=PIPELINE, options=options)
    doc = finish_batch(
        outcome,
        pipeline=PIPELINE,
        report_dir=str(layout.work),
        title=f"{PIPELINE}: {len(batches)} batches",
    )
    doc["pipeline"], doc["batches"] = (
        PIPELINE,
        [{"batch": b.name, "cells": len(b.cells), "output": b.output} for b in batches],
    )
    missing = [b.name for b in batches if not (Path(b.output) / STATUS_FILE).is_file()]
    if missing:
        doc["merge"] = {"error": f"not merged: {', '.join(missing[:5])} wrote no {STATUS_FILE}"}
    else:  # every batch has its outputs: join them (the merge's own check refuses an incomplete set)
        try:
            doc["merge"] = merge_task(batches, str(layout.output))
        except UsageError as exc:
            doc["merge"] = {"error": str(exc)}
    merge_ok = "error" not in doc["merge"]
    doc["summary"]["ok"] = (
        merge_ok
        and doc["summary"]["failed"] == 0
        and doc["merge"].get("success_cells") == doc["merge"].get("enabled_cells")
    )
    doc["wall_time_s"] = round(time.monotonic() - t0, 3)
    return batch_state(doc)
