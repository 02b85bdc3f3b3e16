"""Prefect tasks of salvage-merge: thin wrappers of salvo.gridded, logging the seed's console lines."""

from __future__ import annotations

import json
import uuid
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from salvo.fsutil import atomic_write_text
from salvo.html_report import REPORT_NAME
from salvo.gridded.formats import STATUS_FILE, read_mask, read_status
from salvo.gridded.merge import merge_outputs
from salvo.gridded.recovery import (RecoveryLayout, empty_folder, has_status, install_mask, keep_original_mask,
                                    mask_is_original, move_contents, move_into, plan_layout, replace_contents,
                                    restore_mask)
from salvo.gridded.report import failed_cells, recovery_markdown, round_rows, write_recovery_report
from salvo.gridded.salvage import count_statuses, salvage_run

_PLAIN = {"cache_policy": NONE, "persist_result": False}


@task(**_PLAIN)
def prepare_recovery(mask: str, output: str, work_dir: str | None) -> RecoveryLayout:
    """Check the inputs, name the folders and keep the user's original run-mask."""
    layout = plan_layout(mask, output=output, work=work_dir)
    keep_original_mask(layout)
    _put_back_an_interrupted_round(layout)
    return layout


def _put_back_an_interrupted_round(layout: RecoveryLayout) -> None:
    """A recovery whose driver was killed during round k's re-run or merge left the output folder
    partial or empty, its outputs in round k's backup: put them back (and set that round's folder
    aside), so that the next recovery re-runs only the failed cells, never the finished ones."""
    k = layout.next_round() - 1
    rd = layout.round_dir(k)
    if k < 1 or not (rd / "salvaged").is_dir() or ((rd / "rerun").is_dir() and has_status(layout.output)):
        return
    replace_contents(layout.output, source=rd / "salvaged")
    rd.rename(rd.with_name(f"{rd.name}.interrupted-{uuid.uuid4().hex[:6]}"))


@task(**_PLAIN)
def count_cells(layout: RecoveryLayout) -> dict[str, Any]:
    """How the originally enabled cells stand in the output folder's run_status.nc."""
    mask, status = read_mask(layout.original_mask), read_status(layout.output / STATUS_FILE)
    return {**count_statuses(mask, status=status).to_dict(), "failed_cells": failed_cells(mask, status=status)}


@task(**_PLAIN)
def count_ran(layout: RecoveryLayout, k: int) -> dict[str, Any]:
    """How the cells round ``k``'s model run was given ended in its own run_status.nc (round 0: the user's mask)."""
    if k == 0:
        mask, status = read_mask(layout.original_mask), read_status(layout.output / STATUS_FILE)
    else:
        rd = layout.round_dir(k)
        mask, status = read_mask(rd / "run-mask-failed.nc"), read_status(rd / "rerun" / STATUS_FILE)
    return count_statuses(mask, status=status).to_dict()


@task(**_PLAIN)
def salvage_round(layout: RecoveryLayout, k: int, copy: bool = False) -> dict[str, Any]:
    """Back up the output folder into round ``k`` and write its failed-cells mask."""
    rd = layout.round_dir(k)
    rd.mkdir(parents=True, exist_ok=True)
    report = salvage_run(layout.output, backup_dir=rd / "salvaged", original_mask=layout.original_mask,
                         new_mask=rd / "run-mask-failed.nc", copy=copy, verbose=True, log=get_run_logger().info)
    return report.to_dict()


@task(**_PLAIN)
def stage_rerun(layout: RecoveryLayout, k: int) -> None:
    """Put the failed-cells mask at the model's mask path and empty the (backed up) output folder."""
    install_mask(layout, layout.round_dir(k) / "run-mask-failed.nc")
    empty_folder(layout.output)


@task(**_PLAIN)
def collect_rerun(layout: RecoveryLayout, k: int) -> bool:
    """Put the original mask back, move the re-run's outputs into round ``k``; return whether it wrote a run_status."""
    restore_mask(layout)
    rerun = layout.round_dir(k) / "rerun"
    move_contents(layout.output, rerun)
    if has_status(rerun):
        return True
    get_run_logger().error("Round %d: the model left no %s; the output folder is put back as it was", k, STATUS_FILE)
    replace_contents(layout.output, source=layout.round_dir(k) / "salvaged")
    return False


@task(**_PLAIN)
def merge_round(layout: RecoveryLayout, k: int) -> dict[str, Any]:
    """Merge round ``k``'s salvaged outputs with its re-run (verified), and move the result into the output folder."""
    rd = layout.round_dir(k)
    try:
        report = merge_outputs(rd / "salvaged", rerun_dir=rd / "rerun", output_dir=rd / "merged", rerun_index=k,
                               verbose=True, log=get_run_logger().info)
    except BaseException:
        get_run_logger().error("Round %d: the merge failed; the output folder is put back as it was", k)
        replace_contents(layout.output, source=rd / "salvaged")
        raise
    move_into(layout.output, source=rd / "merged")  # the next round's salvage moves it on to round k+1
    return report.to_dict()


@task(**_PLAIN)
def put_mask_back(layout: RecoveryLayout) -> bool:
    """Restore the user's original run-mask (whatever happened); return whether it is now in place."""
    restore_mask(layout)
    return mask_is_original(layout)


@task(**_PLAIN)
def publish_recovery(doc: dict[str, Any], header: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write recovery.json, recovery.md and run_report.html in the work folder and publish the round table as artifacts."""
    work = doc["layout"]["work"]
    json_path = f"{work}/recovery.json"
    doc["reports"] = {"json": json_path, "markdown": f"{work}/recovery.md", "html": f"{work}/{REPORT_NAME}"}
    try:
        doc["reports"]["html"] = str(write_recovery_report(doc, header=header))
    except Exception as exc:  # noqa: BLE001 - the recovery is done and its JSON still written; say so, loudly
        del doc["reports"]["html"]
        doc["reports"]["html_error"] = f"{type(exc).__name__}: {exc}"
        get_run_logger().error("The run report %s/%s could not be written: %s", work, REPORT_NAME, doc["reports"]["html_error"])
    md = recovery_markdown(doc)
    atomic_write_text(json_path, json.dumps(doc, indent=2, default=str))
    atomic_write_text(doc["reports"]["markdown"], md)
    create_table_artifact(round_rows(doc), key="salvage-merge-rounds", description="salvage-merge: every round's statuses")
    create_markdown_artifact(md, key="salvage-merge-summary", description="salvage-merge: summary")
    return doc
