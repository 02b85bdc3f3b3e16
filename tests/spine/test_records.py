"""Resume records are data: a hostile record never runs code, and its item simply runs again.

Also: an input that cannot be read is that item's own error, never the batch's.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shlex
import sys
from pathlib import Path

import pytest

from salvo.extract import extract_worker, plan_items
from salvo.fingerprint import UNHASHABLE_PREFIX, item_key
from salvo.index import decode_record, encode_record
from salvo.items import Item, Worker
from salvo.options import RunOptions
from salvo.outcome import ItemResult, Status
from salvo.samples.netcdf import write_series_file
from salvo.spine.records import read_record, record_store, write_record
from tests.deploy.conftest import MARKER_WORKER
from tests.helpers import markers


class _RunsShell:
    """Unpickling this runs a shell command (what a hostile record would carry)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (self.command,))


def hostile_payload(marker: Path) -> bytes:
    return pickle.dumps(_RunsShell(f"touch {shlex.quote(str(marker))}"))


def prefect_pickle_record(payload: bytes, key: str) -> bytes:
    """A Prefect result record that names the pickle serializer (what Prefect's reader would unpickle)."""
    meta = {
        "storage_key": key,
        "expiration": None,
        "prefect_version": "3.8.8",
        "storage_block_id": None,
        "serializer": {"type": "pickle", "picklelib": "pickle", "picklelib_version": None},
    }
    return json.dumps({"metadata": meta, "result": base64.b64encode(payload).decode()}).encode()


@pytest.mark.pure
def test_the_hostile_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    # The control: what the reader below must never do to these bytes.
    marker = tmp_path / "control"
    pickle.loads(hostile_payload(marker))  # noqa: S301 - on purpose
    assert marker.exists()


@pytest.mark.pure
def test_records_are_read_as_plain_json_only(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = hostile_payload(marker)
    good = {"item_id": "a", "status": "success", "outputs": []}
    assert decode_record(encode_record("k", good)) == good
    legacy = {"metadata": {"serializer": {"type": "json", "object_decoder": "os.system"}}, "result": json.dumps(good)}
    assert decode_record(json.dumps(legacy).encode()) == good  # earlier Salvo records, read as data
    for bad in (
        payload,
        prefect_pickle_record(payload, "k"),
        b'{"format": "salvo-record", "res',
        b"",
        b"[1, 2]",
        json.dumps({"format": "salvo-record", "result": {"status": 1}}).encode(),
    ):
        assert decode_record(bad) is None
    assert not marker.exists()


@pytest.mark.pure
def test_unreadable_input_gets_a_fresh_key_that_is_never_recorded(tmp_path: Path) -> None:
    # /proc/self/mem is a regular file that cannot be read from offset 0 (EIO), even by root.
    worker = Worker("python", "tests.spine.workers:write_output")
    item = Item("m", inputs=("/proc/self/mem",))
    k1, k2 = item_key(item, worker=worker), item_key(item, worker=worker)
    assert k1.startswith(UNHASHABLE_PREFIX) and k2.startswith(UNHASHABLE_PREFIX) and k1 != k2
    readable = Item("r", inputs=(str(write_series_file(tmp_path / "r.nc", steps=2)),))
    assert item_key(readable, worker=worker) == item_key(readable, worker=worker)
    store = record_store(tmp_path / "state")
    assert write_record(store, k1, ItemResult("m", Status.SUCCESS)) is False
    assert read_record(store, k1) is None
    assert not (tmp_path / "state" / "records" / k1).exists()


def _put(location, rel: str, data: bytes, s3_fs) -> None:  # noqa: ANN001
    if location.kind == "local":
        path = Path(location.url) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        s3_fs.pipe(location.url.removeprefix("s3://") + "/" + rel, data)


def _get(location, rel: str, s3_fs) -> bytes:  # noqa: ANN001
    if location.kind == "local":
        return (Path(location.url) / rel).read_bytes()
    return s3_fs.cat(location.url.removeprefix("s3://") + "/" + rel)


def test_a_hostile_record_is_never_run_and_its_item_runs_again(
    storage_location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request
) -> None:  # noqa: ANN001
    from flows.netcdf_extract import netcdf_extract

    s3_fs = None
    if storage_location.kind == "s3":
        monkeypatch.setenv("AWS_ENDPOINT_URL", storage_location.endpoint_url)
        s3_fs = request.getfixturevalue("s3_fs")
    files = [write_series_file(tmp_path / "in" / f"h{i}.nc", steps=3, seed=i, ny=2, nx=3) for i in range(3)]
    marks, pwned = tmp_path / "markers", tmp_path / "PWNED"
    command = f"{sys.executable} {MARKER_WORKER} {{input}} {{output_dir}} {marks}"
    params = {
        "directory": str(tmp_path / "in"),
        "state": storage_location.url,
        "run": RunOptions(retries=0),
        "worker_command": command,
    }
    items = plan_items(files, directory=tmp_path / "in", worker_command=command)
    keys = [item_key(it, worker=extract_worker(command), settings={"pipeline": "netcdf-extract"}) for it in items]
    payload = hostile_payload(pwned)
    # Two hostile records where the first two items' records belong: a raw pickle, and a
    # Prefect result record whose metadata names the pickle serializer.
    _put(storage_location, f"records/{keys[0]}", payload, s3_fs)
    _put(storage_location, f"records/{keys[1]}", prefect_pickle_record(payload, keys[1]), s3_fs)

    first = netcdf_extract(**params)

    assert not pwned.exists(), "a record was unpickled: code ran from the state location"
    assert first["summary"]["failed"] == 0
    assert [i["cached"] for i in first["items"]] == [False, False, False]  # the hostile ones re-ran
    assert [len(markers(marks, f.stem)) for f in files] == [1, 1, 1]
    for key in keys:  # replaced by real, data-only records
        assert decode_record(_get(storage_location, f"records/{key}", s3_fs))["status"] == "success"

    # A record replaced after it was indexed is not trusted on the index's word either.
    _put(storage_location, f"records/{keys[2]}", prefect_pickle_record(payload, keys[2]), s3_fs)
    second = netcdf_extract(**params)
    assert not pwned.exists()
    assert [i["cached"] for i in second["items"]] == [True, True, False]
    assert [len(markers(marks, f.stem)) for f in files] == [1, 1, 2]
