"""The bad-input catalogue's one assertion: exit 2, one line on stderr, no traceback, nothing changed.

Each pipeline's `tests/<pipeline>/test_bad_input.py` lists its cases and calls `assert_refused`.
The command runs in-process (`cli.main.main`), so a case costs milliseconds unless the command
wrongly starts work; everything under ``keep`` is compared byte for byte before and after.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import pytest


def snapshot(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Every file under ``paths`` (and every folder) with a hash of its bytes."""
    out: dict[str, str] = {}
    for root in map(Path, paths):
        if root.is_file():
            out[str(root)] = hashlib.blake2b(root.read_bytes(), digest_size=16).hexdigest()
            continue
        if not root.exists():
            out[str(root)] = "<absent>"
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            out[dirpath] = "<dir>"
            for f in filenames:
                p = Path(dirpath, f)
                if p.is_file():
                    out[str(p)] = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
                else:
                    out[str(p)] = "<special>"
    return out


def assert_refused(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    *,
    keep: Iterable[str | os.PathLike[str]] = (),
    mentions: str | None = None,
    main=None,
) -> str:
    """Run ``salvo ARGV`` in-process; assert it was refused cleanly. Returns the error line.

    ``main`` is the entry point (default `cli.main.main`; the seeds' aliases pass their own).
    """
    if main is None:
        from cli.main import main
    keep = list(keep)
    before = snapshot(keep)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, f"exit {code}, expected 2 for {argv}; stderr: {err[-2000:]}"
    assert "Traceback" not in captured.err and "Traceback" not in captured.out, f"traceback for {argv}: {err[-2000:]}"
    assert err and len(err.splitlines()) == 1, f"expected one line on stderr for {argv}, got: {err[-2000:]!r}"
    if mentions is not None:
        assert mentions in err, f"{mentions!r} not in {err!r}"
    assert snapshot(keep) == before, f"{argv} changed files it should have left alone"
    return err
