"""One assembly run, as plain steps: plan it, claim or resume its ID, cut it into chunks, and
finish it by merging the chunks into its single data file before recording ``completed``."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from salvo.assembly.config import (
    EXPERIMENTS,
    check_counts,
    config_hash,
    default_config,
    load_config_file,
    merge_config,
    validate_config,
)
from salvo.assembly.experiments import GENERATORS, load_generator
from salvo.assembly.ids import data_file_name, experiment_folder, parse_assembly_id
from salvo.assembly.ledger import (
    LedgerRow,
    claim_assembly_id,
    find_assembly,
    publish_ledger,
    record_event,
    started_details,
)
from salvo.assembly.reassemble import Part, check_schema, parquet_writer
from salvo.errors import UsageError
from salvo.items import Item, Worker
from salvo.outcome import ItemResult
from salvo.storage import StorageTarget
from salvo.validate import redact

CHUNK_WORKER = "salvo.assembly.experiments:run_chunk"
#: The chunks' output contract (row count and schema), checked by the runner after each chunk.
CHUNK_CONTRACT = "salvo.contract:check_assembly_chunk"
#: The seed every assembly had before seeds were drawn; an older ledger row without a recorded
#: seed was generated with it.
LEGACY_SEED = 42
_CUSTOM_DEFAULTS = {"n_samples": 100, "n_reps": 1, "seed": LEGACY_SEED}
#: The most chunks (items) one assembly may be cut into.
MAX_CHUNKS = 100_000


def draw_seed() -> int:
    """A fresh 32-bit base seed, so that every run without ``--seed`` adds new samples."""
    return secrets.randbits(32)


@dataclass(frozen=True)
class AssemblyPlan:
    """Everything that defines one assembly run; JSON-able through ``to_dict``."""

    experiment: str
    generator: str
    folder: str  # {exp_number}_{version}_{title}
    result_name: str
    config: dict[str, Any]
    config_hash: str
    chunk_size: int
    assembly_id: str = ""
    seed_drawn: bool = False  # True when no seed was given and this run drew a fresh one

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @property
    def seed(self) -> int:
        """The base random seed of this assembly."""
        return int(self.config["seed"])

    def with_seed(self, seed: int) -> "AssemblyPlan":
        """The same plan with another base seed (a resumed assembly keeps its recorded one)."""
        config = {**self.config, "seed": int(seed)}
        return replace(self, config=config, config_hash=config_hash(config), seed_drawn=False)

    @property
    def data_file(self) -> str:
        """The data file's name inside the experiment folder."""
        return data_file_name(self.result_name, self.assembly_id)

    def chunk_file(self, index: int) -> str:
        """Where chunk ``index`` is written, relative to the experiment folder."""
        return f"chunks/{self.assembly_id}/chunk_{index:05d}.parquet"


def experiment_identity(
    experiment: str, *, exp_number: str | None = None, title: str | None = None, result_name: str | None = None
) -> tuple[str, str, str, str]:
    """(generator, exp_number, title, result_name) of a built-in name or ``pkg.mod:fn``."""
    if experiment in EXPERIMENTS:
        number, seed_title, seed_result, _ = EXPERIMENTS[experiment]
        return (GENERATORS[experiment], exp_number or number, title or seed_title, result_name or seed_result)
    if ":" not in experiment:
        raise UsageError(
            f"unknown experiment {experiment!r}: use one of "
            f"{', '.join(EXPERIMENTS)}, or a generator 'pkg.module:function'"
        )
    fn = experiment.rsplit(":", 1)[1]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", fn).strip("-").lower() or "custom"
    return experiment, exp_number or "01", title or f"batch-{slug}", result_name or f"{fn}_results"


def _build_config(
    experiment: str, config_file: str | None, overrides: Mapping[str, Any] | None
) -> tuple[dict[str, Any], bool]:
    base = default_config(experiment) if experiment in EXPERIMENTS else dict(_CUSTOM_DEFAULTS)
    from_file = load_config_file(config_file) if config_file else {}
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    drawn = "seed" not in from_file and "seed" not in explicit
    if drawn:
        explicit["seed"] = draw_seed()  # no seed given: new samples, never a copy of the last run
    base = merge_config(merge_config(base, from_file), explicit)
    if experiment in EXPERIMENTS:
        return validate_config(base, experiment=experiment), drawn
    check_counts(base)
    return base, drawn


def build_config(
    experiment: str, *, config_file: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then the YAML file, then explicit overrides; validated for built-ins.

    Without a ``seed`` in the file or the overrides, a fresh one is drawn.
    """
    return _build_config(experiment, config_file, overrides)[0]


def plan_assembly(
    experiment: str,
    *,
    exp_number: str | None = None,
    version: str = "v1",
    title: str | None = None,
    result_name: str | None = None,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    chunk_size: int = 10,
) -> AssemblyPlan:
    """Validate everything about a run before any storage is touched."""
    generator, number, name, result = experiment_identity(
        experiment, exp_number=exp_number, title=title, result_name=result_name
    )
    load_generator(generator)  # a bad import path fails now, with one line
    config, drawn = _build_config(experiment, config_file, overrides)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise UsageError(f"chunk size must be a whole number >= 1, got {chunk_size!r}")
    n_chunks = -(-int(config["n_samples"]) // chunk_size)
    if n_chunks > MAX_CHUNKS:
        raise UsageError(
            f"{config['n_samples']} samples in chunks of {chunk_size} make {n_chunks:,} "
            f"chunks, more than Salvo's bound of {MAX_CHUNKS:,}: give a larger "
            "--chunk-size"
        )
    data_file_name(result, "x")  # validates the result name
    return AssemblyPlan(
        experiment,
        generator,
        experiment_folder(number, version, name),
        result,
        config,
        config_hash(config),
        chunk_size,
        seed_drawn=drawn,
    )


def _config_difference(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """The first setting that differs between two configs, e.g. ``n_samples was 4, now 100``."""
    for key in sorted(set(recorded) | set(now)):
        if key == "seed":
            continue
        if json.dumps(recorded.get(key), sort_keys=True) != json.dumps(now.get(key), sort_keys=True):
            return f"{key} was {recorded.get(key)!r}, now {now.get(key)!r}"
    return "the config differs"


def resume_plan(plan: AssemblyPlan, exp: StorageTarget, resume: str) -> tuple[AssemblyPlan, LedgerRow]:
    """``plan`` for re-opening assembly ``resume``: checked against its ledger row, with its seed.

    Refused (one line) when the ledger does not know it, it is completed, it belongs to another
    experiment, or it was started with another seed or config.
    """
    aid = str(parse_assembly_id(resume))
    row = find_assembly(exp, aid)
    if row is None:
        raise UsageError(
            f"assembly {aid} is not in the ledger of {exp.url}: see `salvo assembly list` for the assemblies there"
        )
    if row.status == "completed":
        raise UsageError(f"assembly {aid} is already completed; start a new run instead")
    if row.experiment and row.experiment != plan.experiment:
        raise UsageError(f"assembly {aid} is a run of {row.experiment}, not {plan.experiment}")
    details = started_details(exp, aid)
    recorded = row.seed if row.seed is not None else details.get("seed")
    if plan.seed_drawn:
        plan = plan.with_seed(LEGACY_SEED if recorded is None else int(recorded))
    elif recorded is not None and int(recorded) != plan.seed:
        raise UsageError(
            f"assembly {aid} was started with seed {recorded}, not {plan.seed}: "
            "leave out --seed to resume it with its own"
        )
    if row.config_hash and row.config_hash != plan.config_hash:
        what = (
            _config_difference(details["config"], plan.config)
            if "config" in details
            else f"hash {row.config_hash}, now {plan.config_hash}"
        )
        raise UsageError(
            f"assembly {aid} was started with another config ({what}): resume it "
            "with the flags and config file it was started with"
        )
    return replace(plan, assembly_id=aid), row


def begin_assembly(plan: AssemblyPlan, exp: StorageTarget, *, resume: str | None = None) -> AssemblyPlan:
    """Claim a new assembly ID (or re-open ``resume``) and record ``started`` before any work."""
    if resume:
        planned, _ = resume_plan(plan, exp, resume)
    else:
        aid = str(claim_assembly_id(exp, experiment=plan.experiment))
        planned = replace(plan, assembly_id=aid)
    record_event(
        exp,
        planned.assembly_id,
        "started",
        result_name=plan.result_name,
        experiment=plan.experiment,
        config_hash=planned.config_hash,
        result_file=planned.data_file,
        seed=planned.seed,
        config=planned.config,
        message="resumed" if resume else "",
    )
    publish_ledger(exp)
    return planned


def chunk_items(plan: AssemblyPlan, storage: StorageTarget) -> tuple[list[Item], Worker]:
    """One item per chunk of samples; params name the chunk exactly, so resume keys are stable."""
    n = int(plan.config["n_samples"])
    items = []
    for index, start in enumerate(range(0, n, plan.chunk_size)):
        stop = min(n, start + plan.chunk_size)
        params = {
            "generator": plan.generator,
            "config": plan.config,
            "start": start,
            "stop": stop,
            "storage_url": storage.url,
            "endpoint_url": storage.endpoint_url,
            "output": f"{plan.folder}/{plan.chunk_file(index)}",
        }
        items.append(Item(id=f"{plan.assembly_id}/samples_{start:06d}-{stop - 1:06d}", params=params))
    return items, Worker("python", CHUNK_WORKER, verify=CHUNK_CONTRACT, preload=("salvo.assembly.experiments",))


def merge_chunks(plan: AssemblyPlan, exp: StorageTarget, *, n_chunks: int) -> int:
    """Stream every chunk, in order, into the assembly's data file; return its row count."""
    rows = 0
    reference = None
    with exp.open_write(plan.data_file) as fh:
        writer = None
        try:
            for index in range(n_chunks):
                rel = plan.chunk_file(index)
                with exp.open_read(rel) as src:
                    parquet = pq.ParquetFile(src)
                    reference = check_schema(Part(plan.assembly_id, rel, "parquet"), parquet.schema_arrow, reference)
                    for batch in parquet.iter_batches():
                        writer = writer or parquet_writer(fh, reference[1])
                        writer.write_batch(batch.select(reference[1].names).cast(reference[1]))
                        rows += batch.num_rows
            if writer is None and reference is not None:
                writer = parquet_writer(fh, reference[1])  # chunks without rows
        finally:
            if writer is not None:
                writer.close()
    return rows


def complete_assembly(plan: AssemblyPlan, exp: StorageTarget, *, n_chunks: int) -> int:
    """Write the data file, then record ``completed``, then drop the chunks; return rows."""
    rows = merge_chunks(plan, exp, n_chunks=n_chunks)
    record_event(
        exp,
        plan.assembly_id,
        "completed",
        result_name=plan.result_name,
        experiment=plan.experiment,
        config_hash=plan.config_hash,
        result_file=plan.data_file,
        n_rows=rows,
        seed=plan.seed,
    )
    publish_ledger(exp)
    exp.remove_tree(f"chunks/{plan.assembly_id}")  # the data file now holds every chunk
    return rows


def fail_assembly(plan: AssemblyPlan, exp: StorageTarget, *, message: str) -> None:
    """Record ``failed`` with a one-line reason (the data file was never written)."""
    record_event(
        exp,
        plan.assembly_id,
        "failed",
        result_name=plan.result_name,
        experiment=plan.experiment,
        config_hash=plan.config_hash,
        seed=plan.seed,
        message=" ".join(redact(message).split())[:500],
    )
    publish_ledger(exp)


def reports_folder(assembly_id: str) -> str:
    """Where an assembly's reports lie in its experiment folder."""
    return f"reports/{assembly_id}"


def report_title(plan: AssemblyPlan) -> str:
    """The run report's title: the assembly, its experiment and its seed."""
    return f"Assembly {plan.assembly_id}: {plan.experiment}, seed {plan.seed}"


def report_base(plan: AssemblyPlan, exp: StorageTarget) -> str | None:
    """The folder the run report lies in once uploaded, when it is on this machine's disk: its links
    (the data file, chunks kept for resume) are made relative to it. None on S3 (links stay URIs)."""
    return exp.path(reports_folder(plan.assembly_id)) if exp.is_local else None


def point_at_data_file(results: list[ItemResult], plan: AssemblyPlan, exp: StorageTarget) -> None:
    """When every chunk succeeded, their outputs become the assembly's data file: the chunks are
    merged into it and dropped (`complete_assembly`), so a link to a chunk would lead nowhere.
    A failed assembly keeps its chunks for ``--resume``: their links stay."""
    if all(r.status.ok for r in results):
        data = exp.uri(plan.data_file)
        for r in results:
            r.outputs = [data]


def report_section(plan: AssemblyPlan, exp: StorageTarget, *, ok: bool, base: str | None) -> tuple[str, str]:
    """(title, HTML) of the run report's assembly section: experiment, seed, config, and the data file."""
    import html
    import os

    esc = html.escape
    data = exp.uri(plan.data_file)
    if not ok:
        where = f"none: a chunk failed, so the chunks are kept for <code>--resume {esc(plan.assembly_id)}</code>"
    elif base is not None:
        rel = os.path.relpath(exp.path(plan.data_file), base).replace(os.sep, "/")
        where = f'<a href="{esc(rel)}">{esc(plan.data_file)}</a> (<code>{esc(data)}</code>)'
    else:
        where = f"<code>{esc(data)}</code>"
    rows = [
        ("Assembly", esc(plan.assembly_id)),
        ("Experiment", esc(plan.experiment)),
        ("Experiment folder", f"<code>{esc(exp.uri())}</code>"),
        ("Result name", esc(plan.result_name)),
        ("Seed", f"{plan.seed}" + (" (drawn for this run)" if plan.seed_drawn else "")),
        ("Config hash", f"<code>{esc(plan.config_hash)}</code>"),
        ("Data file (Parquet)", where),
    ]
    body = "<table id='assembly'>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    return "Assembly", body


def upload_reports(
    reports: Mapping[str, str], exp: StorageTarget, *, assembly_id: str, history: str | None = None
) -> dict[str, str]:
    """Copy local report files to ``reports/<assembly_id>/`` on the storage; return their URIs.

    ``history``: a local ``runs/`` folder whose files are copied below ``reports/<assembly_id>/runs/``
    (each run's own report, trace and summary)."""
    out = {}
    folder = reports_folder(assembly_id)
    for kind, path in reports.items():
        rel = f"{folder}/{Path(path).name}"
        exp.write_bytes(rel, Path(path).read_bytes())
        out[kind] = exp.uri(rel)
    if history and Path(history).is_dir():
        root = Path(history)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            exp.write_bytes(f"{folder}/{root.name}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return out
