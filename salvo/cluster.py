"""Running a batch's items on a SLURM cluster: settings in, dask-jobqueue's ``SLURMCluster`` arguments out.

Plain functions (no Prefect, no Dask imported here): ``slurm_options`` reads the flags or a YAML
file into one :class:`salvo.options.SlurmOptions`; ``slurm_cluster_kwargs`` turns it into the
keyword arguments of ``dask_jobqueue.SLURMCluster``, which the flow's Dask task runner starts.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from salvo.errors import UsageError
from salvo.options import SlurmOptions


#: Where the jobs' own output goes when no folder is given (one per user, not the working folder).
def default_log_directory() -> str:
    return str(Path(tempfile.gettempdir()) / f"salvo-slurm-{os.getuid()}")


def slurm_options(config: str | os.PathLike[str] | None = None, **given: Any) -> SlurmOptions:
    """SLURM settings from a YAML file (keys as :class:`SlurmOptions` fields, or dask-jobqueue's
    spellings ``queue``, ``job_extra``), then the flags given (``None``: not given)."""
    from pydantic import ValidationError

    values: dict[str, Any] = {}
    if config is not None:
        import yaml

        try:
            doc = yaml.safe_load(Path(config).read_text()) or {}
        except OSError as exc:
            raise UsageError(f"--slurm-config: cannot read {config}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"--slurm-config: {config} is not YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(doc, dict):
            raise UsageError(f"--slurm-config: {config} must hold a mapping of settings, not {type(doc).__name__}")
        doc = doc.get("slurm", doc) if isinstance(doc.get("slurm"), dict) else doc
        aliases = {
            "queue": "partition",
            "job_extra": "job_extra_directives",
            "job_extra_directives": "job_extra_directives",
            "max-jobs": "max_jobs",
            "log-directory": "log_directory",
            "extra": "job_extra_directives",
        }
        values = {aliases.get(k, k.replace("-", "_")): v for k, v in doc.items()}
    values.update({k: v for k, v in given.items() if v not in (None, (), [])})
    try:
        return SlurmOptions(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = f"--slurm-{str(err['loc'][0]).replace('_', '-')}" if err["loc"] else "--cluster slurm"
        raise UsageError(f"{where}: {err['msg']}, not {err.get('input')!r}") from None


def slurm_cluster_kwargs(slurm: SlurmOptions) -> dict[str, Any]:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster``: one Dask worker process per job, with
    one thread per core (each item runs in a child process of its own below it)."""
    log_dir = slurm.log_directory or default_log_directory()
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {
        "cores": slurm.cores,
        "processes": 1,
        "memory": slurm.memory,
        "walltime": slurm.walltime,
        "job_name": "salvo",
        "python": sys.executable,
        "log_directory": log_dir,
        "job_extra_directives": list(slurm.job_extra_directives),
    }
    if slurm.partition:
        kwargs["queue"] = slurm.partition
    if slurm.account:
        kwargs["account"] = slurm.account
    if slurm.interface:
        kwargs["interface"] = slurm.interface
    return kwargs
