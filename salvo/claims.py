"""Item claims with leases, on the storage the records use: one code path for one host or many.

A host claims an item before running it, and holds the claim while the item runs. Claims live
beside the records, at ``<records>/claims/<key>/<generation>``; the claim in force is the one
with the highest generation. Every operation is a create-if-absent or a write to an object only
its owner writes, so it needs nothing but the storage (a local or shared folder, or S3):

- **Claim:** read the highest generation ``g`` (none: ``g = 0``). If it is free (released,
  expired, or absent), create generation ``g + 1`` *only if absent* (``If-None-Match: *`` on S3,
  a hard link locally: ``StorageTarget.create_exclusive``). Of several hosts racing for the same
  item only one creates ``g + 1``; the others see it held and wait. Generations only grow, so a
  host acting on an old view can never create a claim beside a newer one.
- **Lease:** the holder rewrites its own generation object every ``lease / 3`` seconds (a
  background thread) with a beat counter and an expiry time.
- **Expiry:** a claim is free when its holder released it, when its holder is a process of this
  same host that is no longer alive, when its expiry (the holder's clock) is more than one lease
  in the past (this host's clock), or when this host has seen it unchanged for a whole lease (its
  own monotonic clock: no clock agreement needed). A host that died is then taken over by
  creating the next generation.
- **Lost lease:** before the result is recorded, :meth:`Claim.held` checks that this claim is
  still the highest generation and that it was renewed within the last two thirds of a lease.
  A host that was paused or cut off past its lease does not record over the new holder's result.

Settings: ``SALVO_LEASE_S`` (lease length, default 60 s), ``SALVO_CLAIM_POLL_S`` (longest wait
between looks at a held claim, default 1 s), ``SALVO_HOST_ID`` (this host's identity; default:
host name, boot id and PID namespace).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from salvo.index import write_object
from salvo.storage import StorageError, StorageTarget

log = logging.getLogger("salvo.claims")

DEFAULT_LEASE_S = 60.0
DEFAULT_POLL_S = 1.0
_GEN_DIGITS = 12


def lease_seconds() -> float:
    """The lease length: ``SALVO_LEASE_S`` or 60 s."""
    return _env_float("SALVO_LEASE_S", DEFAULT_LEASE_S, low=0.5)


def _env_float(name: str, default: float, *, low: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        log.warning("ignoring %s=%r: not a number", name, text)
        return default
    return max(low, value) if value == value else default


def host_id() -> str:
    """Who "this host" is: processes with the same host id can see each other's pids."""
    env = os.environ.get("SALVO_HOST_ID", "").strip()
    return env or _machine_id()


@functools.lru_cache(maxsize=1)
def _machine_id() -> str:
    boot = ""
    with contextlib.suppress(OSError):
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    ns = ""
    with contextlib.suppress(OSError):
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    return f"{socket.gethostname()}/{boot}/{ns}"


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (tells a pid apart from a later process reusing it)."""
    return _stat_field(pid, 19)


def _stat_field(pid: int, index: int) -> str:
    """One field of ``/proc/PID/stat`` after the command name (0: state, 19: start time), or ""."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[index]
    except (OSError, IndexError):
        return ""


@functools.lru_cache(maxsize=4)
def _own_start_time(pid: int) -> str:
    return _start_time(pid)


def _process_alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _stat_field(pid, 0) == "Z":  # a zombie: dead, only not yet reaped by its parent
        return False
    return not started or _start_time(pid) in ("", started)


class ClaimLost(RuntimeError):
    """This host no longer holds the claim (its lease expired and another host took it)."""


class Claim:
    """An exclusive, leased claim on one item key; a context manager (blocks until held)."""

    def __init__(
        self, target: StorageTarget, key: str, *, lease_s: float | None = None, poll_s: float | None = None
    ) -> None:
        self.target = target  # rooted at the claims folder
        self.key = key
        self.lease_s = float(lease_s) if lease_s else lease_seconds()
        self.poll_s = (
            float(poll_s)
            if poll_s
            else _env_float("SALVO_CLAIM_POLL_S", min(DEFAULT_POLL_S, self.lease_s / 4), low=0.01)
        )
        self.owner = uuid.uuid4().hex
        self.host = host_id()
        self.gen = 0
        self.beat = 0
        self.renewed_at = 0.0  # monotonic time of the last successful write of our claim
        self._io = threading.Lock()  # a renewal never overwrites our release
        self._active = False
        self.took_over: str | None = None  # whom we took the item over from, if anyone

    # ----- objects

    def _name(self, gen: int) -> str:
        return f"{self.key}/{gen:0{_GEN_DIGITS}d}"

    def _generations(self) -> list[int]:
        return sorted(int(n) for n in self.target.list(self.key) if n.isdigit())

    def _doc(self, state: str = "held") -> bytes:
        now = time.time()
        doc = {
            "owner": self.owner,
            "host": self.host,
            "pid": os.getpid(),
            "pid_start": _own_start_time(os.getpid()),
            "lease_s": self.lease_s,
            "beat": self.beat,
            "expires": now + self.lease_s,
            "state": state,
            "written": now,
        }
        return json.dumps(doc).encode()

    # ----- acquiring

    def acquire(self, timeout: float | None = None) -> None:
        """Block until this host holds the claim (``TimeoutError`` after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: tuple[int, bytes] | None = None
        seen_since = 0.0
        delay = min(0.05, self.poll_s)
        while True:
            gens = self._generations()
            top = gens[-1] if gens else 0
            raw = b""
            if top:
                try:
                    raw = self.target.read_bytes(self._name(top))
                except FileNotFoundError:
                    continue  # replaced while we looked: look again
            now = time.monotonic()
            if (top, raw) != seen:
                seen, seen_since = (top, raw), now
            why = self._free_because(raw, unchanged_for=now - seen_since) if top else "no claim"
            if why is not None:
                self.beat = 0
                if write_object(self.target, self._name(top + 1), self._doc(), exclusive=True):
                    self.gen, self.renewed_at = top + 1, time.monotonic()
                    if top and why not in ("released",):
                        self.took_over = why
                        log.warning("item %s: taking over a claim (%s)", self.key, why)
                    for old in gens:  # only the highest generation counts: the rest is clutter
                        with contextlib.suppress(StorageError):
                            self.target.remove(self._name(old))
                    self._start_renewing()
                    return
                delay = min(0.05, self.poll_s)
                continue  # another host created it first: look at theirs
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"item {self.key} is still claimed by another run")
            time.sleep(delay)
            delay = min(self.poll_s, delay * 2)

    def _free_because(self, raw: bytes, *, unchanged_for: float) -> str | None:
        """Why the claim in ``raw`` no longer holds, or None while it does."""
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError
        except ValueError:  # unreadable: treat as a claim that never renews
            return "unreadable claim, unchanged for a lease" if unchanged_for >= self.lease_s else None
        if doc.get("state") == "released":
            return "released"
        their_lease = _num(doc.get("lease_s"), self.lease_s)
        if doc.get("host") == self.host and isinstance(doc.get("pid"), int) and doc.get("owner") != self.owner:
            if not _process_alive(doc["pid"], str(doc.get("pid_start") or "")):
                return f"its process {doc['pid']} on this host is gone"
        expires = _num(doc.get("expires"), 0.0)
        if expires and time.time() > expires + their_lease:
            return "its lease expired"
        if unchanged_for >= max(their_lease, self.lease_s):
            return f"not renewed for {unchanged_for:.1f} s"
        return None

    # ----- holding

    def _start_renewing(self) -> None:
        with self._io:
            self._active = True
        _renewer.add(self)

    def _renew(self) -> None:
        """Rewrite our claim with a new beat and expiry (called by the renewer thread)."""
        with self._io:
            if not self._active:
                return
            self.beat += 1
            try:
                write_object(self.target, self._name(self.gen), self._doc())
                self.renewed_at = time.monotonic()
            except (StorageError, OSError) as exc:  # try again next beat; held() notices a long gap
                log.warning("item %s: could not renew its claim: %s", self.key, exc)

    def held(self) -> bool:
        """Whether this host still holds the claim, with a third of a lease to spare."""
        if not self.gen or time.monotonic() - self.renewed_at > self.lease_s * 2 / 3:
            return False
        try:
            gens = self._generations()
        except StorageError:
            return False
        return bool(gens) and gens[-1] == self.gen

    def release(self) -> None:
        """Give the claim up (other hosts may claim the item at once)."""
        _renewer.remove(self)
        with self._io:
            self._active = False
            if not self.gen:
                return
            try:
                if self._generations()[-1:] == [self.gen]:
                    write_object(self.target, self._name(self.gen), self._doc("released"))
            except (StorageError, OSError) as exc:  # the lease then simply runs out
                log.warning("item %s: could not release its claim: %s", self.key, exc)
            self.gen = 0

    def __enter__(self) -> "Claim":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class _Renewer:
    """One daemon thread per process that renews every held claim every third of its lease."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.due: dict[Claim, float] = {}
        self.thread: threading.Thread | None = None
        self.wake_at = 0.0  # when the thread wakes next on its own

    def add(self, claim: Claim) -> None:
        with self.cond:
            due = self.due[claim] = time.monotonic() + claim.lease_s / 3
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="salvo-claim-renewer", daemon=True)
                self.thread.start()
            elif due < self.wake_at:  # wake it only when it would sleep past this claim's beat
                self.cond.notify()

    def remove(self, claim: Claim) -> None:
        with self.cond:
            self.due.pop(claim, None)

    def _loop(self) -> None:
        while True:
            with self.cond:
                now = time.monotonic()
                ready = [c for c, t in self.due.items() if t <= now]
                for c in ready:
                    self.due[c] = now + c.lease_s / 3
                if not ready:
                    self.wake_at = min(self.due.values(), default=now + 5.0)
                    self.cond.wait(timeout=max(0.01, self.wake_at - now))
                    continue
            for c in ready:
                c._renew()


_renewer = _Renewer()


def _num(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
