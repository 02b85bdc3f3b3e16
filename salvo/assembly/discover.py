"""Finding experiments on a storage, and where a re-assembly writes its output."""

from __future__ import annotations

import posixpath
import re
from dataclasses import replace

from salvo.assembly.ledger import EVENTS, LEDGER_CSV, LedgerRow, find_assembly
from salvo.errors import UsageError
from salvo.storage import StorageTarget, open_storage, parse_location

_FOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*_[A-Za-z0-9][A-Za-z0-9.-]*_.+$")


def find_experiments(root: StorageTarget) -> list[str]:
    """Experiment folders (``{exp}_{version}_{title}``) directly under ``root`` that hold a ledger."""
    found = []
    for name in root.list(""):
        if not _FOLDER_RE.match(name):
            continue
        if root.exists(f"{name}/{LEDGER_CSV}") or root.list(f"{name}/{EVENTS}"):
            found.append(name)
    return found


def locate_experiment(root: StorageTarget, *, result_name: str) -> str:
    """The one experiment folder whose data files are named after ``result_name``."""
    matches = [f for f in find_experiments(root) if any(n.startswith(result_name + "_") for n in root.list(f))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no experiment under {root.url} has data for {result_name!r}; give --experiment or --title")
    raise UsageError(
        f"{result_name!r} is in several experiments ({', '.join(matches)}): choose "
        f"one with its three parts, e.g. {selection_flags(matches[0])}"
    )


def selection_flags(folder: str) -> str:
    """The flags that select the experiment folder ``{exp}_{version}_{title}`` exactly."""
    number, version, title = folder.split("_", 2)
    return f"--exp-number {number} --version {version} --title {title}"


def find_assembly_anywhere(root: StorageTarget, assembly_id: str) -> tuple[str, LedgerRow] | None:
    """The experiment folder and ledger row of ``assembly_id``, searching every experiment."""
    for folder in find_experiments(root):
        row = find_assembly(root.child(folder), assembly_id)
        if row is not None:
            return folder, row
    return None


def output_location(output: str | None, *, exp: StorageTarget, result_name: str) -> tuple[StorageTarget, str]:
    """Where to write a re-assembly: (storage, name). Default: beside the data, on the storage."""
    if not output:
        return exp, f"{result_name}_reassembled.parquet"
    if not output.endswith(".parquet"):
        raise UsageError(f"output {output!r} must end with .parquet")
    loc = parse_location(output, "output", block_names=False)
    if loc.kind == "s3":
        parent, name = posixpath.split(f"{loc.bucket}/{loc.key}")
        if not exp.is_local and exp.root.split("/", 1)[0] == loc.bucket:
            # Same bucket as the data: keep the storage's endpoint and credentials.
            return replace(exp, root=parent, url=f"s3://{parent}"), name
        return open_storage(f"s3://{parent}"), name
    parent, name = posixpath.split(loc.path)
    return open_storage(parent or "."), name
