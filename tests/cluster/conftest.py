"""A real Dask cluster for the module: `dask scheduler` and two `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from salvo.procs import Processes
from tests.helpers import child_env_for, wait_until

READY_TIMEOUT_S = 180.0


@dataclass
class Cluster:
    """The scheduler's address, the worker processes' pids, and the processes to stop."""

    address: str
    worker_pids: dict[str, int]
    processes: Processes


def cluster_env(api_url: str) -> dict[str, str]:
    """Workers report task runs to the test's Prefect API (no API server of their own)."""
    return child_env_for(api_url)


def start_cluster(
    api_url: str,
    base: Path,
    *,
    workers: tuple[str, ...] = ("cw-1", "cw-2"),
    nthreads: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Cluster:
    """Start `dask scheduler` and one `dask worker` process per name (no nanny: a killed worker stays
    dead) on free ports of 127.0.0.1; return once every worker is connected. The caller stops it
    with ``cluster.processes.stop()``."""
    from distributed import Client

    info = base / "scheduler.json"
    env = {**cluster_env(api_url), **(extra_env or {})}
    dask = [str(Path(sys.executable).parent / "dask")]
    procs = Processes()
    try:
        procs.start(
            "scheduler",
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
            env=env,
            log=base / "scheduler.log",
        )
        assert wait_until(lambda: info.exists() and info.stat().st_size > 0, timeout=READY_TIMEOUT_S, interval=0.1), (
            base / "scheduler.log"
        ).read_text()
        address = json.loads(info.read_text())["address"]
        for name in workers:
            procs.start(
                name,
                [
                    *dask,
                    "worker",
                    address,
                    "--name",
                    name,
                    "--nthreads",
                    str(nthreads),
                    "--no-nanny",
                    "--no-dashboard",
                    "--local-directory",
                    str(base / name),
                ],
                env=env,
                log=base / f"{name}.log",
            )
        with Client(address, timeout=READY_TIMEOUT_S) as client:
            client.wait_for_workers(len(workers), timeout=READY_TIMEOUT_S)
            pids = client.run(os.getpid)
    except BaseException:
        procs.stop()
        raise
    return Cluster(address=address, worker_pids=pids, processes=procs)


@pytest.fixture(scope="module")
def dask_cluster(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Start the cluster on free ports, wait until both workers are connected, stop it at the end."""
    cluster = start_cluster(prefect_api, tmp_path_factory.mktemp("dask"))
    try:
        yield cluster
    finally:
        cluster.processes.stop()
