"""The seed's ``batch_framework`` API, unchanged for its users, on Salvo's assembly flows.

    executor = create_batch_executor('batch-parameter-distortion', '01', 'v1', storage_backend='local')
    data = executor.sequential_reassembly('parameter_distortion_results')   # a flow run in the UI
    executor.get_assembly_status('20251216_142230_run001')                   # 'completed', ...
    executor.load_assembly_list()                                            # a DataFrame
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from blocks.storage import SalvoStorage, resolve_storage
from salvo.assembly.ids import experiment_folder
from salvo.assembly.ledger import find_assembly, read_ledger
from salvo.errors import UsageError
from salvo.storage import StorageTarget


def _storage_for(backend: str, storage: str | None) -> SalvoStorage:
    if storage:
        return resolve_storage(storage)
    if backend == "local":
        where = (os.environ.get("SALVO_LOCAL_STORAGE") or os.environ.get("SAVE_RESULT_PATH")
                 or "salvo-data")
        return resolve_storage(Path(where))
    if backend == "s3":
        where = os.environ.get("SALVO_S3_STORAGE")
        if not where:
            raise UsageError("storage_backend='s3' needs storage='s3://bucket/prefix' (or a block "
                             "name), or $SALVO_S3_STORAGE")
        return resolve_storage(where)
    raise UsageError(f"storage_backend must be 'local' or 's3', got {backend!r}")


class BatchExecutor:
    """One experiment folder ``{exp_number}_{version_number}_{notebook_name}`` on a storage."""

    def __init__(self, notebook_name: str, exp_number: str, version_number: str,
                 storage: SalvoStorage) -> None:
        self.notebook_name = notebook_name
        self.exp_number = str(exp_number)
        self.version_number = str(version_number)
        self.folder = experiment_folder(self.exp_number, self.version_number, notebook_name)
        self.storage = storage

    @property
    def experiment(self) -> StorageTarget:
        """The experiment folder as a plain storage value."""
        return self.storage.target.child(self.folder)

    def load_assembly_list(self) -> pd.DataFrame:
        """The ledger: one row per assembly (assembly_id, timestamp, status, ...)."""
        rows = [asdict(r) | {"interrupted": r.interrupted} for r in read_ledger(self.experiment)]
        columns = ["assembly_id", "timestamp", "status", "result_name", "result_file", "n_rows",
                   "config_hash", "experiment", "updated", "message", "interrupted"]
        return pd.DataFrame(rows, columns=None if rows else columns)

    def get_assembly_status(self, assembly_id: str) -> str:
        """``started``, ``completed``, ``failed`` or ``not_found``."""
        row = find_assembly(self.experiment, assembly_id)
        return row.status if row else "not_found"

    def sequential_reassembly(self, result_name: str, *, allow_pickle: bool = False,
                              output: str | None = None) -> pd.DataFrame:
        """Every completed assembly of ``result_name`` in one DataFrame (runs assembly-reassemble)."""
        from flows.assembly import assembly_reassemble

        assembly_reassemble(result_name, exp_number=self.exp_number, version=self.version_number,
                            title=self.notebook_name, storage=self._storage_ref(), output=output,
                            allow_pickle=allow_pickle)
        if output is not None:
            return pq.read_table(output).to_pandas()
        with self.experiment.open_read(f"{result_name}_reassembled.parquet") as fh:
            return pq.read_table(fh).to_pandas()

    def run(self, experiment: str, **params: Any) -> dict[str, Any]:
        """Generate one more assembly into this folder (runs assembly-run); return its summary."""
        from flows.assembly import assembly_run

        return assembly_run(experiment=experiment, exp_number=self.exp_number,
                            version=self.version_number, title=self.notebook_name,
                            storage=self._storage_ref(), **params)

    def _storage_ref(self) -> str:
        return self.storage._block_document_name or self.storage.url


def create_batch_executor(notebook_name: str, exp_number: str, version_number: str,
                          storage_backend: str = "s3", *, storage: str | None = None) -> BatchExecutor:
    """The seed's entry point; ``storage`` (block name, URL or path) overrides the backend's default."""
    return BatchExecutor(notebook_name, exp_number, version_number,
                         _storage_for(storage_backend, storage))
