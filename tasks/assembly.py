"""Prefect tasks of the assembly pipelines: thin wrappers over ``salvo.assembly``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from blocks.storage import SalvoStorage, resolve_storage
from flows.batch import BatchOutcome, finish_batch
from salvo.assembly.discover import locate_experiment, output_location
from salvo.assembly.reassemble import reassemble_to_parquet
from salvo.assembly.run import (AssemblyPlan, begin_assembly, complete_assembly, fail_assembly,
                                upload_reports)

# Storage steps are small and idempotent on retry (a retried claim at worst skips a run number).
_STORAGE = {"cache_policy": NONE, "persist_result": False, "retries": 2,
            "retry_delay_seconds": [2, 5]}


@task(name="assembly-open", **_STORAGE)
def open_assembly(plan: AssemblyPlan, exp: SalvoStorage, resume: str | None = None) -> AssemblyPlan:
    """Claim (or re-open) the assembly ID and record ``started`` before any work."""
    planned = begin_assembly(plan, exp.target, resume=resume)
    get_run_logger().info("assembly %s started in %s", planned.assembly_id, exp.target.url)
    return planned


@task(name="assembly-close", cache_policy=NONE, persist_result=False)
def close_assembly(outcome: BatchOutcome, plan: AssemblyPlan, exp: SalvoStorage, n_chunks: int) -> dict[str, Any]:
    """Write the reports; then ``completed`` after the data file, or ``failed``; return the doc."""
    target = exp.target
    with tempfile.TemporaryDirectory(prefix="salvo-assembly-") as tmp:
        doc = finish_batch(outcome, pipeline="assembly-run", report_dir=tmp,
                           title=f"Assembly {plan.assembly_id} summary", fail_on_error=False)
        doc["reports"] = upload_reports(doc["reports"], target, assembly_id=plan.assembly_id)
    info = {"assembly_id": plan.assembly_id, "experiment": plan.experiment,
            "folder": plan.folder, "result_name": plan.result_name,
            "config_hash": plan.config_hash, "ledger": target.uri("assembly_list.csv")}
    if doc["summary"]["failed"]:
        fail_assembly(plan, target, message=f"{doc['summary']['failed']} of "
                      f"{doc['summary']['total']} chunks failed")
        doc["assembly"] = {**info, "status": "failed", "rows": None, "data_file": None}
        return doc
    rows = complete_assembly(plan, target, n_chunks=n_chunks)
    doc["assembly"] = {**info, "status": "completed", "rows": rows,
                       "data_file": target.uri(plan.data_file)}
    get_run_logger().info("assembly %s completed: %d rows in %s", plan.assembly_id, rows,
                          target.uri(plan.data_file))
    return doc


@task(name="assembly-abandon", cache_policy=NONE, persist_result=False)
def abandon_assembly(plan: AssemblyPlan, exp: SalvoStorage, message: str) -> bool:
    """Best effort ``failed`` after a crash; if storage itself is gone the run stays ``started``."""
    try:
        fail_assembly(plan, exp.target, message=message)
        return True
    except Exception as exc:  # storage unreachable: the ledger keeps 'started' (interrupted)
        get_run_logger().error("could not record assembly %s as failed: %s", plan.assembly_id, exc)
        return False


@task(name="assembly-reassemble-files", cache_policy=NONE, persist_result=False)
def reassemble_files(
    result_name: str, storage: SalvoStorage, folder: str | None, output: str | None,
    allow_pickle: bool,
) -> dict[str, Any]:
    """Stream every completed assembly of ``result_name`` into one Parquet file."""
    root = storage.target
    folder = folder or locate_experiment(root, result_name=result_name)
    exp = root.child(folder)
    out, rel = output_location(output, exp=exp, result_name=result_name)
    report = reassemble_to_parquet(exp, result_name, out=out, out_rel=rel,
                                   allow_pickle=allow_pickle)
    logger = get_run_logger()
    for aid, why in report.excluded.items():
        logger.warning("left out assembly %s: %s", aid, why)
    logger.info("re-assembled %d assemblies, %d rows, into %s", len(report.included),
                report.rows, report.output)
    return {**report.to_dict(), "folder": folder, "storage": storage.target.url}


@contextlib.contextmanager
def child_credentials(storage: SalvoStorage) -> Iterator[None]:
    """Give worker processes started inside the block the block's own S3 credentials, if any."""
    key, secret = storage._credentials() if not storage.is_local else (None, None)
    if not (key and secret):
        yield  # the standard AWS chain already reaches the children
        return
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def default_storage() -> str:
    """``$SALVO_STORAGE`` (a block name, s3:// URL or path), else ``./salvo-data``."""
    return os.environ.get("SALVO_STORAGE") or str(Path("salvo-data").resolve())


def storage_block(storage: str | None) -> SalvoStorage:
    """The block for a name, URL or path (``default_storage()`` when empty)."""
    return resolve_storage(storage or default_storage())
