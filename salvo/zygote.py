"""A warm process that starts one child per item, each in its own session, and reaps it.

A Python item is a fork of this process. An external command (``"kind": "command"``: a user's
``--worker-command``, run into its staging folders by ``salvo.runner``) is spawned directly with
``posix_spawn`` (no copy of this process, no Python per item), under the same supervision below.

Run as ``python -m salvo.zygote``; it speaks newline-delimited JSON on stdin/stdout (see
``salvo.runner``). Modules imported here once are inherited by every forked child, so an item
does not pay for interpreter start-up and imports. A worker's ``preload`` names modules to import
here first (a ``{"kind": "warm"}`` request does only that, ahead of a batch); an entry
``"pkg.module:function"`` is imported and called once per zygote (a warm-up, for example one
throwaway matplotlib drawing, whose caches every forked item then inherits). The zygote enforces
the item's timeout by killing the child's whole process tree (SIGTERM, then SIGKILL), and kills it
as well when its own stdin closes, which is what happens when the orchestrating process dies for
any reason.

The zygote is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a descendant that leaves the item's
process group or session (``setsid``, a double fork) is re-parented to the zygote instead of
init, so it stays in the zygote's tree. Since the zygote runs one item at a time, every
descendant of the zygote belongs to the running item; all of them are killed at the timeout and
swept when the item ends.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import select
import signal
import sys
import time
import traceback
from typing import Any

import psutil

from salvo.errors import InputError, SkipItem
from salvo.fsutil import disk_full_reason
from salvo.outcome import EXIT_DETERMINISTIC, EXIT_INPUT_ERROR, EXIT_SKIP

_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux >= 3.4); False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _send(msg: dict[str, Any]) -> None:
    os.write(1, (json.dumps(msg) + "\n").encode())


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _redirect(log_path: str | None, stderr_path: str) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_path else err
    os.dup2(out, 1)
    os.dup2(err if not log_path else out, 2)


def _child(req: dict[str, Any]) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        _redirect(req.get("log_path"), req["stderr_path"])
        if req.get("cwd"):
            os.chdir(req["cwd"])
        os.environ.update(req.get("env") or {})
        if req["kind"] == "command":
            argv = req["argv"]
            try:
                os.execvp(argv[0], argv)
            except OSError as exc:
                print(f"cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
                code = 127
        else:
            code = _run_python(req)
    except BaseException:  # the child must always reach os._exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _run_python(req: dict[str, Any]) -> int:
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        value = _resolve(req["target"])(**req.get("params", {}))
    except SkipItem as exc:
        value, code = {"skip_reason": str(exc)}, EXIT_SKIP
    except InputError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INPUT_ERROR
    except ImportError:  # a module missing here stays missing: deterministic, never retried
        traceback.print_exc()
        return EXIT_DETERMINISTIC
    except OSError as exc:  # a full disk: one line naming the file, no traceback
        if (full := disk_full_reason(exc)) is None:
            raise
        print(full, file=sys.stderr)
        value, code = {"error_reason": full}, EXIT_DETERMINISTIC  # a full disk stays full: not retried
    else:
        code = 0
    tmp = req["result_path"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(value or {}, fh, default=str)
    os.replace(tmp, req["result_path"])
    if code == EXIT_SKIP:
        print(f"skipped: {value['skip_reason']}", file=sys.stderr)
    return code


#: Signals the zygote ignores or handles that a spawned command must find at their defaults.
_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ)


def _spawn(req: dict[str, Any]) -> int | None:
    """Start a ``command`` request's argv directly (``posix_spawn``: no copy of this process).

    The same set-up as a forked child: its own session, stdin from /dev/null, stdout and stderr to
    the item's log, default signal handling. Returns the pid, or None if the program cannot be run
    (the reason is then written where its stderr would have gone). A request with a ``cwd`` is
    left to the fork path, since ``posix_spawn`` here cannot change folder.
    """
    log, err = req.get("log_path"), req["stderr_path"]
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log or err, flags, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    env = {**os.environ, **req["env"]} if req.get("env") else os.environ
    argv = req["argv"]
    try:
        return os.posix_spawnp(argv[0], argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULT_SIGNALS)
    except OSError as exc:
        fd = os.open(log or err, flags, 0o644)
        try:
            os.write(fd, f"cannot run {argv[0]!r}: {exc.strerror}\n".encode())
        finally:
            os.close(fd)
        return None


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants() -> list[int]:
    """Every live process below the zygote: the item, its descendants and adopted orphans."""
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    pids = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def _signal_tree(pid: int, sig: int) -> None:
    """Send ``sig`` to the item's process group and to every descendant of the zygote."""
    _kill_group(pid, sig)
    for p in _descendants():
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap_others() -> None:
    """Collect adopted orphans that have exited (never blocks)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _has_children() -> bool:
    """Whether the zygote has any child left (cheap: /proc/self/task/*/children, else psutil).

    After the item's own process is reaped, every descendant it left is re-parented to the zygote
    (a subreaper), so no child means nothing to sweep.
    """
    try:
        tasks = os.listdir("/proc/self/task")
        return any(open(f"/proc/self/task/{t}/children").read().strip() for t in tasks)
    except OSError:
        return bool(_descendants())


def _sweep(pid: int) -> None:
    """Kill whatever the item left behind, until nothing below the zygote is alive."""
    _reap_others()
    if not _has_children():
        return
    for _ in range(200):
        _signal_tree(pid, signal.SIGKILL)
        _reap_others()
        if not _descendants():
            break
        time.sleep(0.01)
    _reap_others()


def _supervise(pid: int, timeout: float | None, grace: float) -> dict[str, Any]:
    """Wait for the child; kill its group on timeout or when our stdin closes."""
    pidfd = os.pidfd_open(pid)
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = orphaned = False
    term_sent_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if term_sent_at is not None:
                wait = max(0.0, term_sent_at + grace - now)
            elif deadline is not None:
                wait = max(0.0, deadline - now)
            else:
                wait = None
            ready, _, _ = select.select([pidfd, 0], [], [], wait)
            if pidfd in ready:
                break
            if 0 in ready and not os.read(0, 65536):
                orphaned = True
                _signal_tree(pid, signal.SIGKILL)
                break
            now = time.monotonic()
            if term_sent_at is None and deadline is not None and now >= deadline:
                timed_out = True
                term_sent_at = now
                _signal_tree(pid, signal.SIGTERM)
            elif term_sent_at is not None and now >= term_sent_at + grace:
                _signal_tree(pid, signal.SIGKILL)
                term_sent_at = float("inf")
    finally:
        os.close(pidfd)
    _, wstatus, rusage = os.wait4(pid, 0)
    # Sweep the tree: a descendant left behind by an item (in the group, or one that called
    # setsid or was orphaned and adopted by us) must not outlive it.
    _sweep(pid)
    return {
        "event": "done",
        "pid": pid,
        "exit_code": os.waitstatus_to_exitcode(wstatus),
        "timed_out": timed_out,
        "orphaned": orphaned,
        "maxrss_kb": rusage.ru_maxrss,
        # The item's CPU and storage I/O (its process and the children it waited for), for the reports.
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "inblock": rusage.ru_inblock,
        "oublock": rusage.ru_oublock,
    }


#: Whether ``os.posix_spawnp`` with a new session is available (Python >= 3.8 on Linux).
_CAN_SPAWN = hasattr(os, "posix_spawnp") and hasattr(os, "POSIX_SPAWN_OPEN")

#: ``"pkg.module:function"`` preload entries already called in this zygote.
_warmed: set[str] = set()


def serve() -> None:
    """Read requests from stdin, one at a time, until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's to handle
    _become_subreaper()
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        req = json.loads(line)
        for path in req.get("sys_path", []):
            if path not in sys.path:
                sys.path.append(path)
        for entry in req.get("preload", []):
            if ":" not in entry:
                importlib.import_module(entry)
            elif entry not in _warmed:  # "pkg.module:function": called once here, so every fork starts warm
                _warmed.add(entry)
                try:
                    _resolve(entry)()
                except Exception as exc:  # a warm-up is an optimisation: the items still run
                    print(f"zygote: warm-up {entry} failed: {exc}", file=sys.stderr)
        if req["kind"] in ("python", "warm") and req.get("target"):
            try:
                _resolve(req["target"])  # import once here, so that every fork is warm
            except Exception as exc:  # the child will report it properly
                print(f"zygote: cannot preload {req['target']}: {exc}", file=sys.stderr)
        if req["kind"] == "warm":  # started ahead of its batch (salvo.runner.prestart): imports only, no answer
            continue
        if req["kind"] == "command" and not req.get("cwd") and _CAN_SPAWN:
            pid = _spawn(req)
            if pid is None:  # the program cannot be run: the shell's code for it, no process
                _send({"event": "started", "pid": 0})
                _send(
                    {"event": "done", "pid": 0, "exit_code": 127, "timed_out": False, "orphaned": False, "maxrss_kb": 0}
                )
                continue
        else:
            pid = os.fork()
            if pid == 0:
                _child(req)
        _send({"event": "started", "pid": pid})
        done = _supervise(pid, req.get("timeout"), req.get("grace", 3.0))
        _send(done)
        if done["orphaned"]:
            return


if __name__ == "__main__":
    serve()
