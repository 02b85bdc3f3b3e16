"""Python workers with known behaviour, run by the spine's tests in real child processes."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

from salvo.errors import InputError, SkipItem


def _count(counter_dir: str | None, name: str) -> None:
    if counter_dir:
        Path(counter_dir).mkdir(parents=True, exist_ok=True)
        (Path(counter_dir) / f"{name}.{os.getpid()}.{time.monotonic_ns()}").touch()


def write_output(*, name: str, out_dir: str, counter_dir: str | None = None, sleep: float = 0.0) -> dict:
    """Write one file and report it."""
    _count(counter_dir, name)
    time.sleep(sleep)
    path = Path(out_dir) / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name)
    return {"outputs": [str(path)], "metrics": {"chars": len(name)}}


def no_output(**_: object) -> None:
    """Exit 0 without writing anything: a silent failure once verified."""


def sleep_forever(*, pid_file: str, with_grandchild: bool = False, **_: object) -> None:
    """Hang; optionally with a grandchild process that hangs too."""
    pids = [os.getpid()]
    if with_grandchild:
        pids.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]).pid)
    Path(pid_file).write_text(" ".join(map(str, pids)))
    while True:
        time.sleep(1)


def segfault(**_: object) -> None:
    """Die of SIGSEGV."""
    ctypes.string_at(0)


def skip(*, reason: str = "nothing to do", **_: object) -> None:
    """Skip legitimately."""
    raise SkipItem(reason)


def bad_input(**_: object) -> None:
    """Fail deterministically on the input."""
    raise InputError("the input is corrupt")


def fail(*, message: str = "boom", **_: object) -> None:
    """Raise an ordinary exception."""
    raise RuntimeError(message)


def flaky(*, state_file: str, fail_times: int = 1, out_dir: str, name: str = "flaky") -> dict:
    """Fail the first ``fail_times`` calls, then succeed."""
    p = Path(state_file)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < fail_times:
        raise RuntimeError(f"transient failure {n + 1}")
    return write_output(name=name, out_dir=out_dir)


def escape_session(*, pid_file: str, marker: str, double_fork: bool = False, **_: object) -> None:
    """Fork a grandchild that leaves our process group and session (setsid) and hangs.

    With ``double_fork`` the middle process exits at once, so the grandchild is an orphan (a
    daemon). The grandchild carries ``marker`` in its command line and its environment.
    """
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if double_fork and os.fork() != 0:
            os._exit(0)
        env = {**os.environ, "SALVO_TEST_MARKER": marker}
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(3600)", marker], env)
    if double_fork:
        os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _marked(marker):
        time.sleep(0.02)
    Path(pid_file).write_text(" ".join(map(str, [os.getpid(), *_marked(marker)])))
    while True:
        time.sleep(1)


def _marked(marker: str) -> list[int]:
    """PIDs of live processes whose command line or environment holds ``marker``."""
    return marked_processes(marker)


def marked_processes(marker: str) -> list[int]:
    """Scan /proc for processes whose command line or environment holds ``marker`` (zombies excluded)."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            blob = b""
            for part in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{entry}/{part}", "rb") as fh:
                        blob += fh.read()
                except PermissionError:
                    pass
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if needle in blob:
            found.append(int(entry))
    return found


def counted(*, counter_dir: str, name: str, behaviour: str, **kwargs: object) -> object:
    """Leave one invocation marker (see ``tests.helpers.markers``), then behave as ``behaviour``."""
    import inspect

    _count(counter_dir, name)
    fn = globals()[behaviour]
    if "name" in inspect.signature(fn).parameters:
        kwargs["name"] = name
    return fn(**kwargs)


def missing_module(**_: object) -> None:
    """Fail as a plotter does when an optional package is not installed: deterministically."""
    import salvo_no_such_module  # type: ignore[import-not-found]  # noqa: F401


def hang(**_: object) -> None:
    """Hang until killed."""
    while True:
        time.sleep(1)


def require_outputs(item: object, result: object) -> str:
    """Output check: an exit-0 item must have reported an output."""
    return "" if getattr(result, "outputs", None) else "no output reported"


def parent_pid(**_: object) -> dict:
    """Report the process this item was forked from (its zygote)."""
    return {"metrics": {"ppid": os.getppid()}}
