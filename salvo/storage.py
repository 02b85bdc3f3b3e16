"""Storage as a value: a local folder or an S3 prefix behind one fsspec interface.

``parse_location`` is the one place that decides whether a string is a local path, a ``file:`` or
``s3://`` URL or a saved block's name (strictly: a misspelled URL is refused, never taken for a
relative folder). ``StorageTarget(fs, root)`` is built from such a location and gives the few
operations Salvo needs with the same guarantees on both backends:

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
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import fsspec

from salvo.errors import UsageError
from salvo.fsutil import TMP_PREFIX, atomic_file
from salvo.validate import redact

#: The S3 client's defaults: a lost endpoint is reported in seconds, not minutes. botocore's
#: "standard" retry mode with 3 attempts still rides out a throttled or briefly failing request;
#: ``$AWS_MAX_ATTEMPTS`` (and ``s3_options``) override them.
S3_DEFAULTS: dict[str, Any] = {
    "retries": 2,  # s3fs's own retries of timeouts and broken responses
    "config_kwargs": {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3, "mode": "standard"}},
}


class StorageError(RuntimeError):
    """Storage could not be reached or refused an operation (message never holds credentials)."""


class StorageLost(StorageError):
    """The storage stopped answering in the middle of a run: stop, keep what finished.

    ``why``: which storage does not answer and why, without what to do about it (a pipeline that
    words its own advice uses it; default: the message).
    """

    def __init__(self, message: str, why: str | None = None) -> None:
        super().__init__(message)
        self.why = why or message


#: The spellings a storage location may take, named in every refusal.
ACCEPTED_FORMS = (
    "a folder (/abs/dir, rel/dir, ./dir, ~/dir), file:/abs/dir, file:///abs/dir, "
    "file://localhost/abs/dir, s3://bucket/prefix, or a saved storage block's name"
)
#: Schemes Salvo reads (any case): the local disk and S3 (``s3a`` is Hadoop's spelling of ``s3``).
LOCAL_SCHEMES, S3_SCHEMES = ("file",), ("s3", "s3a")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<rest>.*)$", re.DOTALL)
_LOOKALIKE = re.compile(r"^(?P<scheme>s3a?|file)//", re.IGNORECASE)
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Location:
    """What a location string names: a local folder, an S3 prefix, or a saved storage block.

    ``path`` is the absolute local path (``~`` expanded, ``file:`` URLs percent-decoded), ``bucket`` and
    ``key`` the S3 bucket and prefix (no slashes around it), ``name`` the block's name.
    """

    kind: str  # "local", "s3" or "block"
    text: str
    path: str = ""
    bucket: str = ""
    key: str = ""
    scheme: str = ""

    @property
    def url(self) -> str:
        """The canonical spelling: the absolute path, ``s3://bucket/key``, or the block's name."""
        if self.kind == "local":
            return self.path
        if self.kind == "s3":
            return f"{self.scheme}://{self.bucket}" + (f"/{self.key}" if self.key else "")
        return self.text

    @property
    def name(self) -> str:
        """The storage block's name (for ``kind == "block"``)."""
        return self.text if self.kind == "block" else ""


def _refuse(text: str, what: str, why: str) -> UsageError:
    shown = re.sub(r"[^/@]*@", "***@", redact(text))  # whatever stands before an '@' may be a secret
    return UsageError(f"bad {what} {shown!r}: {why}; accepted: {ACCEPTED_FORMS}")


def parse_location(text: str | os.PathLike[str], what: str = "storage", *, block_names: bool = True) -> Location:
    """The one answer to "is this a path, a URL or a block name?", for every flag and setting.

    Local paths (absolute, relative, ``~``), ``file:`` URLs as RFC 8089 spells them (``file:/abs``,
    ``file:///abs``, ``file://localhost/abs``; percent-decoded), ``s3://bucket/prefix`` (schemes in any
    case) and, when ``block_names``, a bare name (no ``/``, not starting with ``.`` or ``~``) that is a
    saved block's. Everything else is a ``UsageError`` naming ``what`` and the accepted forms: another
    ``file:`` spelling (``file:rel``, ``file://host/x``), a look-alike (``s3//x``, ``s3:/x``, ``s3:x``,
    ``file//x``), another scheme (``gs://``), or credentials in the URL (never echoed).
    Pure: reads no disk (``~`` is expanded from the environment) and asks no server.
    """
    raw = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    stripped = raw.strip()
    if not stripped:
        raise UsageError(f"{what} is empty: give {ACCEPTED_FORMS}")
    if isinstance(text, os.PathLike):  # a Path is always a local path, whatever it spells
        return Location("local", raw, path=os.path.abspath(os.path.expanduser(raw)))
    look = _LOOKALIKE.match(stripped)
    if look:
        scheme = look["scheme"].lower()
        raise _refuse(stripped, what, f"this looks like a {scheme}:// URL with its ':' or '//' misspelled")
    m = _SCHEME.match(stripped)
    if m is None:
        if stripped.startswith(("/", ".", "~")) or "/" in stripped or not block_names:
            return Location("local", stripped, path=os.path.abspath(os.path.expanduser(stripped)))
        return Location("block", stripped)
    scheme = m["scheme"].lower()
    parts = urlsplit(stripped)
    check_no_credentials(stripped, what)
    if parts.query or parts.fragment or "?" in stripped or "#" in stripped:
        raise _refuse(stripped, what, "a location URL has no '?' or '#' (write them %3F and %23)")
    if scheme in LOCAL_SCHEMES:
        return _file_url(stripped, what, parts.netloc, m["rest"], parts.path)
    if scheme in S3_SCHEMES:
        if not m["rest"].startswith("//"):
            raise _refuse(stripped, what, f"an S3 URL is {scheme}://bucket/prefix, with '//'")
        bucket = parts.netloc
        if not bucket:
            raise _refuse(stripped, what, "it names no bucket")
        if not _BUCKET.match(bucket):
            why = (
                "an S3 URL holds no endpoint or port (give it with --endpoint-url or in a block)"
                if ":" in bucket
                else f"{bucket!r} is not a bucket name"
            )
            raise _refuse(stripped, what, why)
        return Location("s3", stripped, bucket=bucket, key=parts.path.strip("/"), scheme=scheme)
    if m["rest"].startswith("//"):
        raise _refuse(stripped, what, f"unsupported storage URL scheme {scheme}://")
    raise _refuse(
        stripped, what, f"{scheme}: is not a location scheme (for a local folder named so, write ./{stripped})"
    )


def location_kind(text: str | os.PathLike[str], what: str = "storage") -> tuple[str, str]:
    """Is ``text`` a path, a URL or a block name: ``("local", absolute folder)``, ``("s3", URL)`` or
    ``("block", name)``, as :func:`parse_location` decides it (refusing what it refuses, naming ``what``).

    The one function every caller asks that question through (records, storage blocks, ``--state``).
    """
    loc = parse_location(text, what)
    return loc.kind, loc.url


def _file_url(text: str, what: str, netloc: str, rest: str, path: str) -> Location:
    """RFC 8089: ``file:/abs``, ``file:///abs`` or ``file://localhost/abs``, percent-decoded."""
    if rest.startswith("//") and netloc.lower() not in ("", "localhost"):
        raise _refuse(
            text,
            what,
            f"file://{netloc}/... names the host {netloc!r}, not a folder here (for "
            f"an absolute path write file:///{netloc}/..., for a relative one the path alone)",
        )
    if not path.startswith("/") or path.startswith("//"):
        raise _refuse(text, what, "a file: URL holds an absolute path (for a relative folder write the path alone)")
    local = unquote(path)
    if "\0" in local:
        raise _refuse(text, what, "it holds a NUL character")
    return Location("local", text, path=os.path.normpath(local), scheme="file")


def check_no_credentials(text: str, what: str) -> str:
    """Refuse a URL that embeds credentials (``s3://KEY:SECRET@bucket``, ``http://u:p@host``) without
    echoing them; ``text`` unchanged otherwise. Credentials belong in the AWS chain or a block."""
    if "@" in (urlsplit(text).netloc if "://" in text else ""):
        raise UsageError(
            f"bad {what} {redact(text)!r}: it embeds credentials; never put them in a "
            "URL: use the standard AWS chain (environment, ~/.aws) or a storage block "
            "(salvo blocks create s3 ... --credentials-from-env)"
        )
    return text


def check_location(text: str, what: str = "storage") -> str:
    """``text`` unchanged if it is a location :func:`parse_location` accepts; a ``UsageError`` otherwise
    (credentials in a URL are refused without being echoed)."""
    parse_location(str(text), what)
    return str(text)


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
            if self.is_local:  # one open and read, not fsspec's layers (claims and records, per item)
                with open(self.path(rel), "rb") as fh:
                    return fh.read()
            return self.fs.cat_file(self.path(rel))

    def list(self, rel: str = "") -> list[str]:
        """Names (not paths) of the entries directly under ``rel``; empty if it is absent."""
        with self._errors(rel):
            try:
                if self.is_local:  # one listdir; fsspec's local ls stats every entry (claims: 3 lists per item)
                    names = os.listdir(self.path(rel))
                else:
                    names = [
                        posixpath.basename(e.rstrip("/"))
                        for e in self.fs.ls(self.path(rel), detail=False, refresh=True)
                    ]
            except (FileNotFoundError, NotADirectoryError):
                return []
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
    url: str | os.PathLike[str],
    *,
    endpoint_url: str | None = None,
    key: str | None = None,
    secret: str | None = None,
    s3_options: dict[str, Any] | None = None,
) -> StorageTarget:
    """A ``StorageTarget`` for a local path, ``file:`` URL or ``s3://bucket/prefix`` URL (see
    :func:`parse_location`; a bare name here is a relative folder, never a block).

    ``s3_options`` are extra ``s3fs.S3FileSystem`` arguments (e.g. ``config_kwargs``) and
    ``retries`` (s3fs's own); they override ``S3_DEFAULTS``.
    """
    loc = parse_location(url, "storage URL", block_names=False)
    if loc.kind == "local":
        root = str(Path(loc.path).resolve())
        _check_local_root(Path(root))
        fs = fsspec.filesystem("file", auto_mkdir=True)
        return StorageTarget(fs, root, root)
    bucket, prefix = loc.bucket, loc.key
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
