"""The seed's ``batch_framework`` API, unchanged for its users, on Salvo's assembly flows.

    from salvo_compat.batch_framework import create_batch_executor

    executor = create_batch_executor('batch-parameter-distortion', '01', 'v1', storage_backend='local')
    data = executor.sequential_reassembly('parameter_distortion_results')   # a flow run in the UI
    executor.get_assembly_status('20251216_142230_run001')                   # 'completed', ...
    executor.load_assembly_list()                                            # a DataFrame

Seed code that imports ``from scripts.batch_framework import create_batch_executor`` keeps working
with a two-line ``scripts/batch_framework.py`` (see docs/migrating/assembly.md).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from blocks.storage import SalvoStorage, resolve_storage
from salvo.assembly.discover import output_location
from salvo.assembly.ids import experiment_folder, parse_assembly_id
from salvo.assembly.ledger import find_assembly, read_ledger
from salvo.errors import UsageError
from salvo.storage import StorageTarget, check_location, parse_location

__all__ = ["BatchExecutor", "create_batch_executor"]


def _s3_location(value: str, variable: str) -> str:
    """``$SAVE_RESULT_PATH`` as the seed wrote it: ``s3://bucket/prefix`` or ``bucket/prefix``."""
    loc = parse_location(value, f"${variable}", block_names=False)
    if loc.kind == "s3":
        return loc.url
    if loc.scheme or value.strip().startswith(("/", ".", "~")):
        raise UsageError(
            f"${variable} must be s3://bucket/prefix (or bucket/prefix) for storage_backend='s3', got {value!r}"
        )
    return f"s3://{value.strip().strip('/')}"


def storage_reference(backend: str, storage: str | None = None) -> str:
    """Where the executor keeps its experiments: a block name, an s3:// URL or a folder.

    ``storage`` wins; otherwise, for ``'local'``: ``$SALVO_LOCAL_STORAGE``, ``$SAVE_RESULT_PATH``,
    then ``./salvo-data``; for ``'s3'`` (the seed's default): ``$SALVO_S3_STORAGE``, then the
    seed's ``$SAVE_RESULT_PATH``, so results land under ``{SAVE_RESULT_PATH}/{exp}_{version}_{title}/``.
    """
    if storage:
        return check_location(str(storage), "storage")
    if backend == "local":
        variable = next((v for v in ("SALVO_LOCAL_STORAGE", "SAVE_RESULT_PATH") if os.environ.get(v)), None)
        where = os.environ[variable] if variable else "salvo-data"
        local = parse_location(where, f"${variable}" if variable else "local storage", block_names=False)
        if local.kind != "local":
            raise UsageError(
                f"storage_backend='local' needs a folder, but ${variable} is {local.url!r}: "
                "use storage_backend='s3', or set $SALVO_LOCAL_STORAGE to a folder"
            )
        return str(Path(local.path).resolve())
    if backend == "s3":
        for variable in ("SALVO_S3_STORAGE", "SAVE_RESULT_PATH"):
            if os.environ.get(variable):
                value = os.environ[variable]
                return (
                    check_location(value, f"${variable}")
                    if variable == "SALVO_S3_STORAGE"
                    else _s3_location(value, variable)
                )
        raise UsageError(
            "storage_backend='s3' needs $SAVE_RESULT_PATH (s3://bucket/prefix, as the "
            "seed), storage='s3://bucket/prefix' or a block name, or $SALVO_S3_STORAGE"
        )
    raise UsageError(f"storage_backend must be 'local' or 's3', got {backend!r}")


class BatchExecutor:
    """One experiment folder ``{exp_number}_{version_number}_{notebook_name}`` on a storage."""

    def __init__(
        self,
        notebook_name: str,
        exp_number: str,
        version_number: str,
        storage: SalvoStorage,
        *,
        storage_ref: str | None = None,
    ) -> None:
        self.notebook_name = notebook_name
        self.exp_number = str(exp_number)
        self.version_number = str(version_number)
        self.folder = experiment_folder(self.exp_number, self.version_number, notebook_name)
        self.storage = storage
        #: How the flows find this storage again: a block name, a URL or a folder.
        self.storage_ref = storage_ref or storage.reference

    @property
    def experiment(self) -> StorageTarget:
        """The experiment folder as a plain storage value."""
        return self.storage.target.child(self.folder)

    def load_assembly_list(self) -> pd.DataFrame:
        """The ledger: one row per assembly (assembly_id, timestamp, status, seed, ...)."""
        rows = [asdict(r) | {"interrupted": r.interrupted} for r in read_ledger(self.experiment)]
        columns = [
            "assembly_id",
            "timestamp",
            "status",
            "result_name",
            "result_file",
            "n_rows",
            "config_hash",
            "experiment",
            "updated",
            "message",
            "seed",
            "interrupted",
        ]
        return pd.DataFrame(rows, columns=None if rows else columns)

    def get_assembly_status(self, assembly_id: str) -> str:
        """``started``, ``completed``, ``failed`` or ``not_found``."""
        try:  # the seed looks the id up as written: anything it would not find is not_found, never an error
            known = str(parse_assembly_id(assembly_id)) == assembly_id
        except UsageError:
            known = False
        row = find_assembly(self.experiment, assembly_id) if known else None
        return row.status if row else "not_found"

    def sequential_reassembly(
        self, result_name: str, *, allow_pickle: bool = False, output: str | None = None, seeds: list[int] | None = None
    ) -> pd.DataFrame:
        """Every completed assembly of ``result_name`` in one DataFrame (runs assembly-reassemble).

        As in the seed, nothing is left in the experiment folder: the combined file is written to
        a temporary folder and removed, unless ``output`` names where to keep it.
        """
        from flows.assembly import assembly_reassemble

        def run(out: str) -> None:
            assembly_reassemble(
                result_name,
                exp_number=self.exp_number,
                version=self.version_number,
                title=self.notebook_name,
                storage=self.storage_ref,
                output=out,
                allow_pickle=allow_pickle,
                seeds=seeds,
            )

        if output is None:
            with tempfile.TemporaryDirectory(prefix="salvo-reassembly-") as tmp:
                out = os.path.join(tmp, f"{result_name}_reassembled.parquet")
                run(out)
                return pq.read_table(out).to_pandas()
        run(output)
        target, rel = output_location(output, exp=self.experiment, result_name=result_name)
        with target.open_read(rel) as fh:
            return pq.read_table(fh).to_pandas()

    def run(self, experiment: str, **params: Any) -> dict[str, Any]:
        """Generate one more assembly into this folder (runs assembly-run); return its summary."""
        from flows.assembly import assembly_run

        return assembly_run(
            experiment=experiment,
            exp_number=self.exp_number,
            version=self.version_number,
            title=self.notebook_name,
            storage=self.storage_ref,
            **params,
        )


def create_batch_executor(
    notebook_name: str, exp_number: str, version_number: str, storage_backend: str = "s3", *, storage: str | None = None
) -> BatchExecutor:
    """The seed's entry point; ``storage`` (block name, URL or path) overrides the backend's default."""
    ref = storage_reference(storage_backend, storage)
    return BatchExecutor(notebook_name, exp_number, version_number, resolve_storage(ref), storage_ref=ref)
