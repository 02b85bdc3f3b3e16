"""``SalvoStorage``: one Prefect block for a local folder or an S3 prefix.

The block is at once
- where pipelines keep their data files (``.target``, ``.fs``, ``.root``, ``.path(rel)``), and
- Prefect result storage (``result_storage=block``), so resume records live beside the data and
  resume works from S3 as well as from disk.

Credentials come from the standard AWS chain (environment, ``~/.aws``, instance roles), or from
the block's ``SecretStr`` fields, or from a Prefect ``Secret`` block named by
``credentials_secret`` holding ``{"aws_access_key_id": ..., "aws_secret_access_key": ...}``.
They are stored masked, never printed by ``repr``, and scrubbed from error messages.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import WritableFileSystem
from prefect.utilities.asyncutils import run_sync_in_worker_thread
from pydantic import Field, SecretStr, field_validator

from salvo.errors import UsageError
from salvo.storage import StorageTarget, location_kind, open_storage, parse_location
from salvo.validate import redact, safe_name

#: The environment variable naming the default storage (a block name, s3:// URL or path).
STORAGE_ENV = "SALVO_STORAGE"


class SalvoStorage(WritableFileSystem):
    """A local folder or an S3 prefix, usable for data files and as Prefect result storage."""

    _block_type_name = "Salvo Storage"
    _block_type_slug = "salvo-storage"
    _description = "A local folder or an S3 prefix (any S3-compatible endpoint) for Salvo data and results."

    url: str = Field(..., description="A local folder, or s3://bucket/prefix.")
    endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible server (MinIO, Ceph, moto...)."
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="Access key id; leave empty to use the standard AWS chain."
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key; leave empty to use the standard AWS chain."
    )
    credentials_secret: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding aws_access_key_id and "
        "aws_secret_access_key, used when the fields above are empty.",
    )

    _target: StorageTarget | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = str(value).strip()
        if not value:
            raise ValueError("url is empty")
        if "@" in urlsplit(value).netloc:
            raise ValueError("url must not embed credentials: use the credential fields")
        try:
            loc = parse_location(value, "url", block_names=False)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        if loc.kind == "local":
            return str(Path(loc.path).resolve())  # saved blocks must not depend on cwd
        return loc.url

    def credentials(self) -> tuple[str | None, str | None]:
        """The explicit (key, secret) of this block, or (None, None) for the standard AWS chain."""
        if self.url.lower().startswith(("s3://", "s3a://")):
            return self._credentials()
        return None, None

    @property
    def reference(self) -> str:
        """How to name this storage again: the saved block's name, else its URL or path."""
        return self._block_document_name or self.url

    def _credentials(self) -> tuple[str | None, str | None]:
        key = self.aws_access_key_id.get_secret_value() if self.aws_access_key_id else None
        secret = self.aws_secret_access_key.get_secret_value() if self.aws_secret_access_key else None
        if not (key or secret) and self.credentials_secret:
            from prefect.blocks.system import Secret

            value = Secret.load(self.credentials_secret, _sync=True).get()
            if not isinstance(value, dict):
                raise UsageError(
                    f"Secret {self.credentials_secret!r} must hold a JSON object "
                    "with aws_access_key_id and aws_secret_access_key"
                )
            key, secret = value.get("aws_access_key_id"), value.get("aws_secret_access_key")
        return key, secret

    @property
    def target(self) -> StorageTarget:
        """The plain (Prefect-free) storage value, for domain code."""
        if self._target is None:
            key, secret = self._credentials()
            self._target = open_storage(self.url, endpoint_url=self.endpoint_url, key=key, secret=secret)
        return self._target

    @property
    def fs(self) -> Any:
        """The fsspec filesystem."""
        return self.target.fs

    @property
    def root(self) -> str:
        """The root folder in the filesystem's own terms (``bucket/prefix`` or an absolute path)."""
        return self.target.root

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` under the root."""
        return self.target.path(rel)

    @property
    def is_local(self) -> bool:
        """Whether this is a folder on the local disk."""
        return self.target.is_local

    def child(self, rel: str) -> "SalvoStorage":
        """The same storage (endpoint and credentials) rooted at ``rel`` below this root."""
        sub = str(rel).strip("/")
        self.target.path(sub)  # refuses paths that escape the root
        new = self.model_copy(update={"url": self.url.rstrip("/") + "/" + sub})
        new._target = None
        # A new location is not the saved document this one came from.
        new._block_document_id = new._block_document_name = new._is_anonymous = None
        return new

    def _resolve_path(self, path: str) -> str:
        # Prefect passes bare keys and, for persisted records, the full paths this returned.
        text = str(path)
        if text.startswith("s3://") or text.startswith("s3a://"):
            text = text.split("://", 1)[1]
        root = self.root.rstrip("/")
        if text == root or text.startswith(root + "/"):
            return text
        return self.target.path(text)

    def _rel(self, path: str) -> str:
        full = self._resolve_path(path)
        return full[len(self.root.rstrip("/")) :].lstrip("/")

    async def aread_path(self, path: str) -> bytes:
        """The bytes at ``path`` (a key relative to the root, or a full path under it)."""
        return await run_sync_in_worker_thread(self.target.read_bytes, self._rel(path))

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        """The bytes at ``path`` (a key relative to the root, or a full path under it)."""
        return self.target.read_bytes(self._rel(path))

    async def awrite_path(self, path: str, content: bytes) -> str:
        """Write ``content`` at ``path`` atomically; return the full path."""
        return await run_sync_in_worker_thread(self.target.write_bytes, self._rel(path), content)

    @async_dispatch(awrite_path)
    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` at ``path`` atomically; return the full path."""
        return self.target.write_bytes(self._rel(path), content)


def resolve_storage(name_or_url: "str | Path | SalvoStorage") -> SalvoStorage:
    """A storage block from a saved block name, an ``s3://`` URL, or a local path."""
    if isinstance(name_or_url, SalvoStorage):
        return name_or_url
    if isinstance(name_or_url, Path):
        return SalvoStorage(url=str(name_or_url.expanduser().resolve()))
    text = str(name_or_url).strip()
    if not text:
        raise UsageError("storage is empty: give a block name, an s3:// URL or a path")
    if location_kind(text)[0] != "block":  # the one path/URL/block decision (salvo.storage)
        try:
            block = SalvoStorage(url=text)
        except ValueError as exc:
            raise UsageError(f"bad storage URL {redact(text)!r}: {_first_error(exc)}") from None
        block.target  # noqa: B018 - validate the URL now, with a one-line error
        return block
    safe_name(text, "storage block name")
    try:
        return SalvoStorage.load(text, _sync=True)
    except ValueError:
        raise UsageError(
            f"no storage block named {text!r} (run `salvo blocks create ...`, or write ./{text} for a local folder)"
        ) from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", exc)).removeprefix("Value error, ")
    return str(exc).splitlines()[0]


def ensure_saved(block: SalvoStorage) -> SalvoStorage:
    """``block``, saved anonymously if it was not saved yet (a task's ``result_storage`` must be)."""
    if block._block_document_id is None:
        from prefect.utilities.asyncutils import run_coro_as_sync

        run_coro_as_sync(block._save(is_anonymous=True))
    return block


def register_blocks() -> list[str]:
    """Register Salvo's block types with the Prefect API (harmless to repeat); return slugs."""
    SalvoStorage.register_type_and_schema(_sync=True)
    return [SalvoStorage.get_block_type_slug()]


def save_storage_block(
    name: str,
    url: str,
    *,
    endpoint_url: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    credentials_secret: str | None = None,
) -> SalvoStorage:
    """Create or replace the storage block ``name`` (running it twice is harmless)."""
    safe_name(name, "block name")
    parse_location(url, block_names=False)
    try:
        block = SalvoStorage(
            url=url,
            endpoint_url=endpoint_url,
            aws_access_key_id=SecretStr(aws_access_key_id) if aws_access_key_id else None,
            aws_secret_access_key=(SecretStr(aws_secret_access_key) if aws_secret_access_key else None),
            credentials_secret=credentials_secret,
        )
    except ValueError as exc:
        raise UsageError(f"bad storage block {name!r}: {_first_error(exc)}") from None
    block.save(name, overwrite=True, _sync=True)
    return block


def default_storage() -> str:
    """``$SALVO_STORAGE`` (a block name, s3:// URL or path), else ``./salvo-data``."""
    return os.environ.get(STORAGE_ENV) or str(Path("salvo-data").resolve())


def storage_block(storage: str | None) -> SalvoStorage:
    """The block for a name, URL or path (``default_storage()`` when empty)."""
    return resolve_storage(storage or default_storage())


@contextlib.contextmanager
def child_credentials(storage: SalvoStorage) -> Iterator[None]:
    """Give worker processes started inside the block the block's own S3 credentials, if any.

    Workers are child processes that open the storage themselves; they inherit this process's
    environment. Nothing is changed when the block stores no credentials (the standard AWS chain
    already reaches the children); the environment is restored afterwards.
    """
    key, secret = storage.credentials()
    if not (key and secret):
        yield
        return
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
