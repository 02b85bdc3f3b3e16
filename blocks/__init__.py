"""Storage blocks: a local folder or an S3 prefix, for data files and Prefect result storage."""

from blocks.storage import (SalvoStorage, ensure_saved, register_blocks, resolve_storage,
                            save_storage_block)

__all__ = ["SalvoStorage", "ensure_saved", "register_blocks", "resolve_storage", "save_storage_block"]
