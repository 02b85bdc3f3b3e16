"""The running flow run's part of a batch report's header, and the batch document with it.

``salvo.spine.settled.batch_document`` writes a batch's reports without Prefect (a batch answered
from its records alone has no flow run); a flow's batch adds what its flow run says of itself here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from salvo.spine import settled
from salvo.spine.settled import BatchOutcome


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


def batch_document(outcome: BatchOutcome, *, header: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """``salvo.spine.settled.batch_document`` with the running flow run's header (`flow_run_header`)."""
    return settled.batch_document(outcome, header=flow_run_header(**(header or {})), **kwargs)
