"""StorageTarget: the same guarantees on a local folder and on S3 (moto), one class for both."""

from __future__ import annotations

import pytest

from salvo.errors import UsageError
from salvo.storage import StorageError, StorageTarget, open_storage


@pytest.fixture
def target(storage_location) -> StorageTarget:
    return open_storage(storage_location.url, endpoint_url=storage_location.endpoint_url)


class TestStorageTarget:
    def test_write_then_read_round_trips(self, target):
        target.write_bytes("a/b.bin", b"hello")
        assert target.read_bytes("a/b.bin") == b"hello"
        assert target.exists("a/b.bin")
        assert target.list("a") == ["b.bin"]

    def test_write_replaces_previous_content(self, target):
        target.write_bytes("x.txt", b"one")
        target.write_bytes("x.txt", b"two")
        assert target.read_bytes("x.txt") == b"two"

    def test_create_exclusive_wins_once(self, target):
        assert target.create_exclusive("claim/run001.json", b"first") is True
        assert target.create_exclusive("claim/run001.json", b"second") is False
        assert target.read_bytes("claim/run001.json") == b"first"

    def test_failed_streaming_write_leaves_nothing(self, target):
        target.write_bytes("keep.bin", b"old")
        with pytest.raises(RuntimeError, match="writer broke"):
            with target.open_write("keep.bin") as fh:
                fh.write(b"partial")
                raise RuntimeError("writer broke")
        with pytest.raises(RuntimeError):
            with target.open_write("new.bin") as fh:
                fh.write(b"partial")
                raise RuntimeError("writer broke")
        assert target.read_bytes("keep.bin") == b"old"
        assert not target.exists("new.bin")
        assert target.list("") == ["keep.bin"]

    def test_missing_file_raises_file_not_found(self, target):
        with pytest.raises(FileNotFoundError):
            target.read_bytes("absent.bin")
        assert target.list("absent-folder") == []

    def test_child_shares_root_below(self, target):
        child = target.child("exp")
        child.write_bytes("f.txt", b"1")
        assert target.read_bytes("exp/f.txt") == b"1"
        assert child.uri("f.txt").endswith("/exp/f.txt")

    def test_path_refuses_escaping_the_root(self, target):
        with pytest.raises(UsageError, match="inside"):
            target.path("../other")


def test_unsupported_scheme_is_a_usage_error():
    with pytest.raises(UsageError, match="unsupported storage URL"):
        open_storage("gs://bucket/x")


def test_s3_errors_never_show_the_secret(s3_endpoint):
    secret = "sEcReT-value-123456"
    target = open_storage("s3://no-such-bucket-xyz/p", endpoint_url=s3_endpoint, key="AKIAEXAMPLEKEY", secret=secret)
    with pytest.raises((StorageError, FileNotFoundError)) as info:
        target.write_bytes("f.bin", b"x")
    assert secret not in str(info.value)
    assert secret not in repr(target)
    assert "AKIAEXAMPLEKEY" not in repr(target)


def test_unreachable_s3_fails_with_storage_error(aws_credentials):
    fast = {"retries": 1, "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    target = open_storage("s3://bucket/p", endpoint_url="http://127.0.0.1:9", s3_options=fast)
    with pytest.raises(StorageError, match="s3://bucket/p"):
        target.write_bytes("f.bin", b"x")
