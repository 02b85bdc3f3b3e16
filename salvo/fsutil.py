"""Writing outputs so that a reader never sees half a file and nothing finished is overwritten."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO
from pathlib import Path

#: Prefix of every temporary file or folder Salvo makes beside a final output.
TMP_PREFIX = ".salvo-tmp-"


#: errno values that mean "the disk (or the user's quota) is full".
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_reason(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str | None:
    """``no space left on device writing <path>`` for a full-disk error, else None (one line, no traceback)."""
    while exc is not None and not (isinstance(exc, OSError) and exc.errno in DISK_FULL):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if exc is None:
        return None
    where = path if path is not None else exc.filename  # type: ignore[union-attr]
    return f"no space left on device writing {os.fspath(where)}" if where else "no space left on device"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(final: Path) -> Path:
    return final.with_name(f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, exclusive: bool = False) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path``, complete and fsynced, only if the block finishes.

    With ``exclusive`` it is linked into place only if ``path`` does not exist yet, and
    ``FileExistsError`` is raised otherwise (an atomic create-if-absent).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=final.parent)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared like any file
        if exclusive:
            os.link(tmp, final)
        else:
            os.replace(tmp, final)
    except OSError as exc:
        if exc.errno in DISK_FULL and exc.filename != str(final):  # name the file, not its hidden temporary
            raise OSError(exc.errno, os.strerror(exc.errno), str(final)) from exc
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary sibling, fsync it, then rename it over ``path``."""
    with atomic_file(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path for a writer that wants a filename; rename it on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def publish_dir(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Move the finished folder ``tmp`` to ``final``; an older ``final`` is replaced only now."""
    tmp_p, final_p = Path(tmp), Path(final)
    final_p.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp_p, final_p)  # atomic when final is absent or an empty folder
        return final_p
    except OSError:
        if not final_p.exists():
            raise
    # Replace a non-empty older folder: move it aside first, so that at every instant either the
    # old or the new complete folder is at `final`, never a mixture.
    old = _tmp_sibling(final_p)
    os.rename(final_p, old)
    try:
        os.rename(tmp_p, final_p)
    except BaseException:
        os.rename(old, final_p)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final_p


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; it becomes ``final`` only if the block finishes."""
    final_p = Path(final)
    final_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final_p.name}-", dir=final_p.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        publish_dir(tmp, final_p)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_partial(final: str | os.PathLike[str], *, seen: "PartialScan | None" = None) -> list[Path]:
    """Delete what an interrupted writer left beside ``final`` (its temporary siblings).

    With ``seen``, the folder's temporary siblings are taken from that earlier listing instead of
    listing the folder again (see :class:`PartialScan`).
    """
    f = Path(final)
    prefix = f"{TMP_PREFIX}{f.name}-"
    names = seen.names(f.parent) if seen is not None else _tmp_names(f.parent)
    removed = []
    for name in [n for n in names if n.startswith(prefix)]:
        p = f.parent / name
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(p)
        if seen is not None:
            names.remove(name)
    return removed


def _tmp_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.name.startswith(TMP_PREFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return []


class PartialScan:
    """The temporary siblings of each folder, listed once: for a run of many items whose outputs
    share a folder (thousands of ``*_results`` beside their inputs), one listing instead of one per
    item, which made a batch quadratic in its size.

    Only valid for partials that existed when the folder was first listed: a caller that may meet
    newer ones (its own failed try, an item taken over from a run that died since) must call
    :func:`remove_partial` without it.
    """

    def __init__(self) -> None:
        self._names: dict[Path, list[str]] = {}

    def names(self, folder: Path) -> list[str]:
        found = self._names.get(folder)
        if found is None:
            found = self._names[folder] = _tmp_names(folder)
        return found
