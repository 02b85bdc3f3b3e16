"""One subject's run, inside its child process: lock, work folder, pipeline, atomic promotion, ``_done.json``."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from salvo import __version__
from salvo.contract import subject_problem
from salvo.errors import InputError, SkipItem
from salvo.fsutil import TMP_PREFIX, atomic_write_text, disk_full_reason
from salvo.items import render_command
from salvo.outcome import EXIT_INPUT_ERROR, EXIT_SKIP
from salvo.fingerprint import fingerprint_path, hash_json
from salvo.subjects.config import declared_outputs, option_flags, pipeline_version
from salvo.subjects.pipeline import run_pipeline

DONE_FILE = "_done.json"
WORK_DIR = "_work"
FAILED_PREFIX = "_failed-"
LOCKS_DIR = ".locks"
LOGS_DIR = "logs"
LOCKED_REASON = "locked by another run"
#: Lines of a failed subject's log copied to the batch's own error stream (and so to its reason).
TAIL_LINES = 20


def subject_dir(out_dir: str | os.PathLike[str], subject_id: str) -> Path:
    """The final folder of one subject's outputs."""
    return Path(out_dir) / subject_id


def log_path(out_dir: str | os.PathLike[str], subject_id: str) -> Path:
    """Salvo's log of one subject, in the seed's place: ``OUT/<id>/logs/<id>.log`` (appended to by every run)."""
    return subject_dir(out_dir, subject_id) / LOGS_DIR / f"{subject_id}.log"


class SubjectLog:
    """Point this process's stdout and stderr (file descriptors 1 and 2) at the subject's log.

    Everything the subject's run prints goes to the log, C libraries and the pipeline command
    included. On ``close``, the original streams come back; a failed run copies the last lines of
    its part of the log to them, so the batch still sees why it failed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.start = os.fstat(fd).st_size
        self.saved = (os.dup(1), os.dup(2))
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        # Python's own streams too, wherever they pointed (a test harness may have replaced them).
        self.streams = (sys.stdout, sys.stderr)
        self.stream = os.fdopen(os.dup(2), "w", buffering=1)
        sys.stdout = sys.stderr = self.stream
        self.open = True

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last ``lines`` non-empty lines this run wrote to the log."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(max(self.start, os.fstat(fh.fileno()).st_size - 64 * 1024))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def close(self, *, failed: bool = False, last: str | None = None) -> None:
        """Restore stdout and stderr; when ``failed``, echo the log's tail there (then ``last``, if given)."""
        if not self.open:
            return
        self.open = False
        self.stream.flush()
        sys.stdout, sys.stderr = self.streams
        self.stream.close()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        if failed:
            lines = self.tail()
            if last:
                lines.append(last)
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")
                sys.stderr.flush()


def lock_path(out_dir: str | os.PathLike[str], subject_id: str) -> Path:
    """The lock file of one subject; it sits outside the subject folder, which promotion replaces."""
    return Path(out_dir) / LOCKS_DIR / f"{subject_id}.lock"


def read_done(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``_done.json`` record of a subject folder, or None when absent or unreadable."""
    try:
        data = json.loads((Path(folder) / DONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


#: The subject's input fields whose content keys its resume record (with the configuration).
INPUT_FIELDS = ("nifti", "dicom", "bval", "bvec")


def input_fingerprints(subject: Mapping[str, Any]) -> dict[str, str]:
    """Content hash of each input the subject names, by field (stat-cached: an unchanged file is not read again)."""
    return {k: fingerprint_path(p) for k in INPUT_FIELDS if (p := subject.get(k))}


def input_hash(fingerprints: Mapping[str, str]) -> str:
    """One digest of a subject's inputs' content (by field, so that moving the study does not re-run it)."""
    return hash_json(dict(fingerprints))


def rerun_reason(
    folder: str | os.PathLike[str], *, config_hash: str, inputs: Mapping[str, str] | None = None
) -> str | None:
    """None when the folder holds a successful run of this configuration on these inputs; else why it must run.

    ``inputs`` are the subject's `input_fingerprints`; None skips the input check (configuration only).
    """
    done = read_done(folder)
    if not done or done.get("status") != "success":
        return "no successful run yet" if not done else f"last run ended {done.get('status')!r}"
    if done.get("config_hash") != config_hash:
        return f"configuration changed (config hash {done.get('config_hash')} -> {config_hash})"
    if inputs is None:
        return None
    before = done.get("input_fingerprints")
    if not isinstance(before, dict):
        return "its record has no input fingerprints (made by an older Salvo)"
    changed = [k for k in INPUT_FIELDS if before.get(k) != inputs.get(k)]
    if changed:
        paths = done.get("input_paths") if isinstance(done.get("input_paths"), dict) else {}
        return "input changed: " + ", ".join(
            f"{k} ({os.path.basename(str(paths[k]).rstrip(os.sep))})" if paths.get(k) else k for k in changed
        )
    return None


def is_done(folder: str | os.PathLike[str], *, config_hash: str, inputs: Mapping[str, str] | None = None) -> bool:
    """Whether the folder holds a successful run made with this config hash (and, if given, these inputs)."""
    return rerun_reason(folder, config_hash=config_hash, inputs=inputs) is None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def subject_lock(out_dir: str | os.PathLike[str], subject_id: str) -> Iterator[None]:
    """Hold the subject's lock (an OS lock: a dead holder releases it); SkipItem if another run holds it."""
    path = lock_path(out_dir, subject_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SkipItem(LOCKED_REASON) from None
    try:
        yield
    finally:
        lock.release()


def quarantine_work(folder: str | os.PathLike[str]) -> Path | None:
    """Rename a left-over ``_work`` folder to ``_failed-<UTC time>`` for inspection (an empty one just goes)."""
    work = Path(folder) / WORK_DIR
    if not work.is_dir():
        return None
    if not any(work.iterdir()):
        work.rmdir()  # nothing to inspect
        return None
    target = Path(folder) / f"{FAILED_PREFIX}{_stamp()}"
    os.rename(work, target)
    return target


def quarantine_if_unlocked(out_dir: str | os.PathLike[str], subject_id: str) -> Path | None:
    """After a child was killed: quarantine its ``_work`` folder, unless another run now holds the lock."""
    try:
        with subject_lock(out_dir, subject_id):
            return quarantine_work(subject_dir(out_dir, subject_id))
    except SkipItem:
        return None


def checksum_path(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of a folder's relative file names and contents."""
    p = Path(path)
    digest = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            digest.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def promote(work: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Make ``work`` the subject folder: the old one is swapped out whole, its ``_failed-*`` kept."""
    work_p, final = Path(work), Path(folder)
    staging = final.with_name(f"{TMP_PREFIX}{final.name}-new-{uuid.uuid4().hex[:8]}")
    os.rename(work_p, staging)
    aside = final.with_name(f"{TMP_PREFIX}{final.name}-old-{uuid.uuid4().hex[:8]}")
    os.rename(final, aside)
    os.rename(staging, final)
    for kept in sorted(aside.glob(f"{FAILED_PREFIX}*")):
        os.rename(kept, final / kept.name)
    _carry_logs(aside / LOGS_DIR, final / LOGS_DIR)
    shutil.rmtree(aside, ignore_errors=True)
    return final


def _carry_logs(old: Path, new: Path) -> None:
    """Keep the subject's logs across promotion (an open log file keeps being written after the rename)."""
    if not old.is_dir():
        return
    if not new.exists():
        os.rename(old, new)
        return
    for entry in sorted(old.iterdir()):  # the pipeline wrote its own logs/ folder: merge, never overwrite
        target = new / entry.name
        n = 0
        while target.exists():
            n += 1
            target = new / f"{entry.stem}.salvo{'' if n == 1 else n}{entry.suffix}"
        os.rename(entry, target)


def _clear_stale(out_dir: Path, subject_id: str, folder: Path) -> None:
    # Only ever called with the subject's lock held: these are leftovers of a run that died.
    for kind in ("new", "old"):
        for stale in out_dir.glob(f"{TMP_PREFIX}{subject_id}-{kind}-????????"):
            shutil.rmtree(stale, ignore_errors=True)
    kept = quarantine_work(folder)
    if kept is not None:
        print(f"kept the work folder of an interrupted run as {kept}", file=sys.stderr, flush=True)


def read_units(work: Path) -> dict[str, str]:
    """The units a pipeline gave its metrics in ``metrics.json`` (``{"units": {"fa_mean": "ratio"}}``), if any."""
    try:
        data = json.loads((work / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    units = data.get("units") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in units.items()} if isinstance(units, dict) else {}


def _read_command_metrics(work: Path) -> dict[str, Any]:
    try:
        data = json.loads((work / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
        data = data["metrics"]
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (int, float, str, bool)) or v is None}


def run_command(
    template: str, *, subject: Mapping[str, Any], work: Path, options: Mapping[str, Any], cwd: str | None = None
) -> dict[str, Any]:
    """Run the user's pipeline command for one subject; return the metrics it wrote into ``work``.

    It runs in ``cwd`` (the folder the batch was started from, so that ``python3 my_pipeline.py``
    works as typed), or in ``work`` when no ``cwd`` is given.
    """
    params = {k: subject.get(k) or "" for k in ("id", "nifti", "dicom", "bval", "bvec")}
    params.update(
        input=subject.get("nifti") or subject.get("dicom") or "", work_dir=str(work), options=option_flags(options)
    )
    argv = render_command(template, params)
    for name in ("input", "nifti", "dicom", "bval", "bvec"):
        if "{" + name + "}" in template and not params[name]:
            raise InputError(f"subject {subject['id']} has no {name}, but the pipeline command uses {{{name}}}")
    print("running: " + " ".join(argv), file=sys.stderr, flush=True)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd if cwd and os.path.isdir(cwd) else work,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as exc:
        raise InputError(f"cannot start pipeline command {argv[0]!r}: {exc}") from None
    tail: collections.deque[str] = collections.deque(maxlen=5)
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.strip():
            tail.append(line.strip())
    code = proc.wait()
    last = tail[-1] if tail else ""
    if code < 0:
        raise _CommandKilled(-code)
    if code == EXIT_SKIP:
        raise SkipItem(last or "pipeline command skipped this subject")
    if code == EXIT_INPUT_ERROR:
        raise InputError(last or "pipeline command rejected the input")
    if code != 0:
        raise _CommandFailed(code, last)
    return _read_command_metrics(work)


class _CommandFailed(RuntimeError):
    """The pipeline command exited with a code of its own: the subject's child exits with the same code."""

    def __init__(self, code: int, last: str) -> None:
        super().__init__(f"pipeline command exited with code {code}" + (f": {last}" if last else ""))
        self.code, self.last = code, last


class _CommandKilled(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"pipeline command killed by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """In the main thread, the first SIGTERM inside the block raises ``_Terminated``; later ones are
    ignored (a timeout's SIGTERM comes more than once: to the group, then to each descendant), so
    that none cuts the clean-up short with a traceback in place of the pipeline's last lines. The
    handler never calls ``signal.signal`` itself: under a burst of signals that raised ``OSError``
    ("ignored due to race condition") in place of ``_Terminated``. The old handler comes back after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        for _ in range(3):  # a signal arriving during the call can make it fail once
            with contextlib.suppress(OSError):
                signal.signal(signal.SIGTERM, previous)
                break


class _Terminated(BaseException):
    """SIGTERM (a timeout or a cancelled batch) while the pipeline ran."""


@dataclasses.dataclass(frozen=True)
class _Run:
    """What a subject's run is: which pipeline, why it runs, and its inputs' fingerprints."""

    pipeline: str = "builtin"
    why: str = "no successful run yet"
    inputs: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def note(self) -> str:
        """Said beside the success of a run that replaced an earlier success (``re-run: input changed: ...``)."""
        return "" if self.why.startswith(("no successful run", "last run ended")) else f"re-run: {self.why}"


def _check_declared(work: Path, names: list[str]) -> None:
    """The pipeline's declared outputs are in the work folder, non-empty: otherwise nothing is promoted."""
    missing = [n for n in names if not (work / n).is_file() or (work / n).stat().st_size == 0]
    if missing:
        raise RuntimeError(f"the pipeline did not write {', '.join(missing)}")


def process_subject(
    *,
    subject: Mapping[str, Any],
    out_dir: str,
    config_hash: str,
    options: Mapping[str, Any],
    pipeline_command: str | None = None,
    force: bool = False,
    exit_with_command_code: bool = False,
    cwd: str | None = None,
    pipeline: str = "builtin",
) -> dict[str, Any]:
    """Worker entry point: run one subject under its lock, promote its outputs, write ``_done.json`` last.

    While it runs, everything it prints goes to ``OUT/<id>/logs/<id>.log``. With
    ``exit_with_command_code`` (set for the batch's child processes only), a pipeline command that
    exits with code N makes this process exit with code N too, so the batch reports the real code;
    otherwise a RuntimeError says the code. The subject is skipped when its ``_done.json`` records a
    success with this config hash on inputs of the same content; otherwise the reason it runs
    (``input changed: nifti (dwi.nii.gz)``) is logged and returned as the result's ``note``.
    """
    sid = str(subject["id"])
    out = Path(out_dir)
    folder = subject_dir(out, sid)
    with subject_lock(out, sid):
        try:
            inputs = input_fingerprints(subject)
        except OSError as exc:
            raise InputError(f"cannot read an input of subject {sid}: {exc}") from None
        why = "--force" if force else rerun_reason(folder, config_hash=config_hash, inputs=inputs)
        if why is None:
            raise SkipItem(f"already done (config hash {config_hash}, same inputs)")
        folder.mkdir(parents=True, exist_ok=True)
        log = SubjectLog(log_path(out, sid))
        # SIGTERM (a timeout, a cancel) raises _Terminated until the log is closed and its tail echoed:
        # the zygote signals the tree twice, and a second SIGTERM must not end us before that.
        with _sigterm_raises():
            try:
                _clear_stale(out, sid, folder)
                work = folder / WORK_DIR
                work.mkdir()
                run = _Run(pipeline=pipeline, why=why, inputs=inputs)
                value = _run_in_work(
                    subject, sid, out, folder, work, config_hash, options, pipeline_command, log, cwd, run
                )
            except SkipItem:
                log.close()
                raise
            except _CommandFailed as exc:
                log.close(failed=True, last=exc.last or str(exc))
                if not exit_with_command_code:
                    raise
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(exc.code)  # the command's own exit code, not a generic 1
            except BaseException as exc:
                if not isinstance(exc, (InputError, _Terminated)) and not disk_full_reason(exc):
                    traceback.print_exc(file=sys.stderr)  # into the log; the batch gets its tail
                log.close(failed=True)
                if isinstance(exc, _Terminated) and exit_with_command_code:
                    sys.stderr.flush()  # the pipeline's last lines are the item's stderr tail: no traceback of ours
                    os._exit(128 + signal.SIGTERM)
                raise
            log.close()
    return value


def _run_in_work(
    subject: Mapping[str, Any],
    sid: str,
    out: Path,
    folder: Path,
    work: Path,
    config_hash: str,
    options: Mapping[str, Any],
    pipeline_command: str | None,
    log: SubjectLog,
    cwd: str | None = None,
    run: _Run | None = None,
) -> dict[str, Any]:
    run = run or _Run()
    started = time.time()
    version = pipeline_version(pipeline_command, pipeline=run.pipeline)
    _log(f"{sid}: started {_iso(started)}, config hash {config_hash}, pipeline {version}; runs because: {run.why}")
    paths = {k: str(p) for k in INPUT_FIELDS if (p := subject.get(k))}
    try:
        if pipeline_command:
            metrics = run_command(pipeline_command, subject=subject, work=work, options=options, cwd=cwd)
        elif run.pipeline == "csttool":
            from salvo.subjects.csttool_pipeline import run_csttool

            metrics = run_csttool(subject, work=work, options=options)
        elif subject.get("nifti"):
            metrics = run_pipeline(
                subject["nifti"], work_dir=work, bval=subject.get("bval"), bvec=subject.get("bvec"), options=options
            )
            _check_declared(work, declared_outputs(None, sid, options))
        else:
            raise InputError(
                f"subject {sid} has only a DICOM folder: the built-in pipeline reads NIfTI; use --pipeline-command"
            )
    except SkipItem:
        shutil.rmtree(work, ignore_errors=True)  # the command chose to skip: nothing failed
        raise
    except _CommandKilled as exc:
        failed = quarantine_work(folder)
        _log(f"{exc}" + (f"; work folder kept at {failed}" if failed else ""))
        log.close(failed=True)
        signal.signal(exc.signum, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the command's crash is reported, not dumped twice
        os.kill(os.getpid(), exc.signum)  # die the same way, so the batch reports the crash
        raise
    except BaseException as exc:
        if isinstance(exc, OSError) and disk_full_reason(exc):
            shutil.rmtree(work, ignore_errors=True)  # a full disk: nothing half-written is kept
            raise
        failed = quarantine_work(folder)
        if isinstance(exc, _Terminated):
            why = "timed out or cancelled (SIGTERM)"
        else:
            why = str(exc) if isinstance(exc, (_CommandFailed, InputError)) else f"{type(exc).__name__}: {exc}"
        _log(f"subject {sid} failed: {why}" + (f"; work folder kept at {failed}" if failed else ""))
        raise
    computed = time.time()
    units = read_units(work)
    outputs = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    ended = time.time()
    record = {
        "id": sid,
        "status": "success",
        "started": _iso(started),
        "ended": _iso(ended),
        "duration_s": round(ended - started, 3),
        "timings": {"pipeline_s": round(computed - started, 3), "promotion_s": round(ended - computed, 3)},
        "config_hash": config_hash,
        "pipeline": "command" if pipeline_command else run.pipeline,
        "pipeline_version": version,
        "options": dict(options),
        "ran_because": run.why,
        "inputs": {paths[k]: digest for k, digest in run.inputs.items()},  # BLAKE2b-160, stat-cached
        "input_paths": paths,
        "input_fingerprints": run.inputs,
        "input_hash": input_hash(run.inputs),
        "outputs": outputs,
        "metrics": metrics,
        "units": units,
        "log": f"{LOGS_DIR}/{sid}.log",
        "host": socket.gethostname(),
        "salvo_version": __version__,
    }
    try:
        # _done.json goes in with the outputs, so that both appear in one rename, after the contract held.
        atomic_write_text(work / DONE_FILE, json.dumps(record, indent=2, default=str))
        problem = subject_problem(
            work, declared=declared_outputs(pipeline_command, sid, options, pipeline=run.pipeline)
        )
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)  # a full disk: nothing half-written is left visible
        raise exc from None
    if problem:
        failed = quarantine_work(folder)
        _log(f"subject {sid}: {problem}; nothing published" + (f", work folder kept at {failed}" if failed else ""))
        return {"outputs": [], "metrics": metrics, "silent_failure": problem}
    promote(work, folder)
    _log(f"{sid}: success in {ended - started:.1f}s; {len(outputs)} outputs promoted to {folder}")
    return {"outputs": [str(folder / o) for o in outputs], "metrics": metrics, "note": run.note}
