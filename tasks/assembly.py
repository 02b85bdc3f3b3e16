"""Prefect tasks of the assembly pipelines: thin wrappers over ``salvo.assembly``.

Storage configuration (the default storage, worker credentials) lives in ``blocks``; running the
batch and writing its reports is the flow's part (``flows.assembly``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from blocks.storage import SalvoStorage
from salvo.assembly.discover import locate_experiment, output_location
from salvo.assembly.reassemble import reassemble_to_parquet
from salvo.html_report import HISTORY_DIR
from salvo.assembly.run import AssemblyPlan, begin_assembly, complete_assembly, fail_assembly, upload_reports

# Storage steps are small and idempotent on retry (a retried claim at worst skips a run number).
_STORAGE = {"cache_policy": NONE, "persist_result": False, "retries": 2, "retry_delay_seconds": [2, 5]}


@task(name="assembly-open", **_STORAGE)
def open_assembly(plan: AssemblyPlan, exp: SalvoStorage, resume: str | None = None) -> AssemblyPlan:
    """Claim (or re-open) the assembly ID and record ``started`` (with its seed) before any work."""
    planned = begin_assembly(plan, exp.target, resume=resume)
    get_run_logger().info("assembly %s started in %s with seed %d", planned.assembly_id, exp.target.url, planned.seed)
    return planned


@task(name="assembly-close", cache_policy=NONE, persist_result=False)
def close_assembly(doc: dict[str, Any], plan: AssemblyPlan, exp: SalvoStorage, n_chunks: int) -> dict[str, Any]:
    """Upload the batch's reports; then ``completed`` after the data file, or ``failed``.

    ``doc`` is the batch document (summary, items, local report files); returns it with the
    reports' storage URIs and an ``assembly`` section (ID, status, seed, rows, data file).
    """
    target = exp.target
    with tempfile.TemporaryDirectory(prefix="salvo-assembly-") as tmp:
        plan_file = Path(tmp) / "assembly.json"
        plan_file.write_text(json.dumps(plan.to_dict(), indent=2, default=str), encoding="utf-8")
        local = {**doc["reports"], "assembly": str(plan_file)}
        html_report = doc["reports"].get("html")
        history = str(Path(html_report).parent / HISTORY_DIR) if html_report else None
        doc = {**doc, "reports": upload_reports(local, target, assembly_id=plan.assembly_id, history=history)}
    info = {
        "assembly_id": plan.assembly_id,
        "experiment": plan.experiment,
        "folder": plan.folder,
        "result_name": plan.result_name,
        "seed": plan.seed,
        "config_hash": plan.config_hash,
        "ledger": target.uri("assembly_list.csv"),
    }
    if doc["summary"]["failed"]:
        fail_assembly(plan, target, message=f"{doc['summary']['failed']} of {doc['summary']['total']} chunks failed")
        doc["assembly"] = {**info, "status": "failed", "rows": None, "data_file": None}
        return doc
    rows = complete_assembly(plan, target, n_chunks=n_chunks)
    doc["assembly"] = {**info, "status": "completed", "rows": rows, "data_file": target.uri(plan.data_file)}
    get_run_logger().info("assembly %s completed: %d rows in %s", plan.assembly_id, rows, target.uri(plan.data_file))
    return doc


@task(name="assembly-abandon", cache_policy=NONE, persist_result=False)
def abandon_assembly(plan: AssemblyPlan, exp: SalvoStorage, message: str) -> bool:
    """Best effort ``failed`` after a crash; if storage itself is gone the run stays ``started``."""
    try:
        fail_assembly(plan, exp.target, message=message)
        return True
    except Exception as exc:  # storage unreachable: the ledger keeps 'started' (interrupted)
        get_run_logger().warning("could not record assembly %s as failed: %s", plan.assembly_id, exc)
        return False


@task(name="assembly-reassemble-files", cache_policy=NONE, persist_result=False)
def reassemble_files(
    result_name: str,
    storage: SalvoStorage,
    folder: str | None,
    output: str | None,
    allow_pickle: bool,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Stream every completed assembly of ``result_name`` (of ``seeds``, if given) into one file."""
    root = storage.target
    folder = folder or locate_experiment(root, result_name=result_name)
    exp = root.child(folder)
    out, rel = output_location(output, exp=exp, result_name=result_name)
    report = reassemble_to_parquet(exp, result_name, out=out, out_rel=rel, allow_pickle=allow_pickle, seeds=seeds)
    logger = get_run_logger()
    for aid, why in report.excluded.items():
        logger.warning("left out assembly %s: %s", aid, why)
    for seed, ids in report.repeated_seeds().items():
        logger.warning("assemblies %s share seed %s: their samples repeat each other", ", ".join(ids), seed)
    logger.info("re-assembled %d assemblies, %d rows, into %s", len(report.included), report.rows, report.output)
    return {**report.to_dict(), "folder": folder, "storage": storage.target.url}
