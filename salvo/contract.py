"""Output contracts: a result is published only once it checks, and trusted only while it still checks.

Three parts, all plain Python (no Prefect):

- **Staging** (:func:`stage_outputs`): before an item runs, each output folder its worker is told
  about (the params named in ``Worker.stage``, or an item's own ``params["stage"]`` map) is
  replaced by a fresh temporary sibling, ``.salvo-tmp-<name>-XXXX/<name>``. The worker writes
  there; the final folder is not touched while it runs.
- **The contract** (``Worker.verify``, one plain function per pipeline, listed below): run by the
  runner on the *staged* outputs after the worker exited 0. A returned string is the reason of a
  ``silent_failure``; then nothing is published and the previous result stays as it was.
- **Publication** (:meth:`Staging.publish`): only when the contract holds, by the orchestrating
  side (``salvo.runner.run_item``), never by the worker's process: each staged folder is renamed
  into place (an older folder is moved aside first and removed only once the new one is in place).

And the **digest** (:func:`output_digest`, :func:`digest_problem`): what was published (relative
names, sizes, mtime_ns and a BLAKE2b content hash of every file) is kept in the item's record; a
resumed run re-checks it with one stat per file (the hash only when the stat changed) and runs the
item again when an output vanished or changed.

The pipelines' contracts (each declared on its worker, beside its pipeline):

- extract, built-in: at least one non-empty image that decodes; ``--worker-command``: at least one
  non-empty file other than logs (both ``salvo.extract:check_for_output``);
- subjects: the pipeline's declared files, non-empty, plus ``_done.json`` (:func:`subject_problem`,
  checked in the subject's child on its work folder, before promotion);
- jobs, built-in: dataset files whose row counts equal the job's reported rows
  (``salvo.jobs.builder:verify_job``); ``--job-command``: a dataset file, with the rows of its
  ``build.json`` when it writes one (``salvo.jobs.command:check_job_command_output``);
- assembly chunks: the chunk's row count and named columns (:func:`check_assembly_chunk`);
- gridded: every expected file, variable and cell, checked by ``salvo/gridded``'s merge itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from salvo.fsutil import TMP_PREFIX, publish_dir

#: Names that count as logs, not results, when a contract asks for "a file other than logs".
LOG_NAMES = frozenset({"log.txt", "logs", "stdout.txt", "stderr.txt", "run.log"})
LOG_SUFFIXES = (".log",)


# --------------------------------------------------------------------------- staging and publication


@dataclasses.dataclass
class _Stage:
    final: str  # the output folder as the item names it
    root: str  # the temporary sibling made for it (removed at the end)

    @property
    def staged(self) -> str:
        """Where the worker writes this output: ``root/<final's name>``."""
        return os.path.join(self.root, os.path.basename(self.final))


class Staging:
    """The staged outputs of one run of an item: publish them, or discard them."""

    def __init__(self, stages: list[_Stage], params: dict[str, Any], outputs: tuple[str, ...]) -> None:
        self.stages = stages
        self.params = params  # the item's params with every staged folder replaced
        self.outputs = outputs  # the item's outputs, staged ones replaced

    def staged_item(self, item: Any) -> Any:
        """``item`` as its worker and its contract see it: pointing at the staged folders."""
        return dataclasses.replace(item, params=self.params, outputs=self.outputs)

    def finals(self, paths: Iterable[str]) -> list[str]:
        """``paths`` (as the worker reported them, inside the staged folders) as they are once published."""
        out = []
        for p in paths:
            text = os.fspath(p)
            for s in self.stages:
                if text == s.staged or text.startswith(s.staged + os.sep):
                    text = s.final + text[len(s.staged) :]
                    break
                if text == s.root:
                    text = os.path.dirname(s.final)
                    break
            out.append(text)
        return out

    def missing(self) -> str | None:
        """The reason nothing can be published when a staged folder was never made (None if all are there)."""
        for s in self.stages:
            if not os.path.isdir(s.staged):
                return f"exited 0 but wrote no output folder {s.final}"
        return None

    def publish(self) -> None:
        """Rename each staged folder into place (an older one is swapped out only now)."""
        mask = _umask()
        for s in self.stages:
            with contextlib.suppress(OSError):
                os.chmod(s.staged, 0o777 & ~mask)
            publish_dir(s.staged, s.final)

    def discard(self) -> None:
        """Remove every staging folder (published ones are already gone: only their empty roots remain).

        Nothing writes beside a staging folder (a worker writes inside it), so its parent is not
        listed: that listing, once per item in a folder of thousands, made a batch quadratic.
        """
        for s in self.stages:
            try:
                os.rmdir(s.root)  # the common case: published, the root left empty
            except OSError:
                shutil.rmtree(s.root, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stage_outputs(item: Any, names: Sequence[str]) -> Staging | None:
    """Stage the output folders of ``item`` named by params ``names`` (and by ``params["stage"]``).

    A named param whose value is one of the item's outputs points at ``<tmp>/<name>``; one whose
    value is an output's parent folder points at ``<tmp>`` (a worker that writes ``<param>/<name>``,
    as the jobs builder does). ``params["stage"]``, a ``{placeholder: output folder}`` map, stages
    each folder under its placeholder and is itself removed from the params. None when nothing is
    staged (remote outputs are never staged).
    """
    params = dict(item.params)
    explicit = params.get("stage")
    wanted: dict[str, str] = {}
    if isinstance(explicit, Mapping):
        del params["stage"]
        wanted.update({str(k): str(v) for k, v in explicit.items()})
    for name in names:
        if isinstance(params.get(name), str):
            wanted[name] = params[name]
    if not wanted:
        return None
    outputs = [o for o in (item.outputs or ()) if "://" not in o]
    for value in wanted.values():
        if value not in outputs and not any(os.path.dirname(o) == value for o in outputs) and "://" not in value:
            outputs.append(value)
    stages: dict[str, _Stage] = {}
    made: list[_Stage] = []
    try:
        for name, value in wanted.items():
            target = value if value in outputs else next((o for o in outputs if os.path.dirname(o) == value), None)
            if target is None or "://" in target:
                continue
            s = stages.get(target)
            if s is None:
                parent = os.path.dirname(target) or "."
                os.makedirs(parent, exist_ok=True)
                s = _Stage(target, tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.path.basename(target)}-", dir=parent))
                made.append(s)
                stages[target] = s
                os.mkdir(s.staged)
            params[name] = s.staged if value == target else s.root
    except BaseException:
        for s in made:
            shutil.rmtree(s.root, ignore_errors=True)
        raise
    if not stages:
        return None
    new_outputs = tuple(stages[o].staged if o in stages else o for o in (item.outputs or ()))
    return Staging(list(stages.values()), params, new_outputs)


# --------------------------------------------------------------------------- shared contract helpers


def is_log(rel: str) -> bool:
    """Whether a file (relative to its output folder) is a log rather than a result."""
    parts = Path(rel).parts
    return bool(parts) and (parts[0] in LOG_NAMES or parts[-1] in LOG_NAMES or parts[-1].endswith(LOG_SUFFIXES))


def result_files(folder: str | os.PathLike[str]) -> list[str]:
    """The non-empty files under ``folder`` that are not logs (relative names, sorted)."""
    root = Path(folder)
    found = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        with contextlib.suppress(OSError):
            if p.is_file() and p.stat().st_size > 0 and not is_log(rel):
                found.append(rel)
    return found


def decodes_as_image(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an image PIL can decode completely (not only its header)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL ships with matplotlib
        return True
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder error means "not an image"
        return False


def folder_listing(folder: str | os.PathLike[str], limit: int = 5) -> str:
    """``log.txt, b.csv`` (at most ``limit`` names), or ``nothing`` for an empty folder."""
    root = Path(folder)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    if not names:
        return "nothing"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def subject_problem(work: str | os.PathLike[str], *, declared: Sequence[str] = ()) -> str | None:
    """The subjects contract on a subject's work folder: every declared file, non-empty (or, when
    the pipeline declares none, at least one non-empty file other than logs) and ``_done.json``."""
    root = Path(work)
    missing = [name for name in declared if not (root / name).is_file() or (root / name).stat().st_size == 0]
    if missing:
        return f"exited 0 but wrote no {', '.join(missing)} (it wrote {folder_listing(root)})"
    if not declared and not [f for f in result_files(root) if f != "_done.json"]:
        return f"exited 0 but wrote no result file, only {folder_listing(root)}"
    if not (root / "_done.json").is_file():
        return "exited 0 but no _done.json was written"
    return None


def check_assembly_chunk(item: Any, result: Any) -> str | None:
    """Spine contract of an assembly chunk: its object holds rows for exactly its samples ``[start, stop)``
    (every one of them, no other, where the chunk has a ``sample`` column: a sample yields one row per
    level and repetition), named columns, and the row count its worker reported."""
    import pyarrow.parquet as pq

    from salvo.storage import open_storage

    params = item.params
    wanted = set(range(int(params["start"]), int(params["stop"])))
    target = open_storage(params["storage_url"], endpoint_url=params.get("endpoint_url"))
    try:
        with target.open_read(params["output"]) as fh:
            pf = pq.ParquetFile(fh)
            schema, rows = pf.schema_arrow, pf.metadata.num_rows
            samples = (
                set(pf.read(columns=["sample"]).column("sample").to_pylist()) if "sample" in schema.names else None
            )
    except Exception as exc:  # noqa: BLE001 - unreadable or missing: the reason says which
        return f"exited 0 but its chunk {params['output']} cannot be read: {type(exc).__name__}: {exc}"
    if wanted and rows == 0:
        return f"exited 0 but its chunk {params['output']} holds no rows for samples {min(wanted)}-{max(wanted)}"
    if samples is not None and samples != wanted:
        lacking, extra = sorted(wanted - samples), sorted(samples - wanted)
        what = (
            f"lacks sample {lacking[0]}" + (f" and {len(lacking) - 1} more" if len(lacking) > 1 else "")
            if lacking
            else f"holds sample {extra[0]} of another chunk"
        )
        return f"exited 0 but its chunk {params['output']} {what}"
    if not schema.names:
        return f"exited 0 but its chunk {params['output']} has no columns"
    reported = (getattr(result, "metrics", None) or {}).get("rows")
    if reported is not None and reported != rows:
        return f"the worker reported {reported} rows but its chunk {params['output']} holds {rows}"
    return None


# --------------------------------------------------------------------------- digests of published outputs

#: Version of the digest's layout, stored with it.
DIGEST_VERSION = 1
_HASH_CHUNK = 1 << 20
#: Files larger than this are recorded by size and mtime only (no hash): the driver never reads
#: gigabytes to record an item, and such a file whose mtime changed counts as changed (run again).
HASH_LIMIT = 64 << 20


def file_hash(path: str | os.PathLike[str]) -> str:
    """BLAKE2b (128 bits) of a file's bytes, as hex."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_HASH_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _walk(path: str) -> list[tuple[str, os.stat_result]]:
    """(relative name, stat) of each file of an output: ``""`` for a file itself, names below a folder."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        return [("", st)]
    found: list[tuple[str, os.stat_result]] = []
    stack = [("", path)]
    while stack:
        rel, folder = stack.pop()
        with os.scandir(folder) as entries:
            for e in entries:
                name = f"{rel}{e.name}"
                if e.is_dir(follow_symlinks=False):
                    stack.append((name + "/", e.path))
                else:
                    found.append((name, e.stat()))
    return found


def output_digest(paths: Iterable[str]) -> dict[str, Any]:
    """What a result published: for each local output, ``[relative name, size, mtime_ns, blake2b]``
    of every file in it (the hash None above :data:`HASH_LIMIT`). Outputs that do not exist (a
    worker may list what it did not write) are left out."""
    files: dict[str, list[list[Any]]] = {}
    for p in paths:
        if "://" in p:
            continue
        try:
            entries = _walk(p)
        except OSError:
            continue
        rows = []
        for rel, st in sorted(entries):
            full = os.path.join(p, rel) if rel else p
            try:
                rows.append([rel, st.st_size, st.st_mtime_ns, file_hash(full) if st.st_size <= HASH_LIMIT else None])
            except OSError:
                continue
        files[p] = rows
    return {"v": DIGEST_VERSION, "files": files}


def digest_problem(digest: Mapping[str, Any]) -> str | None:
    """Why a recorded result can no longer be trusted (``output plot.png changed since it was
    recorded``), or None when every file it published is still there, unchanged.

    One stat per file; a file's content is hashed again only when its size is equal but its
    mtime is not (a copy or a ``touch``): same bytes, still trusted.
    """
    files = digest.get("files")
    if not isinstance(files, Mapping):
        return None
    for out, rows in files.items():
        for rel, size, mtime_ns, digest_hex in rows:
            path = f"{out}/{rel}" if rel else out
            try:
                st = os.stat(path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return f"output {rel or os.path.basename(out)} vanished since it was recorded"
                return f"output {path} cannot be read: {exc.strerror or exc}"
            if st.st_size != size or stat.S_ISDIR(st.st_mode):
                return f"output {rel or os.path.basename(out)} changed since it was recorded"
            if st.st_mtime_ns != mtime_ns:
                try:
                    same = digest_hex is not None and file_hash(path) == digest_hex
                except OSError:
                    same = False
                if not same:
                    return f"output {rel or os.path.basename(out)} changed since it was recorded"
    return None
