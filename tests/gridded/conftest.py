"""Shared helpers of the gridded tests: runs of the simulated model, in dvmdostem's real layouts.

The default run-mask is the public Imnaviat site's (10 x 10), with cell (0, 0) switched off: 99
enabled cells. Outputs are on ``(time, [pftpart], [pft] | [layer], y, x)``, run_status and restart
files on ``Y, X`` (see `salvo.gridded.dvmdostem`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from salvo.gridded.dvmdostem import SITE_MASK, site_mask
from salvo.gridded.fakemodel import ModelSpec, simulate_run
from salvo.gridded.formats import read_mask, write_run_mask

#: Enabled cells of the default mask.
ENABLED = 99


class Runs:
    """Makes masks and runs of the simulated model under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spec = ModelSpec(years=2, layers=3)

    def mask(self, name: str = "run-mask.nc", *, shape=None, disabled=((0, 0),)) -> Path:
        """The site's run-mask with ``disabled`` cells off; another ``shape`` gives a made-up grid."""
        if shape is None:
            run = read_mask(SITE_MASK).copy()
            for cell in disabled:
                run[cell] = 0
            return site_mask(self.root / name, run=run)
        run = np.ones(shape, dtype="i4")
        for cell in disabled:
            run[cell] = 0
        return write_run_mask(self.root / name, run=run)

    def run(self, mask: Path, output: str, **kwargs) -> np.ndarray:
        kwargs.setdefault("state", self.root / "model-state.json")
        kwargs.setdefault("spec", self.spec)
        return simulate_run(mask, output=self.root / output, **kwargs)


@pytest.fixture
def runs(tmp_path: Path) -> Runs:
    return Runs(tmp_path)


def tree_digest(folder: Path) -> dict[str, str]:
    """Content hash of every file under ``folder`` (to prove inputs were not modified)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
