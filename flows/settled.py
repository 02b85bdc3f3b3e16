"""What a batch already holds, and its reports, without Prefect: importing this module never imports it.

A batch whose every item an earlier run finished is answered from its records alone: no flow
run, no API, no ``import prefect`` (about 2 s on an idle machine, more under load, and the local
server's start-up check). ``flows.batch`` builds on these for the batches that do run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from salvo import batchcore
from salvo.fingerprint import item_key
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.outcome import ItemResult
from salvo.html_report import Section
from salvo.report import Summary, write_reports
from tasks.records import StateLocation, read_record, record_store


@dataclass
class BatchOptions:
    """A batch's run settings (``run``, as the flow was given them) and what only the pipeline knows:
    where records live, what is hashed into every item's resume key (``settings``), where item logs
    go, and who hears of each finished item."""

    state: StateLocation
    run: RunOptions = field(default_factory=RunOptions)
    settings: dict[str, Any] = field(default_factory=dict)
    log_dir: str | None = None
    on_result: Callable[[ItemResult], None] | None = None


@dataclass
class BatchOutcome:
    """Every item's result, in input order, and their summary."""

    results: list[ItemResult]
    summary: Summary
    logs: dict[str, str] = field(default_factory=dict)  # item id -> its log file, for the reports' links


def split_finished(
    items: Sequence[Item], worker: Worker, *, options: BatchOptions
) -> tuple[dict[str, ItemResult], list[tuple[Item, str]]]:
    """Results of the items an earlier run finished (by id), and the others with their keys.

    Needs no flow run and no API: only the records, so a caller can learn that nothing is left.
    """
    store = record_store(options.state)
    return batchcore.split_finished(
        items,
        lambda it: item_key(it, worker=worker, settings=options.settings),
        lambda key: read_record(store, key),
        force=options.run.force,
    )


def flow_run_header(**given: Any) -> dict[str, Any]:
    """What the running flow run says of itself for the report's header (name, id, parameters, start,
    UI link), when this process runs one; then ``given``. Never imports Prefect itself: a batch
    answered from its records alone has no flow run."""
    info: dict[str, Any] = {}
    if "prefect" in sys.modules:
        try:
            from prefect.context import FlowRunContext

            ctx = FlowRunContext.get()
            run = ctx.flow_run if ctx is not None else None
            if run is not None:
                info = {
                    "run_name": run.name,
                    "run_id": str(run.id),
                    "parameters": json.loads(json.dumps(run.parameters, default=str)),
                }
                if run.start_time is not None:
                    info["started"] = run.start_time.isoformat(timespec="seconds")
                from prefect.runtime import flow_run

                info["ui_url"] = flow_run.ui_url or ""
        except Exception:  # noqa: BLE001 - a header without the UI link is still a report
            pass
    return {**info, **{k: v for k, v in given.items() if v is not None}}


def batch_document(
    outcome: BatchOutcome,
    *,
    report_dir: str | os.PathLike[str],
    title: str,
    extra_reports: dict[str, str] | None = None,
    header: dict[str, Any] | None = None,
    sections: Sequence[Section] = (),
    also_as: Sequence[str] = (),
    link_base: str | None = None,
) -> dict[str, Any]:
    """Write the batch's reports (text, JSON, trace, HTML) and return its document: summary, items, reports.

    ``header``: what the pipeline adds to the run header (``salvo.report.run_header``), e.g. a memory limit;
    ``sections``: the pipeline's own parts of the page; ``also_as``: other names of the same page;
    ``link_base``: where the report will lie, when it is written elsewhere first (assembly: uploaded after).
    """
    items = [r.to_dict() for r in outcome.results]  # once, for the JSON report and the document
    reports = {
        **write_reports(
            outcome.results,
            outcome.summary,
            folder=report_dir,
            title=title,
            logs=outcome.logs,
            items=items,
            header=flow_run_header(**(header or {})),
            sections=sections,
            also_as=also_as,
            base=link_base,
        ),
        **(extra_reports or {}),
    }
    return {"summary": outcome.summary.to_dict(), "items": items, "reports": reports}
