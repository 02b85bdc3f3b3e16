"""Storage as a value: a local folder or an S3 prefix behind one fsspec interface.

``StorageTarget(fs, root)`` is built from a URL (``/data/x``, ``file:///data/x`` or
``s3://bucket/prefix``) and gives the few operations Salvo needs with the same guarantees on
both backends:

- ``write_bytes`` / ``open_write``: a reader never sees half an object. Locally the data goes to
  a temporary sibling that is renamed into place; on S3 an object only appears once its upload
  has completed, so writing the final key directly is already atomic.
- ``create_exclusive``: create an object only if it does not exist, atomically. Locally a
  finished temporary file is hard-linked to the final name (``link`` fails if it exists); on S3
  the put carries ``If-None-Match: *`` (a conditional write), so two writers never both win.

Credentials are held by the fsspec filesystem only; ``repr`` and error messages show the URL.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import fsspec

from salvo.errors import UsageError
from salvo.fsutil import TMP_PREFIX, atomic_file
from salvo.validate import redact

#: The S3 client's defaults: a lost endpoint is reported in seconds, not minutes. botocore's
#: "standard" retry mode with 3 attempts still rides out a throttled or briefly failing request;
#: ``$AWS_MAX_ATTEMPTS`` (and ``s3_options``) override them.
S3_DEFAULTS: dict[str, Any] = {
    "retries": 2,  # s3fs's own retries of timeouts and broken responses
    "config_kwargs": {"connect_timeout": 5, "read_timeout": 60,
                      "retries": {"max_attempts": 3, "mode": "standard"}},
}


class StorageError(RuntimeError):
    """Storage could not be reached or refused an operation (message never holds credentials)."""


class StorageLost(StorageError):
    """The storage stopped answering in the middle of a run: stop, keep what finished."""


def check_location(text: str, what: str = "storage") -> str:
    """Refuse a URL that embeds credentials (``s3://KEY:SECRET@bucket``) without echoing them.

    Returns ``text`` unchanged when it holds none. Credentials belong in the AWS chain or a block.
    """
    text = str(text)
    netloc = urlsplit(text).netloc if "://" in text else ""
    if "@" in netloc:
        raise UsageError(f"bad {what} {redact(text)!r}: it embeds credentials; never put them in a "
                         "URL: use the standard AWS chain (environment, ~/.aws) or a storage block "
                         "(salvo blocks create s3 ... --credentials-from-env)")
    return text


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class StorageTarget:
    """A folder on some fsspec filesystem: ``fs`` plus a ``root`` in that filesystem's terms."""

    fs: Any = field(repr=False, compare=False)
    root: str
    url: str
    endpoint_url: str | None = None
    _secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def is_local(self) -> bool:
        """Whether the root is a folder on this machine's disk."""
        return "file" in _protocols(self.fs)

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` under the root (``rel`` uses ``/``)."""
        rel = str(rel).strip("/")
        if not rel:
            return self.root
        if ".." in rel.split("/"):
            raise UsageError(f"storage path {rel!r} must stay inside {self.url}")
        return f"{self.root.rstrip('/')}/{rel}"

    def uri(self, rel: str = "") -> str:
        """A URL a person can paste (``s3://bucket/prefix/rel`` or a local path)."""
        full = self.path(rel)
        return full if self.is_local else f"s3://{full}"

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists."""
        with self._errors(rel):
            return bool(self.fs.exists(self.path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        """The whole content of ``rel``; ``FileNotFoundError`` if absent."""
        with self._errors(rel):
            return self.fs.cat_file(self.path(rel))

    def list(self, rel: str = "") -> list[str]:
        """Names (not paths) of the entries directly under ``rel``; empty if it is absent."""
        with self._errors(rel):
            try:
                entries = self.fs.ls(self.path(rel), detail=False, refresh=True)
            except FileNotFoundError:
                return []
        names = [posixpath.basename(e.rstrip("/")) for e in entries]
        return sorted(n for n in names if n and not n.startswith(TMP_PREFIX))

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write ``data`` to ``rel`` atomically, replacing what was there; return the path."""
        with self.open_write(rel) as fh:
            fh.write(data)
        return self.path(rel)

    @contextlib.contextmanager
    def open_write(self, rel: str) -> Iterator[IO[bytes]]:
        """A binary file to stream into; it appears at ``rel`` only if the block finishes."""
        final = self.path(rel)
        with self._errors(rel):
            if not self.is_local:
                fh = self.fs.open(final, "wb")
                try:
                    yield fh
                except BaseException:
                    with contextlib.suppress(Exception):
                        fh.discard()  # abort the multipart upload: nothing appears
                    fh.closed = True  # so that garbage collection never uploads the half
                    raise
                fh.close()
                return
            with atomic_file(final) as fh:
                yield fh

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` only if it does not exist; ``False`` if it already did."""
        final = self.path(rel)
        with self._errors(rel):
            if not self.is_local:
                try:
                    self.fs.pipe_file(final, data, mode="create")
                except FileExistsError:
                    return False
                return True
            try:
                with atomic_file(final, exclusive=True) as fh:
                    fh.write(data)
            except FileExistsError:
                return False
            return True

    def open_read(self, rel: str) -> IO[bytes]:
        """A binary file object for reading ``rel`` (the caller closes it)."""
        with self._errors(rel):
            return self.fs.open(self.path(rel), "rb")

    def remove(self, rel: str) -> None:
        """Delete ``rel`` if it exists."""
        with self._errors(rel), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(rel))

    def remove_tree(self, rel: str) -> None:
        """Delete the folder ``rel`` and everything under it, if it exists."""
        if not str(rel).strip("/"):
            raise UsageError("refusing to remove the storage root")
        with self._errors(rel), contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(rel), recursive=True)

    def child(self, rel: str) -> "StorageTarget":
        """The same storage rooted at ``rel`` (same filesystem and credentials)."""
        sub = rel.strip("/")
        url = self.url.rstrip("/") + "/" + sub
        return StorageTarget(self.fs, self.path(sub), url, self.endpoint_url, self._secrets)

    @contextlib.contextmanager
    def _errors(self, rel: str) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, FileExistsError, UsageError):
            raise
        except PermissionError as exc:
            msg = _scrub(str(exc), self._secrets)
            raise StorageError(f"storage {self.url}: permission denied on {rel!r}: {msg}") from None
        except Exception as exc:  # network, DNS, refused connections, S3 errors
            msg = _scrub(f"{type(exc).__name__}: {exc}", self._secrets)
            raise StorageError(f"storage {self.url} failed on {rel!r}: {msg}") from None


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def open_storage(
    url: str,
    *,
    endpoint_url: str | None = None,
    key: str | None = None,
    secret: str | None = None,
    s3_options: dict[str, Any] | None = None,
) -> StorageTarget:
    """A ``StorageTarget`` for a local path or ``s3://bucket/prefix`` URL.

    ``s3_options`` are extra ``s3fs.S3FileSystem`` arguments (e.g. ``config_kwargs``) and
    ``retries`` (s3fs's own); they override ``S3_DEFAULTS``.
    """
    url = check_location(str(url).strip(), "storage URL")
    if not url:
        raise UsageError("storage URL is empty")
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        local = url[len("file://") :] if scheme == "file" else url
        root = str(Path(local).expanduser().resolve())
        _check_local_root(Path(root))
        fs = fsspec.filesystem("file", auto_mkdir=True)
        return StorageTarget(fs, root, root)
    if scheme not in ("s3", "s3a"):
        raise UsageError(f"unsupported storage URL {redact(url)!r}: use a local path or s3://bucket/prefix")
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket:
        raise UsageError(f"storage URL {url!r} has no bucket: use s3://bucket/prefix")
    import s3fs  # imported here: local-only users need not pay for it

    # No listings cache: other processes add ledger objects, and a stale listing would hide them.
    defaults = {**S3_DEFAULTS, "config_kwargs": dict(S3_DEFAULTS["config_kwargs"])}
    if os.environ.get("AWS_MAX_ATTEMPTS"):
        defaults["config_kwargs"].pop("retries")  # the user's own setting wins
    kwargs: dict[str, Any] = {"use_listings_cache": False, **defaults, **(s3_options or {})}
    if endpoint_url:
        kwargs["client_kwargs"] = {"endpoint_url": endpoint_url}
    if key or secret:
        kwargs.update(key=key, secret=secret)
    # fsspec caches instances by these arguments, so targets never share another's credentials.
    retries = kwargs.pop("retries", None)
    fs = s3fs.S3FileSystem(**kwargs)
    if retries is not None:
        fs.retries = int(retries)  # a class attribute in s3fs, not a constructor argument
    root = f"{bucket}/{prefix}" if prefix else bucket
    clean = f"s3://{root}"
    return StorageTarget(fs, root, clean, endpoint_url, tuple(s for s in (key, secret) if s))


def _check_local_root(root: Path) -> None:
    """A local storage must be a folder, or a path whose nearest existing parent is a folder."""
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == root else f"is under a file ({probe})"
        raise UsageError(f"storage {root} {where}, not a folder: give a folder or s3://bucket/prefix")


def new_token() -> str:
    """A short random token for unique object names."""
    return uuid.uuid4().hex[:12]
