"""salvage-merge: run a gridded model, then salvage, re-run and merge its failed cells until none is left."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed, State

from flows.batch import BatchOptions, batch_state, run_batch, run_namer, tag_current_run
from salvo.gridded.recovery import RecoveryLayout, has_status
from salvo.gridded.report import console_lines, summarize_recovery
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.runner import stop_requested
from tasks.gridded import (collect_rerun, count_cells, count_ran, merge_round, prepare_recovery, publish_recovery,
                           put_mask_back, salvage_round, stage_rerun)

PIPELINE = "salvage-merge"


@flow(name="salvage", flow_run_name="round-{k}-salvage")
def salvage(layout: RecoveryLayout, k: int, full_copy: bool = False) -> dict[str, Any]:
    """Back up the outputs into round ``k`` and write the mask of the cells to re-run."""
    return salvage_round(layout, k, full_copy)


@flow(name="rerun", flow_run_name="round-{k}-rerun")
def rerun(layout: RecoveryLayout, k: int, model_command: str, run: RunOptions | None = None) -> State:
    """Run the model (round 0: the user's mask; round k: the failed cells only) in a child process.

    ``run`` gives its timeout, and its retries when it sets them (none otherwise: the rounds are
    the retries), and it runs here (its mask and outputs are this machine's files), never on a Dask cluster.
    """
    if k:
        stage_rerun(layout, k)
    item = Item(id=f"round-{k}-model", params={"mask": str(layout.mask), "output": str(layout.output)})
    given = RunOptions.of(PIPELINE, run)
    retries = given.retries if "retries" in given.model_fields_set else 0
    once = given.model_copy(update={"retries": retries, "force": True, "workers": 1, "dask_address": None})
    options = BatchOptions(state=str(layout.work / ".salvo"), run=once, log_dir=str(layout.work / "logs"),
                           settings={"pipeline": PIPELINE, "round": k})
    try:
        result = run_batch([item], Worker("command", model_command), pipeline=f"{PIPELINE}-model", options=options).results[0]
    finally:
        wrote = collect_rerun(layout, k) if k else has_status(layout.output)
    doc = {"status": result.status.value, "reason": result.reason, "duration_s": result.duration_s,
           "exit_code": result.exit_code, "wrote_status": wrote, "item": result.to_dict()}
    # The subflow's state is its model run's: a round whose model timed out or failed is red.
    if result.status.failed:
        return Failed(message=f"round {k}: the model ended {result.status.value}: {result.reason}"[:500], data=doc)
    return Completed(data=doc)


def _rerun(layout: RecoveryLayout, k: int, model_command: str, run: RunOptions) -> dict[str, Any]:
    """Run the `rerun` subflow; its document whatever its state."""
    return rerun(layout, k, model_command, run, return_state=True).result(raise_on_failure=False)


@flow(name="merge", flow_run_name="round-{k}-merge")
def merge(layout: RecoveryLayout, k: int) -> dict[str, Any]:
    """Merge round ``k``'s re-run into its salvaged outputs; the result becomes the output folder."""
    return merge_round(layout, k)


@flow(name=PIPELINE, flow_run_name=run_namer(PIPELINE))
def salvage_merge(model_command: str, mask: str = "run-mask.nc", output: str = "output", max_rounds: int = 3,
                  work_dir: str | None = None, full_copy: bool = False, run: RunOptions | None = None) -> dict[str, Any]:
    """Recover a gridded run: re-run failed cells until none is left or ``max_rounds`` re-runs were made.

    ``run`` gives each model run's timeout (this pipeline's default unless given).
    """
    tag_current_run(PIPELINE)
    run = RunOptions.of(PIPELINE, run)
    t0 = time.monotonic()
    layout = prepare_recovery(mask, output, work_dir)
    rounds: list[dict[str, Any]] = []
    stopped = ""
    try:
        if not has_status(layout.output):
            started = time.monotonic()
            model = _rerun(layout, 0, model_command, run)
            entry = {"round": 0, "step": "initial", "model": model, "ran": None, "after": None}
            rounds.append(entry)
            if model["wrote_status"]:
                entry["ran"] = count_ran(layout, 0)
                entry["after"] = count_cells(layout)
            entry["duration_s"] = round(time.monotonic() - started, 3)
            stopped = "" if model["wrote_status"] else f"the initial run ended {model['status']} without run_status.nc"
        first = layout.next_round()
        for k in range(first, first + max_rounds + 1):
            if stopped or count_cells(layout)["to_rerun"] == 0:
                break
            if stop_requested():
                stopped = "interrupted (Ctrl-C) before round {k}".format(k=k)
                break
            if k == first + max_rounds:
                stopped = f"--max-rounds {max_rounds} reached"
                break
            started = time.monotonic()
            before = salvage(layout, k, full_copy)["counts"]
            model = _rerun(layout, k, model_command, run)
            entry = {"round": k, "step": "rerun", "before": before, "to_rerun": before["to_rerun"], "model": model, "ran": None}
            rounds.append(entry)
            if not model["wrote_status"]:
                entry["duration_s"] = round(time.monotonic() - started, 3)
                stopped = f"round {k}: the model ended {model['status']} without run_status.nc"
                break
            entry["ran"] = count_ran(layout, k)
            entry["merge"] = merge(layout, k)
            entry["after"] = count_cells(layout)
            entry["duration_s"] = round(time.monotonic() - started, 3)
    finally:
        mask_in_place = put_mask_back(layout)
    final = count_cells(layout) if has_status(layout.output) else None
    doc = {"pipeline": PIPELINE, "layout": layout.to_dict(), "rounds": rounds,
           "summary": summarize_recovery(rounds, final=final, stopped=stopped, mask_in_place=mask_in_place),
           "wall_time_s": round(time.monotonic() - t0, 3)}
    doc = publish_recovery(doc)
    logger = get_run_logger()
    for line in console_lines(doc):
        logger.info(line)
    return batch_state(doc)
