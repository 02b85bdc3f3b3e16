"""How to run a batch: one typed value, each default written once.

The CLI builds a `RunOptions` from its flags (turning each seed's own spelling and unit into
this one form), every flow takes it as one parameter (one form in the Prefect UI),
`deployments/prefect.yaml` fills it once, and it travels unchanged to the item runner.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Where a pipeline's items are slower or faster than the rest: its own default timeout, in seconds.
#: Every other default lives on the fields of `RunOptions`.
PIPELINE_TIMEOUT_S: dict[str, float] = {
    "netcdf-extract": 15 * 60.0,  # the seed's 15-minute limit per file
    "assembly-run": 15 * 60.0,
    "job-batch": 60 * 60.0,
    "subject-batch": 120 * 60.0,  # the seed's 120 minutes per subject
    "salvage-merge": 24 * 3600.0,  # one model run over the failed cells
}
#: Pipelines whose seed stopped at the first failed item (a flow may still be told otherwise).
FAIL_FAST_PIPELINES = frozenset({"job-batch"})
#: The longest any timeout may be.
MAX_TIMEOUT_S = 7 * 86400.0


class RunOptions(BaseModel):
    """How to run the items of a batch: limits, parallelism, retries, resume."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float | None = Field(15 * 60.0, gt=0, le=MAX_TIMEOUT_S, description="per-item limit in seconds; the item's whole process tree is killed")
    workers: int = Field(1, ge=1, le=4096, description="items run at once; more than 1 runs them on a Dask task runner")
    dask_address: str | None = Field(None, description="run on this existing Dask cluster (tcp://host:port)")
    retries: int = Field(2, ge=0, le=100, description="extra tries for outcomes that may pass (crash, error); never for timeout, skip or bad input")
    retry_delays_s: tuple[float, ...] = Field((2.0, 10.0), description="seconds to wait before each retry (the last one repeats)")
    force: bool = Field(False, description="redo every item, even those finished by earlier runs")
    fail_fast: bool = Field(False, description="stop starting items after the first failure")
    items_per_task: int | None = Field(None, ge=1, le=10_000, description="items one Prefect task carries (default: chosen from the batch size)")
    kill_grace_s: float = Field(3.0, ge=0, le=600, description="seconds a killed item gets between SIGTERM and SIGKILL, to clean up")

    @field_validator("retry_delays_s")
    @classmethod
    def _delays(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not (0 <= d <= 3600) for d in v):
            raise ValueError("each retry delay must be between 0 and 3600 s")
        return v

    @field_validator("dask_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        return v if "://" in v else f"tcp://{v}"

    @property
    def parallel(self) -> bool:
        """Whether items run on a Dask task runner rather than one at a time."""
        return self.workers > 1 or self.dask_address is not None

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt`` (2 is the first retry)."""
        if attempt <= 1 or not self.retry_delays_s:
            return 0.0
        return self.retry_delays_s[min(attempt - 2, len(self.retry_delays_s) - 1)]

    @classmethod
    def pipeline_defaults(cls, pipeline: str) -> dict[str, Any]:
        """Where ``pipeline`` differs from the fields' defaults: its timeout, and fail-fast for some seeds."""
        return {"timeout_s": PIPELINE_TIMEOUT_S.get(pipeline, cls.model_fields["timeout_s"].default),
                "fail_fast": pipeline in FAIL_FAST_PIPELINES}

    @classmethod
    def for_pipeline(cls, pipeline: str, **given: Any) -> "RunOptions":
        """The options of ``pipeline``: its own defaults, then what the caller gave (None: not given)."""
        return cls(**{**cls.pipeline_defaults(pipeline), **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def of(cls, pipeline: str, run: "RunOptions | dict[str, Any] | None") -> "RunOptions":
        """What a flow runs with: the fields ``run`` sets, ``pipeline``'s defaults for the others.

        A flow's ``run`` parameter may set only some fields (a deployment's ``run: {retries: 0}``,
        or ``RunOptions(workers=4)`` in Python): the ones it leaves out take the pipeline's own
        defaults, so a subject batch keeps its two hours unless a timeout is given.
        """
        if run is None:
            return cls.for_pipeline(pipeline)
        if isinstance(run, dict):
            run = cls.model_validate(run)
        unset = {k: v for k, v in cls.pipeline_defaults(pipeline).items() if k not in run.model_fields_set}
        return cls.model_validate({**unset, **run.model_dump(include=run.model_fields_set)}) if unset else run

    def resume_settings(self) -> dict[str, Any]:
        """What of these options changes an item's result, and so belongs in its resume key: nothing.

        Timeouts, workers and retries change how an item is run, not what it produces; they are
        deliberately left out so that re-running with other limits resumes.
        """
        return {}


def cpu_workers() -> int:
    """The workers ``--parallel`` means: one per CPU."""
    return os.cpu_count() or 1
