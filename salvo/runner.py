"""Run one item in a child process with a real timeout, and classify how it ended."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from salvo import staged
from salvo.contract import Staging, stage_outputs
from salvo.fsutil import disk_full_reason
from salvo.items import Item, Worker, render_command
from salvo.options import RunOptions
from salvo.outcome import EXIT_DETERMINISTIC, EXIT_INPUT_ERROR, EXIT_SKIP, ItemResult, Status, signal_name

#: The default limit per item is RunOptions' (written once, in salvo/options.py).
DEFAULT_TIMEOUT_S = RunOptions.model_fields["timeout_s"].default
#: Seconds between SIGTERM and SIGKILL when an item times out (RunOptions.kill_grace_s's default).
KILL_GRACE_S = RunOptions.model_fields["kill_grace_s"].default
_STDERR_TAIL_LINES = 20


class _Zygote:
    """Client side of one ``salvo.zygote`` process; one per thread, started on first use."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "salvo.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C goes to the orchestrator, which then closes our stdin
        )
        self._buf = b""
        self._seq = 0
        # One scratch folder per zygote, for its items' result and stderr files (a folder per item
        # cost a mkdtemp and an rmtree each).
        self.scratch = tempfile.mkdtemp(prefix="salvo-item-")
        weakref.finalize(self, _Zygote._close, self.proc, self.scratch)
        _zygotes.add(self)

    @staticmethod
    def _close(proc: subprocess.Popen[bytes], scratch: str) -> None:
        with contextlib.suppress(Exception):
            proc.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        shutil.rmtree(scratch, ignore_errors=True)

    def scratch_paths(self) -> tuple[str, str]:
        """Fresh result and stderr paths for the next item (removed by :func:`run_item` when it ends)."""
        self._seq += 1
        base = os.path.join(self.scratch, str(self._seq))
        return base + ".result.json", base + ".stderr.log"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, req: dict[str, Any]) -> None:
        self.proc.stdin.write((json.dumps(req) + "\n").encode())  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def recv(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message, or None if the zygote died or said nothing before ``timeout``."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def interrupt(self) -> None:
        """Close our end of its stdin: the zygote kills the running item's whole tree and exits."""
        with contextlib.suppress(Exception):
            self.proc.stdin.close()  # type: ignore[union-attr]


_local = threading.local()
_zygotes: "weakref.WeakSet[_Zygote]" = weakref.WeakSet()
_stop = threading.Event()


def request_stop() -> None:
    """Stop every batch of this process now (Ctrl-C): kill running items, start no new ones.

    Safe to call from a signal handler. Items running are killed with their whole process tree
    and end ``interrupted``; items not started end ``not_run``. Call :func:`clear_stop` before
    running another batch in the same process.
    """
    _stop.set()
    for z in list(_zygotes):
        z.interrupt()


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called (and not cleared since)."""
    return _stop.is_set()


def wait_unless_stopped(seconds: float) -> bool:
    """Sleep ``seconds``, cut short by :func:`request_stop`; True if the batch may go on."""
    return not _stop.wait(max(0.0, seconds))


def clear_stop() -> None:
    """Allow items to run again after :func:`request_stop`."""
    _stop.clear()


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[None]:
    """While inside: the first Ctrl-C stops the batch cleanly, a second one exits at once (130).

    Without it, Ctrl-C raises ``KeyboardInterrupt`` wherever the main thread is, and the batch
    ends without its summary. Only the main thread can install signal handlers; elsewhere this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _stop.is_set():
            os.write(2, b"\nInterrupted again: exiting now.\n")
            os._exit(130)
        os.write(2, b"\nInterrupted: stopping running items and writing the reports (Ctrl-C again to exit at once)\n")
        request_stop()

    clear_stop()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: While a batch runs, a thread holding the GIL hands it over after this many seconds instead of
#: Python's 5 ms: the worker threads wake up from their items' processes many times per item, and
#: each wake-up waited up to a whole interval behind the busy dispatch thread (2,000 tiny items:
#: 14% less wall time, no more CPU; benchmarks/RESULTS.md).
BATCH_SWITCH_INTERVAL_S = 0.0005


@contextlib.contextmanager
def responsive_threads(interval_s: float = BATCH_SWITCH_INTERVAL_S) -> Iterator[None]:
    """While inside, threads take turns with the GIL every ``interval_s`` (never less often than before)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval_s))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


#: Zygotes started ahead of a batch by :func:`prestart`, taken by the first threads that need one.
_spare: list[_Zygote] = []
_spare_lock = threading.Lock()


def prestart(worker: Worker, count: int) -> None:
    """Start ``count`` zygotes now, importing ``worker``'s modules, for a batch about to start here.

    Their imports (matplotlib and netCDF4 for the plotting worker: about 1.5 s) then overlap with
    what this process does meanwhile (importing Prefect, creating the flow run) instead of
    following it. Call it after `salvo.procs.start_reaper`, so that they carry its token.
    Unused ones end with this process.
    """
    warm: dict[str, Any] = {"kind": "warm", "preload": list(worker.preload), "sys_path": [p for p in sys.path if p]}
    if worker.kind == "python" and not is_staged_command(worker):
        warm["target"] = worker.target
    with _spare_lock:
        for _ in range(max(0, count - len(_spare))):
            z = _Zygote()
            z.send(warm)
            _spare.append(z)


def _zygote() -> _Zygote:
    z = getattr(_local, "zygote", None)
    if z is None or not z.alive():
        with _spare_lock:
            spare = [c for c in _spare if c.alive()]
            z = spare.pop() if spare else None
            _spare[:] = spare
        _local.zygote = z = z or _Zygote()
    return z


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _tail(path: str | None, lines: int = _STDERR_TAIL_LINES) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        with contextlib.suppress(OSError):
            fh.seek(-64 * 1024, os.SEEK_END)
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(deque(text.rstrip().splitlines(), maxlen=lines))


def is_staged_command(worker: Worker, item: Item | None = None) -> bool:
    """Whether ``worker`` is a user's command run into staging folders (``salvo.staged``): the runner
    then creates the folders, the zygote spawns the command itself, and the runner publishes."""
    return worker.kind == "python" and worker.target == staged.STAGED_COMMAND


def _request(item: Item, worker: Worker, result_path: str, stderr_path: str) -> dict[str, Any]:
    if is_staged_command(worker, item):  # ``item`` points at its staging folders: the command is the item process
        return {
            "kind": "command",
            "argv": render_command(item.params["command"], item.params),
            "stderr_path": stderr_path,
            "grace": KILL_GRACE_S,
        }
    req: dict[str, Any] = {
        "kind": worker.kind,
        "target": worker.target,
        "preload": list(worker.preload),
        "sys_path": [p for p in sys.path if p],
        "result_path": result_path,
        "stderr_path": stderr_path,
        "grace": KILL_GRACE_S,
    }
    if worker.kind == "command":
        req["argv"] = render_command(worker.target, item.params)
    else:
        req["params"] = dict(item.params)
    return req


def command_text(req: dict[str, Any]) -> str:
    """What a request runs, as the reports show it: a command's argv shell-quoted, or a Python
    worker's call (``pkg.module:function(name=value, ...)``, values as Python writes them)."""
    if "argv" in req:
        return shlex.join(req["argv"])
    return f"{req['target']}({', '.join(f'{k}={v!r}' for k, v in req.get('params', {}).items())})"


def _run_child(req: dict[str, Any], timeout_s: float | None, z: _Zygote | None = None) -> dict[str, Any]:
    """Hand the request to this thread's zygote and wait for the child to end."""
    z = z or _zygote()
    z.send({**req, "timeout": timeout_s})
    started = z.recv(timeout=60)
    if started is None:
        z.kill()
        raise RuntimeError("the worker process did not start")
    # The zygote enforces the timeout; this backstop only guards against a stuck zygote.
    backstop = None if timeout_s is None else timeout_s + 2 * req["grace"] + 30
    done = z.recv(timeout=backstop)
    if done is None:
        if started.get("pid", 0) > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(started["pid"], signal.SIGKILL)
        z.kill()
        raise RuntimeError("the worker supervisor stopped answering; the item was killed")
    return done


def run_item(
    item: Item,
    worker: Worker,
    *,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    attempt: int = 1,
    log_path: str | os.PathLike[str] | None = None,
    kill_grace_s: float = KILL_GRACE_S,
) -> ItemResult:
    """Run ``item`` in a child process in its own session; never raises for the item's faults."""
    started, t0 = _now(), time.monotonic()
    result = ItemResult(item_id=item.id, status=Status.EXCEPTION, started=started, attempt=attempt, timeout_s=timeout_s)
    if _stop.is_set():
        result.status, result.reason = Status.NOT_RUN, "not started: the batch was interrupted"
        result.ended = result.started
        return result
    try:
        z = _zygote()
        result_path, stderr_path = z.scratch_paths()
    except Exception as exc:  # no worker process could be started: an orchestration fault
        result.status, result.reason = Status.EXCEPTION, f"{type(exc).__name__}: {exc}"
        result.stderr_tail = traceback.format_exc(limit=5)
        result.ended, result.duration_s = _now(), round(time.monotonic() - t0, 3)
        return result
    staging: Staging | None = None
    try:
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        tail_path = str(log_path) if log_path is not None else stderr_path
        try:
            staging = stage_outputs(item, worker.stage)
            run_as = staging.staged_item(item) if staging is not None else item
            req = {**_request(run_as, worker, result_path, stderr_path), "grace": kill_grace_s}
            result.command = command_text(req)
            if log_path is not None:
                req["log_path"] = str(log_path)
            done = _run_child(req, timeout_s, z)
            result.peak_rss_mb = round(done["maxrss_kb"] / 1024, 1)
            if "cpu_s" in done:
                result.cpu_s = round(done["cpu_s"], 3)
                result.read_bytes, result.write_bytes = done["inblock"] * 512, done["oublock"] * 512
            payload = {}
            if os.path.exists(result_path):
                with open(result_path) as fh:
                    payload = json.load(fh)
            _classify(result, done, payload, _tail(tail_path), timeout_s)
            if req.get("kind") == "command" and result.status is Status.SUCCESS:
                _skipped_as_said(result, item, staging, tail_path)
        except OSError as exc:
            if (full := disk_full_reason(exc)) is None:
                raise
            # Staging on a full disk: one line, no traceback, not retried (as a worker's full disk, exit 78).
            result.status, result.reason, result.exit_code = Status.ERROR, full, EXIT_DETERMINISTIC
        except Exception as exc:  # an orchestration fault, not the item's own
            result.status = Status.EXCEPTION
            result.reason = f"{type(exc).__name__}: {exc}"
            result.stderr_tail = traceback.format_exc(limit=5)
        if _stop.is_set() and not result.status.ok:
            result.status, result.reason = Status.INTERRUPTED, "interrupted (Ctrl-C): the item's processes were killed"
            result.exit_code = result.signal = None
        if result.status is Status.SUCCESS:
            _check_and_publish(result, item, worker, staging)
        elif staging is not None and result.reason == "no space left on device":  # the worker could not say where
            result.reason += f" writing {staging.stages[0].final}"
    finally:
        for path in (result_path, result_path + ".tmp", stderr_path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        if staging is not None:
            staging.discard()
    result.ended = _now()
    result.duration_s = round(time.monotonic() - t0, 3)
    return result


def _classify(
    result: ItemResult,
    done: dict[str, Any],
    payload: dict[str, Any],
    tail: str,
    timeout_s: float | None,
) -> None:
    """Fill in status and reason from how the child ended."""
    code = done["exit_code"]
    result.outputs = [str(p) for p in payload.get("outputs", [])]
    result.metrics = dict(payload.get("metrics", {}))
    if done["timed_out"]:
        result.status = Status.TIMEOUT
        result.reason = f"exceeded the {timeout_s:g} s limit; process group killed"
        result.stderr_tail = tail
    elif done["orphaned"]:
        result.status = Status.EXCEPTION
        result.reason = "the orchestrator went away; the item was killed"
    elif code < 0:
        result.status, result.signal = Status.CRASHED, -code
        result.reason = f"killed by {signal_name(-code)}"
        result.stderr_tail = tail
    elif code == EXIT_SKIP:
        result.status, result.exit_code = Status.SKIPPED, code
        last = tail.splitlines()[-1] if tail else ""
        result.reason = payload.get("skip_reason") or last.removeprefix("skipped: ") or "skipped"
    elif code != 0 and payload.get("error_reason"):  # the worker said why in one line (a full disk)
        result.status, result.exit_code, result.reason = Status.ERROR, code, str(payload["error_reason"])
    elif code != 0:
        result.status, result.exit_code, result.stderr_tail = Status.ERROR, code, tail
        last = tail.splitlines()[-1] if tail else ""
        kind = {EXIT_INPUT_ERROR: "bad input", EXIT_DETERMINISTIC: "cannot run here"}.get(code, f"exit code {code}")
        result.reason = f"{kind}: {last}" if last else kind
    elif payload.get("silent_failure"):  # a worker that checked its own outputs before publishing them
        result.status, result.exit_code = Status.SILENT_FAILURE, 0
        result.reason = str(payload["silent_failure"])
    else:
        result.status, result.exit_code = Status.SUCCESS, 0
        result.reason = str(payload.get("note") or "")  # a Python worker's word on its success (why it re-ran)


def _skipped_as_said(result: ItemResult, item: Item, staging: Staging | None, log: str) -> None:
    """A spawned command that exits 0, writes nothing and prints its skip message (the NetCDF seed's
    ``Skipping.``, ``item.params["skip_message"]``) is ``skipped`` with that line, as
    :func:`salvo.staged.run_staged_command` decides it for a command it runs itself."""
    message = item.params.get("skip_message")
    if not message or staging is None or any(os.path.isdir(s.staged) and os.listdir(s.staged) for s in staging.stages):
        return
    try:
        with open(log, "rb") as fh:  # the command's stdout went to its log: its last 64 KiB are enough
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 65536))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return
    said = next((line.strip() for line in reversed(lines) if message in line), None)
    if said is not None:
        result.status, result.reason = Status.SKIPPED, said


def _check_and_publish(result: ItemResult, item: Item, worker: Worker, staging: Staging | None) -> None:
    """The output contract on the staged outputs, then publication, only when it holds.

    A staged folder the worker never made, or a contract that fails, makes the item a
    ``silent_failure`` and nothing is renamed: the previous result stays as it was.
    """
    if staging is None:  # nothing staged: the contract checks the outputs where they are
        if worker.verify:
            _verify(result, item, worker)
        return
    problem = staging.missing()
    if problem:
        result.status, result.reason = Status.SILENT_FAILURE, problem
        return
    if worker.verify:
        _verify(result, staging.staged_item(item), worker)
        if result.status is not Status.SUCCESS:
            result.reason = _final_names(result.reason, staging)
            return
    try:
        staging.publish()
    except OSError as exc:
        result.status, result.exit_code = Status.ERROR, None
        result.reason = disk_full_reason(exc) or f"cannot publish the outputs: {exc}"
        return
    result.outputs = staging.finals(result.outputs) if result.outputs else [s.final for s in staging.stages]


def _final_names(reason: str, staging: Staging) -> str:
    """A contract's reason speaks of the final folders, not of the temporary ones the user never sees."""
    for s in staging.stages:
        reason = reason.replace(s.staged, s.final).replace(s.root, os.path.dirname(s.final))
    return reason


def _verify(result: ItemResult, item: Item, worker: Worker) -> None:
    """Turn an exit-0 item whose outputs are missing or invalid into a silent failure."""
    module, _, name = worker.verify.partition(":")  # type: ignore[union-attr]
    try:
        problem = getattr(importlib.import_module(module), name)(item, result)
    except Exception as exc:
        problem = f"output check failed: {type(exc).__name__}: {exc}"
    if problem:
        result.status = Status.SILENT_FAILURE
        result.reason = problem
