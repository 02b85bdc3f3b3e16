"""How to run a batch: one typed value, each default written once.

The CLI builds a `RunOptions` from its flags (turning each seed's own spelling and unit into
this one form), every flow takes it as one parameter (one form in the Prefect UI),
`deployments/prefect.yaml` fills it once, and it travels unchanged to the item runner.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from salvo.pipelines import PIPELINES

#: Where a pipeline's items are slower or faster than the rest: its own default timeout, in seconds
#: (from the table of pipelines, keyed by its batch flow's name). Every other default lives on the
#: fields of `RunOptions`.
PIPELINE_TIMEOUT_S: dict[str, float] = {p.flow_name: p.timeout_s for p in PIPELINES.values()}
#: Pipelines whose seed stopped at the first failed item (a flow may still be told otherwise).
FAIL_FAST_PIPELINES = frozenset(p.flow_name for p in PIPELINES.values() if p.fail_fast == "on")
#: Pipelines that always stop at the first failed item, whatever a run says.
ALWAYS_FAIL_FAST = frozenset(p.flow_name for p in PIPELINES.values() if p.fail_fast == "always")
#: The most items a batch may run at once: catches a typo (an extra zero or two) before anything starts.
MAX_WORKERS = 4096
#: The longest any timeout may be.
MAX_TIMEOUT_S = 7 * 86400.0


def walltime_seconds(text: str) -> float:
    """A SLURM ``--time`` value in seconds: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M`` or ``D-H:M:S``."""
    text = text.strip()
    if text.isdigit():
        if int(text) <= 0:
            raise ValueError(f"a SLURM time limit must be positive, not {text!r}")
        return int(text) * 60.0
    days, rest = (text.split("-", 1) + [""])[:2] if "-" in text else ("0", text)
    if not days.isdigit():
        raise ValueError(f"not a SLURM time limit: {text!r} (use HH:MM:SS or D-HH:MM:SS)")
    parts = rest.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        raise ValueError(f"not a SLURM time limit: {text!r} (use HH:MM:SS or D-HH:MM:SS)")
    nums = [int(p) for p in parts]
    if "-" in text:  # D-HH, D-HH:MM, D-HH:MM:SS
        nums += [0] * (3 - len(nums))
        h, m, sec = nums
    elif len(nums) == 3:
        h, m, sec = nums
    else:  # MM:SS
        h, m, sec = 0, nums[0], nums[1]
    total = int(days) * 86400 + h * 3600 + m * 60 + sec
    if total <= 0:
        raise ValueError(f"a SLURM time limit must be positive, not {text!r}")
    return float(total)


class SlurmOptions(BaseModel):
    """Where items run when ``--cluster slurm``: Dask workers that are SLURM jobs (dask-jobqueue).

    Each job is one Dask worker process with ``cores`` threads; at most ``max_jobs`` jobs are
    queued or running at once (dvmdostem's own scripts keep at most 15), and the pool follows the
    queue of items (adaptive: jobs are submitted while items wait, released when idle).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition: str | None = Field(None, description="SLURM partition (#SBATCH -p); the cluster's default when left out")
    account: str | None = Field(None, description="SLURM account (#SBATCH -A)")
    cores: int = Field(1, ge=1, le=1024, description="cores per job; one item runs per core")
    memory: str = Field("2GB", description="memory per job, as Dask spells it (2GB, 500MiB)")
    walltime: str = Field(
        "01:00:00",
        description="time limit per job (HH:MM:SS or D-HH:MM:SS); an item still running near it is a timeout",
    )
    max_jobs: int = Field(15, ge=1, le=10_000, description="most SLURM jobs queued or running at once")
    job_extra_directives: tuple[str, ...] = Field((), description="more #SBATCH lines, e.g. '--qos=normal'")
    interface: str | None = Field(
        None, description="network interface the scheduler and workers listen on (ib0, eth0; lo on one host)"
    )
    log_directory: str | None = Field(
        None, description="folder for the jobs' slurm-*.out files (default: a temporary folder)"
    )

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str) -> str:
        walltime_seconds(v)
        return v.strip()

    @field_validator("job_extra_directives", mode="before")
    @classmethod
    def _extra(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        return tuple(d.strip().removeprefix("#SBATCH").strip() for d in v if d and d.strip())

    @property
    def walltime_s(self) -> float:
        return walltime_seconds(self.walltime)

    def item_limit_s(self) -> float:
        """The longest an item may run in one job: the walltime less a margin for the job's own start
        and for killing the item's tree, so that an item that would outlive its job is a timeout
        (reported, not retried) rather than a job SLURM kills under it."""
        wall = self.walltime_s
        return max(wall * 0.5, wall - min(60.0, wall * 0.2))


class RunOptions(BaseModel):
    """How to run the items of a batch: limits, parallelism, retries, resume."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float | None = Field(
        15 * 60.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="per-item limit in seconds; the item's whole process tree is killed",
    )
    workers: int = Field(
        1, ge=1, le=MAX_WORKERS, description="items run at once; more than 1 runs them on a Dask task runner"
    )
    dask_address: str | None = Field(None, description="run on this existing Dask cluster (tcp://host:port)")
    retries: int = Field(
        2,
        ge=0,
        le=100,
        description="extra tries for outcomes that may pass (crash, error); never for timeout, skip or bad input",
    )
    retry_delays_s: tuple[float, ...] = Field(
        (2.0, 10.0), description="seconds to wait before each retry (the last one repeats)"
    )
    force: bool = Field(False, description="redo every item, even those finished by earlier runs")
    fail_fast: bool = Field(False, description="stop starting items after the first failure")
    items_per_task: int | None = Field(
        None, ge=1, le=10_000, description="items one Prefect task carries (default: chosen from the batch size)"
    )
    kill_grace_s: float = Field(
        3.0, ge=0, le=600, description="seconds a killed item gets between SIGTERM and SIGKILL, to clean up"
    )
    slurm: SlurmOptions | None = Field(
        None, description="run items in Dask workers that are SLURM jobs (--cluster slurm)"
    )

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

    @model_validator(mode="after")
    def _one_cluster(self) -> "RunOptions":
        if self.slurm is not None and self.dask_address is not None:
            raise ValueError("slurm: give either a Dask address or --cluster slurm, not both")
        if self.slurm is not None:  # an item must end before the job SLURM would kill under it
            limit = self.slurm.item_limit_s()
            if self.timeout_s is None or self.timeout_s > limit:
                object.__setattr__(self, "timeout_s", limit)
        return self

    @property
    def parallel(self) -> bool:
        """Whether items run on a Dask task runner rather than one at a time."""
        return self.workers > 1 or self.dask_address is not None or self.slurm is not None

    @property
    def on_cluster(self) -> bool:
        """Whether items run on Dask workers in other processes (an existing cluster, or SLURM jobs)."""
        return self.dask_address is not None or self.slurm is not None

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt`` (2 is the first retry)."""
        if attempt <= 1 or not self.retry_delays_s:
            return 0.0
        return self.retry_delays_s[min(attempt - 2, len(self.retry_delays_s) - 1)]

    @classmethod
    def pipeline_defaults(cls, pipeline: str) -> dict[str, Any]:
        """Where ``pipeline`` differs from the fields' defaults: its timeout, and fail-fast for some seeds."""
        return {
            "timeout_s": PIPELINE_TIMEOUT_S.get(pipeline, cls.model_fields["timeout_s"].default),
            "fail_fast": pipeline in FAIL_FAST_PIPELINES,
        }

    @classmethod
    def for_pipeline(cls, pipeline: str, **given: Any) -> "RunOptions":
        """The options of ``pipeline``: its own defaults, then what the caller gave (None: not given)."""
        return cls(**{**cls.pipeline_defaults(pipeline), **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def of(cls, pipeline: str, run: "RunOptions | dict[str, Any] | None") -> "RunOptions":
        """What a flow runs with: the fields ``run`` sets, ``pipeline``'s defaults for the others.

        A flow's ``run`` parameter may set only some fields (a deployment's ``run: {retries: 0}``,
        or ``RunOptions(workers=4)`` in Python): the ones it leaves out take the pipeline's own
        defaults, so a subject batch keeps its two hours unless a timeout is given. A pipeline whose
        table row says ``fail_fast="always"`` (assembly) stops at the first failed item whatever ``run`` says.
        """
        if run is None:
            run = cls.for_pipeline(pipeline)
        else:
            if isinstance(run, dict):
                run = cls.model_validate(run)
            unset = {k: v for k, v in cls.pipeline_defaults(pipeline).items() if k not in run.model_fields_set}
            run = cls.model_validate({**unset, **run.model_dump(include=run.model_fields_set)}) if unset else run
        if pipeline in ALWAYS_FAIL_FAST and not run.fail_fast:  # e.g. an assembly needs every chunk
            run = run.model_copy(update={"fail_fast": True})
        return run


def cpu_workers() -> int:
    """The workers ``--parallel`` means: one per CPU."""
    return os.cpu_count() or 1
