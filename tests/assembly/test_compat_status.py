"""The seed API's ``get_assembly_status`` answers as the seed's does: a status, or ``not_found``
for any id the ledger does not hold, even one that is not an assembly id at all (issue 22.10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo.storage import open_storage
from salvo_compat.batch_framework import create_batch_executor

pytestmark = pytest.mark.pure

KNOWN = "20240101_120000_run001"


@pytest.fixture
def executor(tmp_path: Path):
    """A seed-era experiment folder on a local storage, its ledger holding one completed and one started run."""
    exp = open_storage(tmp_path / "store").child("01_v1_batch-old")
    exp.write_bytes("assembly_list.csv", b"assembly_id,timestamp,status\n"
                                         b"20240101_120000_run001,2024-01-01 12:00:00,completed\n"
                                         b"20240102_120000_run002,2024-01-02 12:00:00,started\n")
    return create_batch_executor("batch-old", "01", "v1", storage_backend="local", storage=str(tmp_path / "store"))


def test_known_ids_give_their_status(executor) -> None:
    assert executor.get_assembly_status(KNOWN) == "completed"
    assert executor.get_assembly_status("20240102_120000_run002") == "started"


@pytest.mark.parametrize("assembly_id", ["x", "", "20240101_120000_run1", " 20240101_120000_run001",
                                         "20241301_120000_run001", "20000101_000000_run001", "../../etc"])
def test_any_other_id_is_not_found_as_in_the_seed(executor, assembly_id: str) -> None:
    # The seed looks the id up as written in its ledger: whatever it does not hold is 'not_found', never an error.
    assert executor.get_assembly_status(assembly_id) == "not_found"


def test_an_experiment_with_no_ledger_yet_is_not_found(tmp_path: Path) -> None:
    fresh = create_batch_executor("batch-new", "02", "v1", storage_backend="local", storage=str(tmp_path / "s"))
    assert fresh.get_assembly_status(KNOWN) == "not_found"
    assert fresh.get_assembly_status("x") == "not_found"
