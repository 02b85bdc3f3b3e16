"""File moves of a recovery: the user's mask is kept and always put back, outputs move between rounds."""

from __future__ import annotations

import numpy as np
import pytest

from salvo.errors import UsageError
from salvo.gridded import read_mask, write_run_mask
from salvo.gridded.recovery import (
    install_mask,
    keep_original_mask,
    mask_is_original,
    move_contents,
    plan_layout,
    replace_contents,
    restore_mask,
)

from .conftest import tree_digest


def test_mask_is_swapped_for_a_round_and_put_back(runs):
    mask = runs.mask()
    original = mask.read_bytes()
    layout = plan_layout(mask, output=runs.root / "output")
    assert layout.work == runs.root / "output.recovery"
    keep_original_mask(layout)
    failed = write_run_mask(runs.root / "failed.nc", run=np.eye(4, 5, dtype="i4"))
    install_mask(layout, failed)
    assert read_mask(mask).tolist() == np.eye(4, 5).tolist() and not mask_is_original(layout)
    assert restore_mask(layout) is True
    assert mask.read_bytes() == original and mask_is_original(layout) and not layout.marker.exists()


def test_a_recovery_that_died_with_the_mask_swapped_is_repaired_on_the_next_start(runs):
    mask = runs.mask()
    original = mask.read_bytes()
    layout = plan_layout(mask, output=runs.root / "output")
    keep_original_mask(layout)
    install_mask(layout, write_run_mask(runs.root / "failed.nc", run=np.zeros((4, 5), dtype="i4")))
    # ... the orchestrator was killed here; the user's path holds the failed-cells mask.
    keep_original_mask(layout)
    assert mask.read_bytes() == original and layout.original_mask.read_bytes() == original


def test_round_outputs_move_and_come_back(runs):
    runs.run(runs.mask(), "output")
    layout = plan_layout(runs.root / "run-mask.nc", output=runs.root / "output")
    before = tree_digest(layout.output)
    move_contents(layout.output, layout.round_dir(1) / "rerun")
    assert list(layout.output.iterdir()) == [] and tree_digest(layout.round_dir(1) / "rerun") == before
    replace_contents(layout.output, source=layout.round_dir(1) / "rerun")
    assert tree_digest(layout.output) == before
    assert layout.next_round() == 2


def test_layout_refuses_missing_mask_and_a_work_folder_inside_the_output(runs):
    with pytest.raises(UsageError, match="Run-mask not found"):
        plan_layout(runs.root / "nope.nc", output=runs.root / "output")
    with pytest.raises(UsageError, match="must be outside the output folder"):
        plan_layout(runs.mask(), output=runs.root / "output", work=runs.root / "output" / "w")
