"""salvage-merge: run a gridded model, then salvage, re-run and merge its failed cells until none is left."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed, State

from flows.batch import BatchOptions, batch_state, run_batch, run_namer, tag_current_run
from salvo.errors import UsageError
from salvo.gridded.recovery import RecoveryLayout, has_status
from salvo.gridded.report import console_lines, summarize_recovery
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.pipelines import PIPELINES
from salvo.runner import stop_requested
from flows.run_header import flow_run_header
from tasks.gridded import (
    collect_rerun,
    count_cells,
    count_ran,
    merge_round,
    note_model_run,
    prepare_recovery,
    publish_recovery,
    put_mask_back,
    resume_point,
    salvage_round,
    stage_rerun,
    whole_run,
)

PIPELINE = PIPELINES["gridded"].flow_name


@flow(name="salvage", flow_run_name="round-{k}-salvage")
def salvage(layout: RecoveryLayout, k: int, full_copy: bool = False) -> dict[str, Any]:
    """Back up the outputs into round ``k`` and write the mask of the cells to re-run."""
    return salvage_round(layout, k, full_copy)


@flow(name="rerun", flow_run_name="round-{k}-rerun")
def rerun(
    layout: RecoveryLayout, k: int, model_command: str, run: RunOptions | None = None, config: str | None = None
) -> State:
    """Run the model (round 0: the user's mask; round k: the failed cells only) in a child process.

    ``run`` gives its timeout, and its retries when it sets them (none otherwise: the rounds are
    the retries), and it runs here (its mask and outputs are this machine's files), never on a Dask cluster.
    """
    if k:
        stage_rerun(layout, k)
    item = Item(
        id=f"round-{k}-model", params={"mask": str(layout.mask), "output": str(layout.output), "config": config or ""}
    )
    given = RunOptions.of(PIPELINE, run)
    retries = given.retries if "retries" in given.model_fields_set else 0
    once = given.model_copy(
        update={"retries": retries, "force": True, "workers": 1, "dask_address": None, "slurm": None}
    )
    options = BatchOptions(
        state=str(layout.work / ".salvo"),
        run=once,
        log_dir=str(layout.work / "logs"),
        settings={"pipeline": PIPELINE, "round": k},
    )
    try:
        result = run_batch(
            [item], Worker("command", model_command), pipeline=f"{PIPELINE}-model", options=options
        ).results[0]
    finally:
        if k:
            collected = collect_rerun(layout, k)
        else:
            cut = whole_run(str(layout.output)) if has_status(layout.output) else []
            collected = {"wrote": has_status(layout.output) and not cut, "cut_short": cut}
    model = {
        "status": result.status.value,
        "reason": result.reason,
        "duration_s": result.duration_s,
        "exit_code": result.exit_code,
        "wrote_status": collected["wrote"],
        "cut_short": collected["cut_short"],
        "item": result.to_dict(),
    }
    if k:
        note_model_run(layout, k, model)
    _MODEL_DOCS[(str(layout.work), k)] = model
    # The subflow's state is its model run's: a round whose model timed out or failed is red.
    if result.status.failed:
        return Failed(message=f"round {k}: the model ended {result.status.value}: {result.reason}"[:500], data=model)
    return Completed(data=model)


#: The document each `rerun` subflow made in this process, by (work folder, round): its state's data
#: is not persisted, and a state the engine read back from a busy API comes without it.
_MODEL_DOCS: dict[tuple[str, int], dict[str, Any]] = {}


def _rerun(layout: RecoveryLayout, k: int, model_command: str, run: RunOptions, config: str | None) -> dict[str, Any]:
    """Run the `rerun` subflow; its document whatever its state."""
    from prefect.exceptions import MissingResult

    state = rerun(layout, k, model_command, run, config, return_state=True)
    made = _MODEL_DOCS.pop((str(layout.work), k), None)
    try:
        return state.result(raise_on_failure=False)
    except MissingResult:
        if made is None:
            raise
        return made


@flow(name="merge", flow_run_name="round-{k}-merge")
def merge(layout: RecoveryLayout, k: int, allow_missing: list[str] | None = None) -> dict[str, Any]:
    """Merge round ``k``'s re-run into its salvaged outputs; the result becomes the output folder."""
    return merge_round(layout, k, allow_missing)


def _left(model: dict[str, Any]) -> str:
    """How a model run failed to leave a complete run behind."""
    if model.get("cut_short"):
        return "leaving files cut short: " + "; ".join(model["cut_short"])
    return "without run_status.nc"


def _resume(layout: RecoveryLayout, resumed: dict[str, Any], allow_missing: list[str] | None) -> dict[str, Any]:
    """The round a killed recovery left with its re-run finished: merged from disk (or its merge moved into place)."""
    k, info, started = resumed["round"], resumed["info"], time.monotonic()
    before = info.get("before") or {}
    model = {**(info.get("model") or {"status": "success", "duration_s": 0.0}), "wrote_status": True}
    entry = {
        "round": k,
        "step": "rerun",
        "before": before,
        "to_rerun": before.get("to_rerun", ""),
        "model": model,
        "resumed": "the re-run had finished before the interruption: merged from disk, not run again",
    }
    entry["ran"] = count_ran(layout, k)
    entry["merge"] = merge(layout, k, allow_missing) if resumed["merge"] else info.get("merge", {})
    entry["after"] = count_cells(layout)
    entry["duration_s"] = round(time.monotonic() - started, 3)
    return entry


@flow(name=PIPELINE, flow_run_name=run_namer(PIPELINE))
def salvage_merge(
    model_command: str,
    mask: str = "run-mask.nc",
    output: str = "output",
    max_rounds: int = 3,
    work_dir: str | None = None,
    full_copy: bool = False,
    allow_missing: list[str] | None = None,
    run: RunOptions | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Recover a gridded run: re-run failed cells until none is left or ``max_rounds`` re-runs were made.

    ``run`` gives each model run's timeout (this pipeline's default unless given). ``allow_missing``
    names NetCDF files a re-run may lack (its cells are then marked failed, see `merge_outputs`).
    A recovery whose driver was killed resumes where its journal says it stopped: a finished
    re-run on disk is merged, never run again. ``config``, dvmdostem's config.js, fills the model
    command's ``{config}`` placeholder.
    """
    tag_current_run(PIPELINE)
    run = RunOptions.of(PIPELINE, run)
    t0 = time.monotonic()
    layout = prepare_recovery(mask, output, work_dir)
    rounds: list[dict[str, Any]] = []
    stopped = ""
    try:
        resumed = resume_point(layout)
        if resumed:
            rounds.append(_resume(layout, resumed, allow_missing))
        if not has_status(layout.output):
            started = time.monotonic()
            model = _rerun(layout, 0, model_command, run, config)
            entry = {"round": 0, "step": "initial", "model": model, "ran": None, "after": None}
            rounds.append(entry)
            if model["wrote_status"]:
                entry["ran"] = count_ran(layout, 0)
                entry["after"] = count_cells(layout)
            entry["duration_s"] = round(time.monotonic() - started, 3)
            stopped = "" if model["wrote_status"] else f"the initial run ended {model['status']} {_left(model)}"
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
            model = _rerun(layout, k, model_command, run, config)
            entry = {
                "round": k,
                "step": "rerun",
                "before": before,
                "to_rerun": before["to_rerun"],
                "model": model,
                "ran": None,
            }
            rounds.append(entry)
            if not model["wrote_status"]:
                entry["duration_s"] = round(time.monotonic() - started, 3)
                stopped = f"round {k}: the model ended {model['status']} {_left(model)}"
                break
            entry["ran"] = count_ran(layout, k)
            try:
                entry["merge"] = merge(layout, k, allow_missing)
            except UsageError as exc:  # bad input (a file missing from the re-run, a cut file): output put back
                entry["duration_s"] = round(time.monotonic() - started, 3)
                stopped = f"round {k}: the merge refused its inputs: {exc}"
                break
            entry["after"] = count_cells(layout)
            entry["duration_s"] = round(time.monotonic() - started, 3)
    finally:
        mask_in_place = put_mask_back(layout)
    final = count_cells(layout) if has_status(layout.output) else None
    doc = {
        "pipeline": PIPELINE,
        "layout": layout.to_dict(),
        "rounds": rounds,
        "summary": summarize_recovery(rounds, final=final, stopped=stopped, mask_in_place=mask_in_place),
        "wall_time_s": round(time.monotonic() - t0, 3),
    }
    header = flow_run_header(exit_status=0 if doc["summary"].get("ok") else 1)  # the run report's header
    doc = publish_recovery(doc, header=header)
    logger = get_run_logger()
    for line in console_lines(doc):
        logger.info(line)
    return batch_state(doc)
