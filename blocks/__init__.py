"""Storage blocks: a local folder or an S3 prefix, for data files and Prefect result storage;
and the storage configuration every pipeline shares (``$SALVO_STORAGE``, worker credentials)."""

from blocks.storage import (
    STORAGE_ENV,
    SalvoStorage,
    child_credentials,
    default_storage,
    ensure_saved,
    register_blocks,
    resolve_storage,
    save_storage_block,
    storage_block,
)

__all__ = [
    "STORAGE_ENV",
    "SalvoStorage",
    "child_credentials",
    "default_storage",
    "ensure_saved",
    "register_blocks",
    "resolve_storage",
    "save_storage_block",
    "storage_block",
]
