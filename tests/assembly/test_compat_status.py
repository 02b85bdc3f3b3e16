"""The seed API's ``get_assembly_status`` answers as the seed's does: a status, or ``not_found``
for any id the ledger does not hold, even one that is not an assembly id at all (issue 22.10);
and its ``$SAVE_RESULT_PATH`` is read by the one location parser (issue 22.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo.errors import UsageError
from salvo.storage import open_storage
from salvo_compat.batch_framework import create_batch_executor, storage_reference

pytestmark = pytest.mark.pure

KNOWN = "20240101_120000_run001"


@pytest.fixture
def executor(tmp_path: Path):
    """A seed-era experiment folder on a local storage, its ledger holding one completed and one started run."""
    exp = open_storage(tmp_path / "store").child("01_v1_batch-old")
    exp.write_bytes(
        "assembly_list.csv",
        b"assembly_id,timestamp,status\n"
        b"20240101_120000_run001,2024-01-01 12:00:00,completed\n"
        b"20240102_120000_run002,2024-01-02 12:00:00,started\n",
    )
    return create_batch_executor("batch-old", "01", "v1", storage_backend="local", storage=str(tmp_path / "store"))


def test_known_ids_give_their_status(executor) -> None:
    assert executor.get_assembly_status(KNOWN) == "completed"
    assert executor.get_assembly_status("20240102_120000_run002") == "started"


@pytest.mark.parametrize(
    "assembly_id",
    [
        "x",
        "",
        "20240101_120000_run1",
        " 20240101_120000_run001",
        "20241301_120000_run001",
        "20000101_000000_run001",
        "../../etc",
    ],
)
def test_any_other_id_is_not_found_as_in_the_seed(executor, assembly_id: str) -> None:
    # The seed looks the id up as written in its ledger: whatever it does not hold is 'not_found', never an error.
    assert executor.get_assembly_status(assembly_id) == "not_found"


def test_an_experiment_with_no_ledger_yet_is_not_found(tmp_path: Path) -> None:
    fresh = create_batch_executor("batch-new", "02", "v1", storage_backend="local", storage=str(tmp_path / "s"))
    assert fresh.get_assembly_status(KNOWN) == "not_found"
    assert fresh.get_assembly_status("x") == "not_found"


@pytest.mark.parametrize(
    ("value", "lands"),
    [
        ("file:{tmp}/seed-results", "{tmp}/seed-results"),
        ("file://localhost{tmp}/r2", "{tmp}/r2"),
        ("{tmp}/r3", "{tmp}/r3"),
    ],
)
def test_a_local_save_result_path_is_read_as_a_location(
    value: str, lands: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$SAVE_RESULT_PATH=file:/x once became ./file:/x; it names /x, like every other location."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SALVO_LOCAL_STORAGE", raising=False)
    monkeypatch.setenv("SAVE_RESULT_PATH", value.format(tmp=tmp_path))
    executor = create_batch_executor("batch-old", "01", "v1", storage_backend="local")
    assert executor.storage.url == lands.format(tmp=tmp_path)
    assert not (tmp_path / "file:").exists()


@pytest.mark.parametrize("value", ["s3://lab/x", "s3//lab/x", "file:rel"])
def test_a_local_backend_refuses_a_save_result_path_that_is_no_folder(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SALVO_LOCAL_STORAGE", raising=False)
    monkeypatch.setenv("SAVE_RESULT_PATH", value)
    with pytest.raises(UsageError, match=r"\$SAVE_RESULT_PATH"):
        create_batch_executor("batch-old", "01", "v1", storage_backend="local")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("value", "url"), [("S3://lab/x", "s3://lab/x"), ("lab/x", "s3://lab/x")])
def test_an_s3_save_result_path_is_read_as_the_seed_wrote_it(
    value: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SALVO_S3_STORAGE", raising=False)
    monkeypatch.setenv("SAVE_RESULT_PATH", value)
    assert storage_reference("s3") == url
    monkeypatch.setenv("SAVE_RESULT_PATH", "s3//lab/x")
    with pytest.raises(UsageError, match="misspelled"):
        storage_reference("s3")
