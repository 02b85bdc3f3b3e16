"""Back up a model's output folder cheaply (reflinks, hard links) or fully, then verify it."""

from __future__ import annotations

import errno
import fcntl
import filecmp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from salvo.errors import UsageError
from salvo.fsutil import atomic_dir

#: ioctl(FICLONE): share a file's blocks copy-on-write (btrfs, XFS with reflink, bcachefs).
_FICLONE = 0x40049409
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}


@dataclass
class BackupReport:
    """What a backup did: where, how each file was made, how many files and bytes."""

    source: str
    backup: str
    files: int = 0
    bytes: int = 0
    methods: dict[str, int] = field(default_factory=dict)  # "reflink" | "hardlink" | "copy" -> count

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def backup_outputs(output_dir: str | os.PathLike[str], *, backup_dir: str | os.PathLike[str],
                   copy: bool = False) -> BackupReport:
    """Back up ``output_dir`` into the new folder ``backup_dir`` and verify it; refuse an existing one.

    Without ``copy`` each file is a reflink where the filesystem can, else a hard link, else a
    copy. Links are safe because the re-run writes fresh files (the workflow empties the output
    folder first); ``copy=True`` makes independent copies for anyone who edits outputs in place.
    """
    src, dst = Path(output_dir), Path(backup_dir)
    if dst.exists():
        raise UsageError(f"Backup directory already exists: {dst}")
    if not src.is_dir():
        raise UsageError(f"Output directory not found: {src}")
    if dst.resolve().is_relative_to(src.resolve()):
        raise UsageError(f"Backup directory {dst} must not be inside the output directory {src}")
    report = BackupReport(source=str(src), backup=str(dst))
    with atomic_dir(dst) as tmp:
        os.chmod(tmp, src.stat().st_mode & 0o7777)
        report.methods = mirror_files(src, tmp, copy=copy)
        report.files = sum(report.methods.values())
        report.bytes = sum(p.lstat().st_size for p in src.rglob("*") if not p.is_dir() or p.is_symlink())
        verify_backup(src, backup_dir=tmp)
    return report


def mirror_files(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, copy: bool = False) -> dict[str, int]:
    """Recreate every file of folder ``src`` in the existing folder ``dst`` (reflink, hard link or copy)."""
    src, dst = Path(src), Path(dst)
    methods: dict[str, int] = {}
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir() and not path.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        method = _clone(path, target, copy=copy)
        methods[method] = methods.get(method, 0) + 1
    return methods


def _clone(src: Path, dst: Path, *, copy: bool) -> str:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
        return "copy"
    if not copy:
        if _reflink(src, dst):
            return "reflink"
        try:
            os.link(src, dst)
            return "hardlink"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    shutil.copy2(src, dst)
    return "copy"


def _reflink(src: Path, dst: Path) -> bool:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        except OSError as exc:
            if exc.errno not in _NO_REFLINK:
                raise
            ok = False
        else:
            ok = True
    if ok:
        shutil.copystat(src, dst)
    else:
        dst.unlink()
    return ok


def verify_backup(output_dir: str | os.PathLike[str], *, backup_dir: str | os.PathLike[str]) -> None:
    """Raise unless ``backup_dir`` holds every file of ``output_dir`` with the same content."""
    src, dst = Path(output_dir), Path(backup_dir)
    want = sorted(p.relative_to(src) for p in src.rglob("*") if not p.is_dir())
    have = sorted(p.relative_to(dst) for p in dst.rglob("*") if not p.is_dir())
    if want != have:
        missing = sorted(set(map(str, want)) - set(map(str, have)))
        raise OSError(f"Backup {dst} is incomplete; missing: {', '.join(missing) or '(extra files)'}")
    for rel in want:
        a, b = src / rel, dst / rel
        if a.is_symlink():
            if os.readlink(a) != os.readlink(b):
                raise OSError(f"Backup of {rel} differs from the original")
            continue
        sa, sb = a.stat(), b.stat()
        if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
            continue  # a hard link is the same file
        if sa.st_size != sb.st_size or not filecmp.cmp(a, b, shallow=False):
            raise OSError(f"Backup of {rel} differs from the original")
