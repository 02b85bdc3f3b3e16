"""A real single-node SLURM on 127.0.0.1 for the tests: Debian's munged, slurmctld and slurmd.

``start_slurm(base)`` writes a ``slurm.conf`` of the test's own (ports of its own, state under
``base``), starts munged when none runs, then slurmctld and slurmd, and returns once the node is
idle. ``why_not()`` says why this machine cannot run it (not root, the packages missing), so a test
skips with the reason instead of failing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)


def why_not() -> str | None:
    """None when a SLURM can be started here, else the reason."""
    if os.geteuid() != 0:
        return "SLURM's daemons run as root here (SlurmUser=root); the tests are not root"
    missing = [p for p in PROGRAMS if _which(p) is None]
    if missing:
        return (
            f"SLURM is not installed (missing {', '.join(missing)};"
            " `make test` installs Debian's slurmctld slurmd slurm-client munge)"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Slurm:
    """A running SLURM: its configuration file, node name and the pids to stop."""

    conf: Path
    node: str
    base: Path
    pidfiles: list[Path] = field(default_factory=list)
    munged_pidfile: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a client command needs to reach this SLURM."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> str:
        """A SLURM client command's standard output."""
        proc = subprocess.run(
            [_which(argv[0]) or argv[0], *argv[1:]],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs in the queue (pending or running)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def stop(self) -> None:
        """Cancel every job, stop the daemons (and munged when this started it)."""
        subprocess.run(
            [_which("scancel") or "scancel", "--full", "-u", "root"],
            env={**os.environ, **self.env},
            capture_output=True,
            timeout=30,
            check=False,
        )
        for pidfile in [*self.pidfiles, *([self.munged_pidfile] if self.munged_pidfile else [])]:
            _kill_pidfile(pidfile)


def _kill_pidfile(pidfile: Path, timeout: float = 15.0) -> None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _start_munged(base: Path) -> Path | None:
    """Reuse a munged that already answers; otherwise start one (its pid file to stop it by)."""
    if MUNGE_SOCKET.exists():
        probe = subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            return None
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run([_which("munged") or "munged", "--force"], check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while not MUNGE_SOCKET.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return Path("/run/munge/munged.pid")


def write_conf(base: Path, node: str, cpus: int) -> Path:
    """A slurm.conf of the test's own: loopback, ports of its own, state under ``base``."""
    for sub in ("state", "spool"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = base / "slurm.conf"
    conf.write_text(f"""ClusterName=salvotest
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/ctld.log
SlurmdLogFile={base}/d.log
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=60
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")
    return conf


def start_slurm(base: Path, *, ready_timeout: float = 120.0) -> Slurm:
    """Start munged (if needed), slurmctld and slurmd; return once the node is idle."""
    base.mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    conf = write_conf(base, node, os.cpu_count() or 1)
    cluster = Slurm(conf=conf, node=node, base=base, munged_pidfile=_start_munged(base))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run(
                [_which(daemon) or daemon, "-f", str(conf)], env=env, check=True, capture_output=True, timeout=60
            )
            cluster.pidfiles.append(base / f"{daemon}.pid")
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            state = cluster.run("sinfo", "-h", "-o", "%t", check=False).strip()
            if state in ("idle", "mix", "alloc"):
                return cluster
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in (base / "ctld.log", base / "d.log") if p.exists())
        raise RuntimeError(f"SLURM's node did not become idle within {ready_timeout:g} s (sinfo: {state!r})\n{logs}")
    except BaseException:
        cluster.stop()
        raise
