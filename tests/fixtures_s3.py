"""Pytest fixtures for a real S3 endpoint (moto's threaded server), shared by every area.

Loaded by ``tests/conftest.py`` through ``pytest_plugins = ["tests.fixtures_s3"]``.

Fixtures
--------
``moto_endpoint`` (session)
    Starts ``moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)`` once per session on
    a free port, polls until it answers (no fixed sleeps), yields ``http://127.0.0.1:<port>`` and
    stops it at the end. Use ``s3_endpoint`` in tests instead: it also resets state.
``aws_credentials``
    Fake credentials and region in the environment (through ``monkeypatch``, never at import
    time), so botocore never looks for real ones. Child processes inherit them.
``s3_endpoint``
    The endpoint URL, after resetting every moto backend (``POST /moto-api/reset``) and clearing
    ``S3FileSystem``'s instance cache, so each test starts from an empty S3.
``s3_bucket``
    A fresh, empty bucket's name on that endpoint.
``s3_url``
    ``s3://<fresh bucket>/<prefix>``: the URL to give to ``blocks.storage.resolve_storage`` or
    ``salvo.storage.open_storage(url, endpoint_url=s3_endpoint)``.
``storage_location`` (parametrised ``local`` / ``s3``)
    A ``StorageLocation(kind, url, endpoint_url)``: a temporary local folder, then a fresh S3
    prefix. A test (or a whole class) that uses it runs once per backend, the way xarray runs
    one round-trip suite against every backend.
``s3_fs``
    An ``s3fs.S3FileSystem`` pointed at the endpoint, to inspect objects directly.
``s3_proxy``
    A ``TcpProxy`` in front of the moto endpoint (``proxy.url``), for tests that lose S3 in the
    middle of a run: ``proxy.cut()`` closes its listener and every open connection at once, so
    later connections are refused, while the test still reaches moto directly through
    ``s3_endpoint``. ``TcpProxy`` can also be used on its own.

Example::

    class TestRoundTrip:
        def test_write_then_read(self, storage_location):
            target = open_storage(storage_location.url, endpoint_url=storage_location.endpoint_url)
            target.write_bytes("a.txt", b"x")
            assert target.read_bytes("a.txt") == b"x"
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest

READY_TIMEOUT_S = 30.0


class StorageLocation(NamedTuple):
    """Where a storage test writes: ``kind`` is ``local`` or ``s3``."""

    kind: str
    url: str
    endpoint_url: str | None


def _wait_until_ready(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server at {url} did not answer within {READY_TIMEOUT_S}s")
            time.sleep(delay)  # polling back-off, not a fixed wait
            delay = min(delay * 2, 0.2)


def start_moto_server() -> tuple[object, str]:
    """Start a threaded moto server on a free port; return it and its URL once it answers."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    _wait_until_ready(url)
    return server, url


class TcpProxy:
    """A threaded TCP forwarder on 127.0.0.1 that a test can cut, as if the server vanished.

    Every accepted connection is forwarded to ``target`` (``host, port``) by two pump threads.
    ``cut()`` closes the listener and every connection: clients see their connections reset and
    new ones refused.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @classmethod
    def to_url(cls, url: str) -> "TcpProxy":
        """A proxy to the ``http://host:port`` server at ``url``."""
        parts = urlsplit(url)
        return cls((parts.hostname or "127.0.0.1", int(parts.port or 80)))

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: where clients should connect."""
        return f"http://127.0.0.1:{self.port}"

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._cut:
                return False
            self._sockets.update(socks)
            return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            if not self._track(client, upstream):
                client.close()
                upstream.close()
                return
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Close the listener and every forwarded connection (idempotent)."""
        with self._lock:
            self._cut = True
            socks, self._sockets = list(self._sockets), set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of one moto server for the whole session (state is NOT reset: see s3_endpoint)."""
    server, url = start_moto_server()
    yield url
    server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and region for this test (inherited by child processes)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_endpoint(moto_endpoint: str, aws_credentials: None) -> Iterator[str]:
    """The moto endpoint URL, with every backend reset and s3fs's instance cache cleared."""
    from s3fs import S3FileSystem

    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass
    S3FileSystem.clear_instance_cache()
    yield moto_endpoint
    S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3_fs(s3_endpoint: str):  # noqa: ANN201 - s3fs is imported lazily
    """An ``S3FileSystem`` talking to the moto endpoint."""
    from s3fs import S3FileSystem

    return S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[TcpProxy]:
    """A ``TcpProxy`` to the moto endpoint, cut at the end of the test if the test did not."""
    proxy = TcpProxy.to_url(s3_endpoint)
    yield proxy
    proxy.cut()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh empty bucket on the moto endpoint."""
    name = f"salvo-test-{uuid.uuid4().hex[:10]}"
    # A plain CreateBucket request: cheaper than building an S3 client just for this.
    req = urllib.request.Request(f"{s3_endpoint}/{name}", method="PUT", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass
    return name


@pytest.fixture
def s3_url(s3_bucket: str) -> str:
    """``s3://<fresh bucket>/<prefix>`` on the moto endpoint."""
    return f"s3://{s3_bucket}/data-{uuid.uuid4().hex[:6]}"


@pytest.fixture(params=["local", "s3"])
def storage_location(request: pytest.FixtureRequest, tmp_path) -> StorageLocation:  # noqa: ANN001
    """A local temporary folder, then a fresh S3 prefix: the test runs on both backends."""
    if request.param == "local":
        return StorageLocation("local", str(tmp_path / "storage"), None)
    endpoint = request.getfixturevalue("s3_endpoint")
    return StorageLocation("s3", request.getfixturevalue("s3_url"), endpoint)
