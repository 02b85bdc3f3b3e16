"""The SalvoStorage block: Prefect result storage on disk and on S3, names, and secrets."""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from blocks import SalvoStorage, ensure_saved, register_blocks, resolve_storage, save_storage_block
from salvo.errors import UsageError


def _block(loc) -> SalvoStorage:
    return SalvoStorage(url=loc.url, endpoint_url=loc.endpoint_url)


class TestResultStorage:
    def test_second_flow_run_is_cached_from_the_block(self, storage_location):
        block = ensure_saved(_block(storage_location))
        calls: list[int] = []
        token = uuid.uuid4().hex  # a fresh cache key for this test run

        @task(persist_result=True, result_storage=block, cache_policy=INPUTS + TASK_SOURCE)
        def square(x: int, token: str) -> int:
            calls.append(x)
            return x * x

        @flow
        def twice(token: str):
            return square(4, token, return_state=True)

        first = twice(token)
        second = twice(token)
        assert first.result() == 16 and second.result() == 16
        assert first.name == "Completed"
        assert second.name == "Cached"
        assert calls == [4]  # the body ran once; the second run read the record from storage
        assert block.target.list("")  # the record lives on this storage

    def test_write_then_read_path(self, storage_location):
        block = _block(storage_location)
        full = block.write_path("k/record.json", b"{}", _sync=True)
        assert block.read_path("k/record.json", _sync=True) == b"{}"
        assert block.read_path(full, _sync=True) == b"{}"  # Prefect re-reads by full path

    def test_child_is_below_the_root(self, storage_location):
        block = _block(storage_location)
        block.child("exp/records").write_path("a", b"1", _sync=True)
        assert block.target.read_bytes("exp/records/a") == b"1"


class TestNames:
    def test_register_twice_and_save_twice_are_harmless(self, tmp_path):
        assert register_blocks() == register_blocks() == ["salvo-storage"]
        save_storage_block("assembly-twice", str(tmp_path / "a"))
        save_storage_block("assembly-twice", str(tmp_path / "b"))
        assert resolve_storage("assembly-twice").url == str((tmp_path / "b").resolve())

    def test_resolve_url_path_and_name(self, tmp_path, s3_url, s3_endpoint):
        assert resolve_storage(str(tmp_path)).root == str(tmp_path.resolve())
        assert resolve_storage(tmp_path).root == str(tmp_path.resolve())
        assert resolve_storage(s3_url).url == s3_url
        save_storage_block("assembly-s3", s3_url, endpoint_url=s3_endpoint)
        loaded = resolve_storage("assembly-s3")
        assert (loaded.url, loaded.endpoint_url) == (s3_url, s3_endpoint)

    def test_unknown_name_is_a_one_line_usage_error(self):
        with pytest.raises(UsageError, match="no storage block named 'nope-123'"):
            resolve_storage("nope-123")

    @pytest.mark.parametrize("url", ["gs://b/x", "s3://key:secret@bucket/x"])
    def test_bad_urls_are_usage_errors(self, url):
        with pytest.raises(UsageError, match="bad storage"):
            save_storage_block("bad-url", url)


class TestSecrets:
    KEY, SECRET = "AKIATESTKEY0001", "very-secret-value-42"

    def test_saved_block_masks_credentials(self, s3_url, s3_endpoint):
        block = save_storage_block(
            "assembly-secret",
            s3_url,
            endpoint_url=s3_endpoint,
            aws_access_key_id=self.KEY,
            aws_secret_access_key=self.SECRET,
        )
        assert self.SECRET not in repr(block) and self.KEY not in repr(block)
        assert self.SECRET not in str(block.model_dump())
        loaded = SalvoStorage.load("assembly-secret", _sync=True)
        assert self.SECRET not in repr(loaded)
        assert loaded.aws_secret_access_key.get_secret_value() == self.SECRET

    @pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG], ids=["info", "debug"])
    def test_failures_never_show_credentials(self, level, caplog, capsys, aws_credentials, monkeypatch):
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # fail fast: nothing listens there
        block = SalvoStorage(
            url="s3://bucket/x",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id=self.KEY,
            aws_secret_access_key=self.SECRET,
        )
        block.target.fs.retries = 1

        @flow
        def write_something() -> None:
            block.write_path("a", b"1", _sync=True)

        caplog.set_level(level)
        state = write_something(return_state=True)
        assert state.is_failed()
        err = state.result(raise_on_failure=False)
        seen = " ".join([str(err), repr(err), state.message or "", caplog.text, *capsys.readouterr()])
        assert "s3://bucket/x" in seen  # the error names the storage...
        assert self.SECRET not in seen  # ...never its secret, at any log level
        if level >= logging.INFO:
            # botocore's own DEBUG records print the access key id (never the secret), as AWS
            # tools always do; at Prefect's default levels it never appears either.
            assert self.KEY not in seen
