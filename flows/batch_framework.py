"""Moved to ``salvo_compat.batch_framework`` (the seed's Python API is not a flow); kept as a
re-export so existing imports keep working. See docs/migrating/assembly.md."""

from salvo_compat.batch_framework import BatchExecutor, create_batch_executor

__all__ = ["BatchExecutor", "create_batch_executor"]
