"""Back up a model's output folder so that no later write can change it: move it, reflink it or copy it.

dvmdostem creates every file with ``NC_CLOBBER``, which truncates an existing file *in place*. A
hard link shares the inode, so the next run writing into ``output/`` would rewrite the backup too:
hard links are never used. The default moves ``output/`` to the backup (one rename) and leaves an
empty ``output/`` for the re-run, which is the seed's step "rm -rf output/; mkdir output/" done
safely. ``copy=True`` keeps ``output/`` as it is and makes independent files: a reflink where the
filesystem shares blocks copy-on-write (btrfs, XFS), else a full copy.
"""

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
    methods: dict[str, int] = field(default_factory=dict)  # "move" | "reflink" | "copy" -> count

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def backup_outputs(
    output_dir: str | os.PathLike[str], *, backup_dir: str | os.PathLike[str], copy: bool = False
) -> BackupReport:
    """Back up ``output_dir`` into the new folder ``backup_dir`` and verify it; refuse an existing one.

    Without ``copy``, ``output_dir`` is renamed to ``backup_dir`` and an empty ``output_dir`` (same
    permissions) is made for the re-run; across filesystems the files are copied, verified, and
    only then removed from ``output_dir``. With ``copy``, every file is reflinked or copied and
    ``output_dir`` is left as it was.
    """
    src, dst = Path(output_dir), Path(backup_dir)
    if dst.exists():
        raise UsageError(f"Backup directory already exists: {dst}")
    if not src.is_dir():
        raise UsageError(f"Output directory not found: {src}")
    if dst.resolve().is_relative_to(src.resolve()):
        raise UsageError(f"Backup directory {dst} must not be inside the output directory {src}")
    report = BackupReport(source=str(src), backup=str(dst))
    before = _listing(src)
    report.files = sum(1 for _, size in before.values() if size is not None)
    report.bytes = sum(size or 0 for _, size in before.values())
    if not copy and _move_dir(src, dst):
        report.methods = {"move": report.files}
        if _listing(dst) != before:
            raise OSError(f"Backup {dst} does not hold what {src} held before the move")
        return report
    with atomic_dir(dst) as tmp:
        os.chmod(tmp, src.stat().st_mode & 0o7777)
        report.methods = mirror_files(src, tmp)
        verify_backup(src, backup_dir=tmp)
    if not copy:  # a move across filesystems: the copy is verified and in place, now empty the output
        report.methods = {"move (copied across filesystems)": report.files}
        _empty(src)
    return report


def _move_dir(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` and recreate ``src`` empty; False when a rename cannot do it (other filesystem)."""
    mode = src.stat().st_mode & 0o7777
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EBUSY, errno.EPERM, errno.EACCES):
            return False
        raise
    src.mkdir()
    os.chmod(src, mode)
    return True


def _listing(folder: Path) -> dict[str, tuple[str, int | None]]:
    out: dict[str, tuple[str, int | None]] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = ("link:" + os.readlink(p), 0)
        elif p.is_dir():
            out[rel] = ("dir", None)
        else:
            out[rel] = ("file", p.stat().st_size)
    return out


def _empty(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def mirror_files(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> dict[str, int]:
    """Recreate every file of folder ``src`` in the existing folder ``dst`` as independent files (reflink or copy)."""
    src, dst = Path(src), Path(dst)
    methods: dict[str, int] = {}
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir() and not path.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        method = _clone(path, target)
        methods[method] = methods.get(method, 0) + 1
    return methods


def _clone(src: Path, dst: Path) -> str:
    # Never a hard link: the model truncates its files in place (NC_CLOBBER), a link would share that.
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
        return "copy"
    if _reflink(src, dst):
        return "reflink"
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
            raise OSError(f"Backup of {rel} is a hard link to the original, which the next model run would overwrite")
        if sa.st_size != sb.st_size or not filecmp.cmp(a, b, shallow=False):
            raise OSError(f"Backup of {rel} differs from the original")
