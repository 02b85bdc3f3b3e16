"""Prefect tasks of salvage-merge: thin wrappers of salvo.gridded, logging the seed's console lines."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from salvo.fsutil import atomic_write_text, remove_partial
from salvo.html_report import REPORT_NAME
from salvo.ncfile import cut_short
from salvo.gridded.formats import STATUS_FILE, read_mask, read_status
from salvo.gridded.merge import merge_outputs
from salvo.gridded.ncschema import netcdf_under
from salvo.gridded.recovery import (
    RecoveryLayout,
    empty_folder,
    finish_move,
    has_status,
    install_mask,
    keep_original_mask,
    mask_is_original,
    move_contents,
    move_into,
    plan_layout,
    note,
    record_step,
    replace_contents,
    restore_mask,
    round_info,
    round_step,
)
from salvo.gridded.report import failed_cells, recovery_markdown, round_rows, write_recovery_report
from salvo.gridded.salvage import count_statuses, salvage_run

_PLAIN = {"cache_policy": NONE, "persist_result": False}


@task(**_PLAIN)
def prepare_recovery(mask: str, output: str, work_dir: str | None) -> RecoveryLayout:
    """Check the inputs, name the folders and keep the user's original run-mask."""
    layout = plan_layout(mask, output=output, work=work_dir)
    keep_original_mask(layout)
    return layout


@task(**_PLAIN)
def resume_point(layout: RecoveryLayout) -> dict[str, Any] | None:
    """Pick up a recovery whose driver was killed: ``{"round": k, "merge": bool, "info": journal entry}`` or None.

    The journal says how far the last round got. A re-run that finished (``rerun-done``, ``merging``)
    is merged from disk, never run again; a merge that finished but was not yet moved into the
    output folder (``merge-done``) is moved. A round killed before its re-run finished left the
    output folder partial or empty, its outputs in the round's backup: they are put back and the
    round's folder set aside, so that the next round re-runs only the failed cells.
    """
    k = layout.next_round() - 1
    rd = layout.round_dir(k)
    step = round_step(layout, k) if k >= 1 else None
    if step in ("rerun-done", "merging") and has_status(rd / "rerun"):
        if (rd / "merged").exists():
            shutil.rmtree(rd / "merged")  # a merge cut short: done again from the inputs on disk
        remove_partial(rd / "merged")
        get_run_logger().info("Round %d: its re-run finished before the interruption; merging it from disk", k)
        return {"round": k, "merge": True, "info": round_info(layout, k)}
    if step == "merge-done" and (rd / "merged").is_dir():
        finish_move(layout.output, source=rd / "merged")
        record_step(layout, k, "merged")
        get_run_logger().info("Round %d: its merge finished before the interruption; moved into %s", k, layout.output)
        return {"round": k, "merge": False, "info": round_info(layout, k)}
    if step in ("merged", "rerun-failed", "merge-failed"):
        return None
    if k < 1 or not (rd / "salvaged").is_dir() or ((rd / "rerun").is_dir() and has_status(layout.output)):
        return None
    replace_contents(layout.output, source=rd / "salvaged")
    rd.rename(rd.with_name(f"{rd.name}.interrupted-{uuid.uuid4().hex[:6]}"))
    return None


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
    report = salvage_run(
        layout.output,
        backup_dir=rd / "salvaged",
        original_mask=layout.original_mask,
        new_mask=rd / "run-mask-failed.nc",
        copy=copy,
        verbose=True,
        log=get_run_logger().info,
    )
    doc = report.to_dict()
    record_step(layout, k, "salvaged", before=doc["counts"])
    return doc


@task(**_PLAIN)
def stage_rerun(layout: RecoveryLayout, k: int) -> None:
    """Put the failed-cells mask at the model's mask path and empty the (backed up) output folder."""
    record_step(layout, k, "rerun")
    install_mask(layout, layout.round_dir(k) / "run-mask-failed.nc")
    empty_folder(layout.output)


@task(**_PLAIN)
def collect_rerun(layout: RecoveryLayout, k: int) -> dict[str, Any]:
    """Put the original mask back, move the re-run's outputs into round ``k``.

    Returns ``{"wrote": whether it left a whole run_status.nc and whole NetCDF files, "cut_short": [...]}``;
    otherwise the output folder is put back as it was before the round.
    """
    restore_mask(layout)
    rerun = layout.round_dir(k) / "rerun"
    move_contents(layout.output, rerun)
    cut = cut_files(rerun) if has_status(rerun) else []
    if has_status(rerun) and not cut:
        record_step(layout, k, "rerun-done")
        return {"wrote": True, "cut_short": []}
    why = f"left files cut short: {'; '.join(cut)}" if cut else f"left no {STATUS_FILE}"
    get_run_logger().error("Round %d: the model %s; the output folder is put back as it was", k, why)
    replace_contents(layout.output, source=layout.round_dir(k) / "salvaged")
    record_step(layout, k, "rerun-failed")
    return {"wrote": False, "cut_short": cut}


def cut_files(folder: Path) -> list[str]:
    """``<file> is cut short: N of M bytes`` for every NetCDF file under ``folder`` that is (headers read only)."""
    return [str(exc) for exc in cut_short(netcdf_under(folder))]


@task(**_PLAIN)
def whole_run(folder: str) -> list[str]:
    """The NetCDF files a model run left in ``folder`` that are cut short (empty: all whole)."""
    return cut_files(Path(folder))


@task(**_PLAIN)
def merge_round(layout: RecoveryLayout, k: int, allow_missing: list[str] | None = None) -> dict[str, Any]:
    """Merge round ``k``'s salvaged outputs with its re-run (verified), and move the result into the output folder.

    Each step is journaled: a recovery killed here merges the finished re-run on disk next time.
    """
    rd = layout.round_dir(k)
    record_step(layout, k, "merging")
    try:
        report = merge_outputs(
            rd / "salvaged",
            rerun_dir=rd / "rerun",
            output_dir=rd / "merged",
            rerun_index=k,
            allow_missing=allow_missing or (),
            verbose=True,
            log=get_run_logger().info,
        )
    except Exception:
        get_run_logger().error("Round %d: the merge failed; the output folder is put back as it was", k)
        replace_contents(layout.output, source=rd / "salvaged")
        record_step(layout, k, "merge-failed")
        raise
    except BaseException:  # Ctrl-C: the output folder holds the salvaged run; the next recovery merges again
        replace_contents(layout.output, source=rd / "salvaged")
        raise
    record_step(layout, k, "merge-done", merge=report.to_dict())
    move_into(layout.output, source=rd / "merged")  # the next round's salvage moves it on to round k+1
    record_step(layout, k, "merged")
    return report.to_dict()


@task(**_PLAIN)
def note_model_run(layout: RecoveryLayout, k: int, model: dict[str, Any]) -> None:
    """Keep round ``k``'s model run in the journal (a resumed recovery reports it)."""
    note(layout, k, model={key: v for key, v in model.items() if key != "item"})


@task(**_PLAIN)
def put_mask_back(layout: RecoveryLayout) -> bool:
    """Restore the user's original run-mask (whatever happened); return whether it is now in place."""
    restore_mask(layout)
    return mask_is_original(layout)


@task(**_PLAIN)
def publish_recovery(doc: dict[str, Any], header: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write recovery.json, recovery.md and run_report.html in the work folder and publish the round
    table as artifacts."""
    work = doc["layout"]["work"]
    json_path = f"{work}/recovery.json"
    doc["reports"] = {"json": json_path, "markdown": f"{work}/recovery.md", "html": f"{work}/{REPORT_NAME}"}
    try:
        doc["reports"]["html"] = str(write_recovery_report(doc, header=header))
    except Exception as exc:  # noqa: BLE001 - the recovery is done and its JSON still written; say so, loudly
        del doc["reports"]["html"]
        doc["reports"]["html_error"] = f"{type(exc).__name__}: {exc}"
        get_run_logger().error(
            "The run report %s/%s could not be written: %s", work, REPORT_NAME, doc["reports"]["html_error"]
        )
    md = recovery_markdown(doc)
    atomic_write_text(json_path, json.dumps(doc, indent=2, default=str))
    atomic_write_text(doc["reports"]["markdown"], md)
    create_table_artifact(
        round_rows(doc), key="salvage-merge-rounds", description="salvage-merge: every round's statuses"
    )
    create_markdown_artifact(md, key="salvage-merge-summary", description="salvage-merge: summary")
    return doc
