"""`--cluster slurm` and its settings, shared by every batch command (see docs/hpc.md)."""

from __future__ import annotations

import argparse
from typing import Any


def add_cluster_flags(group: Any) -> None:
    """``--cluster`` and the ``--slurm-*`` settings (each also a key of ``--slurm-config FILE``)."""
    group.add_argument(
        "--cluster",
        choices=("local", "slurm"),
        default=None,
        help="where items run: this host (default), or Dask workers that are SLURM jobs",
    )
    group.add_argument(
        "--slurm-config",
        metavar="FILE",
        help="YAML file of SLURM settings (partition, account, cores, memory, "
        "walltime, max_jobs, job_extra_directives, interface); flags override it",
    )
    group.add_argument("--slurm-partition", metavar="NAME", help="partition (#SBATCH -p)")
    group.add_argument("--slurm-account", metavar="NAME", help="account (#SBATCH -A)")
    group.add_argument("--slurm-cores", type=int, metavar="N", help="cores per job, one item per core (default 1)")
    group.add_argument("--slurm-memory", metavar="SIZE", help="memory per job: 2GB, 500MiB (default 2GB)")
    group.add_argument(
        "--slurm-walltime",
        metavar="TIME",
        help="time limit per job, HH:MM:SS (default 01:00:00); an item still running near it is a timeout",
    )
    group.add_argument(
        "--slurm-max-jobs", type=int, metavar="N", help="most jobs queued or running at once (default 15)"
    )
    group.add_argument(
        "--slurm-extra",
        action="append",
        default=None,
        metavar="DIRECTIVE",
        help="one more #SBATCH line, e.g. --slurm-extra=--qos=normal (repeatable)",
    )
    group.add_argument(
        "--slurm-interface",
        metavar="NAME",
        help="network interface for the scheduler and workers (ib0; lo on one host)",
    )


def slurm_from_args(args: argparse.Namespace) -> Any:
    """The :class:`salvo.options.SlurmOptions` the flags ask for, or None when items run here."""
    from salvo.cluster import slurm_options
    from salvo.errors import UsageError

    cluster = getattr(args, "cluster", None)
    config = getattr(args, "slurm_config", None)
    given = {
        "partition": getattr(args, "slurm_partition", None),
        "account": getattr(args, "slurm_account", None),
        "cores": getattr(args, "slurm_cores", None),
        "memory": getattr(args, "slurm_memory", None),
        "walltime": getattr(args, "slurm_walltime", None),
        "max_jobs": getattr(args, "slurm_max_jobs", None),
        "job_extra_directives": tuple(getattr(args, "slurm_extra", None) or ()),
        "interface": getattr(args, "slurm_interface", None),
    }
    if cluster != "slurm":
        if config or any(v not in (None, ()) for v in given.values()):
            raise UsageError("--slurm-* settings need --cluster slurm")
        return None
    if getattr(args, "dask_address", None):
        raise UsageError("--cluster slurm and --dask-address: give one of them")
    return slurm_options(config, **given)
