"""What a batch already holds, and its reports, without Prefect: importing this module never imports it.

A batch whose every item an earlier run finished is answered from its records alone: no flow
run, no API, no ``import prefect`` (about 2 s on an idle machine, more under load, and the local
server's start-up check). ``flows.batch`` builds on these for the batches that do run.
"""

from __future__ import annotations

import os
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
from salvo.spine.records import StateLocation, read_record, record_store


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
            header={k: v for k, v in (header or {}).items() if v is not None},
            sections=sections,
            also_as=also_as,
            base=link_base,
        ),
        **(extra_reports or {}),
    }
    return {"summary": outcome.summary.to_dict(), "items": items, "reports": reports}
