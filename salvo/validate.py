"""Checks made up front, before any work or Prefect starts: each raises a one-line `UsageError`.

Every command runs its arguments through these in one pass, so that bad input always ends the
same way: one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import socket
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from salvo.errors import UsageError

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<cred>[^/@\s]+)@")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DURATION = re.compile(
    r"^\s*(?P<num>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>ms|s|sec|secs|m|min|mins|h|hr|hrs|d)?\s*$"
)
_UNIT_S = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "d": 86400,
}
#: The longest duration any timeout may have: a week.
MAX_DURATION_S = 7 * 86400.0


def redact(text: object) -> str:
    """``text`` with credentials embedded in URLs (``s3://KEY:SECRET@bucket``) replaced by ``***``."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", str(text))


def _p(path: object) -> str:
    return redact(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else redact(path)


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """An existing, readable regular file (not a folder, FIFO or device)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {_p(path)}") from None
    except OSError as exc:
        raise UsageError(f"{what} cannot be read: {_p(path)}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} is a folder, not a file: {_p(path)}")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} is not a regular file (a FIFO, socket or device): {_p(path)}")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} cannot be read (permission denied): {_p(path)}")
    return p


def existing_dir(path: str | os.PathLike[str], what: str) -> Path:
    """An existing folder that can be listed."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} not found: {_p(path)}")
    if not p.is_dir():
        raise UsageError(f"{what} is not a folder: {_p(path)}")
    if not os.access(p, os.R_OK | os.X_OK):
        raise UsageError(f"{what} cannot be read (permission denied): {_p(path)}")
    return p


def output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """A folder that is, or can become, an output folder: not a file, and under a writable parent."""
    p = Path(path)
    if not isinstance(path, os.PathLike):
        from salvo.storage import parse_location  # the one path/URL decision (imports fsspec: on use)

        if parse_location(path, what, block_names=False).scheme:  # refuses look-alikes (s3//x) itself
            raise UsageError(f"{what} takes a folder path, not a URL: {_p(path)}")
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} is a file, not a folder: {_p(path)}")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{what} is under a file, not a folder: {_p(probe)}")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} cannot be written (permission denied): {_p(probe)}")
    return p


def number(
    value: float | int | str,
    what: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    exclusive_minimum: bool = False,
) -> float | int:
    """A finite number in range; ``integer`` asks for a whole number."""
    try:
        x = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be {'a whole number' if integer else 'a number'}, not {value!r}") from None
    if integer and isinstance(x, float):
        if not x.is_integer():
            raise UsageError(f"{what} must be a whole number, not {value!r}")
        x = int(x)
    if isinstance(x, float) and not math.isfinite(x):
        raise UsageError(f"{what} must be a finite number, not {value!r}")
    if minimum is not None and (x <= minimum if exclusive_minimum else x < minimum):
        raise UsageError(f"{what} must be {'>' if exclusive_minimum else '>='} {minimum:g}, not {value!r}")
    if maximum is not None and x > maximum:
        raise UsageError(f"{what} must be <= {maximum:g}, not {value!r}")
    return x


def duration(text: float | int | str, what: str = "--timeout", *, default_unit: str = "s") -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h`` or ``1d``; a bare number is in ``default_unit``.

    Finite, above zero, and at most a week.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        num, unit = float(text), default_unit
    else:
        m = _DURATION.match(str(text))
        if not m and re.match(r"^\s*-\s*[0-9.]", str(text)):
            raise UsageError(f"{what} must be > 0, not {text!r}")
        if not m:
            raise UsageError(f"{what} must be a duration such as 90s, 15m or 2h, not {text!r}")
        num, unit = float(m["num"]), m["unit"] or default_unit
    seconds = num * _UNIT_S[unit]
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{what} must be > 0, not {text!r}")
    if seconds > MAX_DURATION_S:
        raise UsageError(f"{what} must be at most a week, not {text!r}")
    return seconds


def command_argv(template: str, what: str) -> list[str]:
    """A command template split as a shell would (no shell runs it), whose program exists.

    A program spelled with a ``{placeholder}`` is only checked once rendered, per item.
    """
    try:
        argv = shlex.split(template)
    except ValueError as exc:
        raise UsageError(f"{what} cannot be parsed ({exc}): {template!r}") from None
    if not argv:
        raise UsageError(f"{what} is empty")
    program = argv[0]
    if "{" not in program:
        if os.sep in program:
            if not (os.path.isfile(program) and os.access(program, os.X_OK)):
                raise UsageError(f"{what}: program not found or not executable: {program}")
        elif shutil.which(program) is None:
            raise UsageError(f"{what}: program not found on PATH: {program}")
    return argv


def safe_name(text: str, what: str) -> str:
    """A name that can be a file or block name: letters, digits, ``.``, ``_`` and ``-``, no ``..``."""
    if not text or not _SAFE_NAME.match(text) or ".." in text:
        raise UsageError(f"{what} may hold only letters, digits, '.', '_' and '-' (and no '..'): {redact(text)!r}")
    return text


def dask_address(text: str, what: str = "--dask-address", *, connect_timeout: float = 3.0) -> str:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``) of a Dask scheduler that accepts connections."""
    url = text if "://" in text else f"tcp://{text}"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise UsageError(f"{what} must look like tcp://HOST:PORT, not {redact(text)!r}")
    try:
        socket.create_connection((parts.hostname, port), timeout=connect_timeout).close()
    except OSError as exc:
        raise UsageError(f"{what}: no Dask scheduler answers at {redact(url)} ({exc.strerror or exc})") from None
    return url


def resolved_text(p: str | os.PathLike[str], folders: dict[str, str] | None = None) -> str:
    """``realpath`` of ``p``; with a ``folders`` cache (one check's), its folder is resolved once for
    all its siblings (10,000 outputs of one folder: one walk of the folder's path, then one
    ``lstat`` each for the name itself)."""
    return resolved_texts([p], folders)[0]


#: A folder holding at least this many of the paths resolved together is listed once for its links
#: (one directory scan instead of an ``lstat`` per path).
LIST_FOLDER_FROM = 64


def resolved_texts(paths: Iterable[str | os.PathLike[str]], folders: dict[str, str] | None = None) -> list[str]:
    """:func:`resolved_text` of each path, with one ``folders`` cache; a folder that holds many of
    them is listed once to learn which names are links, instead of one ``lstat`` per name."""
    folders = {} if folders is None else folders
    split = [os.path.split(os.path.abspath(p)) for p in paths]
    many: dict[str, int] = {}
    for folder, _ in split:
        many[folder] = many.get(folder, 0) + 1
    links: dict[str, set[str]] = {}
    for folder, n in many.items():
        if n >= LIST_FOLDER_FROM:
            try:
                with os.scandir(folder) as entries:
                    links[folder] = {e.name for e in entries if e.is_symlink()}
            except OSError:
                pass  # not listed: each name is checked on its own
    out = []
    for folder, name in split:
        known = links.get(folder)
        if not name or (name in known if known is not None else os.path.islink(os.path.join(folder, name))):
            out.append(os.path.realpath(os.path.join(folder, name)))
            continue
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder)
        out.append(real + name if real.endswith(os.sep) else real + os.sep + name)  # os.path.join(real, name)
    return out


class Ancestors:
    """Every folder above an absolute, normalised path, cached per folder: 10,000 outputs of one
    folder walk its path once, not once each."""

    def __init__(self) -> None:
        self._chains: dict[str, tuple[str, ...]] = {}

    def of_folder(self, folder: str) -> tuple[str, ...]:
        """``folder`` itself and every folder above it, nearest first, up to the root."""
        chain = self._chains.get(folder)
        if chain is None:
            up = os.path.dirname(folder)
            chain = self._chains[folder] = (folder,) if up == folder else (folder, *self.of_folder(up))
        return chain


def _within(a: str, b: str) -> bool:
    """Whether path ``a`` is strictly inside ``b`` (both absolute, normalised)."""
    return a.startswith(b.rstrip(os.sep) + os.sep)


def _relation(a: str, b: str) -> str | None:
    if a == b:
        return "is"
    if _within(a, b):
        return "is inside"
    if _within(b, a):
        return "contains"
    return None


def check_layout(
    outputs: Mapping[str, str | os.PathLike[str]],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    reserved: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse a plan whose outputs could overwrite an input, a reserved folder, or each other.

    ``outputs`` maps each item's name to its output folder (or file). An output that is, contains
    or is inside an input or a ``reserved`` folder (logs, records, another tool's folder), or
    another item's output, is refused with one line naming both paths. Local paths only; URLs are
    left alone.
    """
    folders: dict[str, str] = {}
    outs = [(name, resolved_text(p, folders)) for name, p in outputs.items() if "://" not in os.fspath(p)]
    check_resolved_layout(outs, inputs=inputs, reserved=reserved)


def check_resolved_layout(
    outs: list[tuple[str, str]],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    reserved: Iterable[str | os.PathLike[str]] = (),
    ancestors: Ancestors | None = None,
) -> None:
    """:func:`check_layout` of outputs already resolved (``(name, resolved_text(path))`` pairs, local
    paths only), for a caller that resolved them once for checks of its own."""
    ancestors = ancestors or Ancestors()
    seen: dict[str, str] = {}
    for name, out in outs:
        if out in seen:
            raise UsageError(f"{seen[out]} and {name} would write the same output: {out}")
        seen[out] = name
    # An output inside another: the nearest output above it, found once per folder (not per output).
    above: dict[str, str | None] = {}
    for name, out in outs:
        folder = os.path.dirname(out)
        if folder == out:  # the root itself is inside nothing
            continue
        hit = above.get(folder, "")
        if hit == "":
            hit = above[folder] = next((q for q in ancestors.of_folder(folder) if q in seen), None)
        if hit is not None:
            raise UsageError(f"the output of {name} ({out}) is inside the output of {seen[hit]} ({hit})")
    for label, paths in (("input", inputs), ("folder Salvo uses", reserved)):
        for raw in paths:
            if "://" in os.fspath(raw):
                continue
            other = resolved_text(raw)
            for name, out in outs:
                rel = _relation(out, other)
                if rel:
                    raise UsageError(
                        f"the output of {name} ({out}) {rel} the {label} {other}; choose another output folder"
                    )
