"""Atomic writes: a reader sees the old complete output or the new one, never a mixture."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from salvo.fsutil import atomic_dir, atomic_write_text, remove_partial


def test_atomic_dir_publishes_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.png").write_text("1")
    assert sorted(p.name for p in final.iterdir()) == ["a.png"]
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "b.png").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in final.iterdir()) == ["a.png"]  # the earlier good output is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left


def test_atomic_dir_replaces_an_older_output_whole(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "old.png").write_text("old")
    with atomic_dir(final) as tmp:
        (tmp / "new.png").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.png"]


def test_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        f = atomic_write_text(tmp_path / "r.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_remove_partial_leaves_the_final_output(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / ".salvo-tmp-out-abc123").mkdir()
    (tmp_path / ".salvo-tmp-other-abc123").mkdir()
    removed = remove_partial(tmp_path / "out")
    assert [p.name for p in removed] == [".salvo-tmp-out-abc123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".salvo-tmp-other-abc123", "out"]
