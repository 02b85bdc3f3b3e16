"""The NetCDF extraction pipeline's domain: find inputs, plan a safe layout, plot, check plots.

`salvo.extract.plot` draws one file; this module decides which files, where their plots go, and
refuses layouts in which one output could replace an input or another output.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shlex
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salvo import validate
from salvo.errors import UsageError
from salvo.fsutil import TMP_PREFIX, atomic_write_text
from salvo.extract.journal import LINE_BREAKS, journal_mark
from salvo.items import Item, Worker, template_fields
from salvo.outcome import EXIT_INPUT_ERROR, ItemResult, Status

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Resolution of the built-in plots, dots per inch (figures are 10 x 4 inches: 1000 x 400 pixels).
DEFAULT_DPI = 100
#: The plotting worker's public names, imported from ``salvo.extract.plot`` on first use: planning,
#: and a fully resumed batch, never import numpy.
_PLOT_NAMES = frozenset({"extract_plots", "find_time", "find_time_dim"})


def __getattr__(name: str) -> Any:
    if name in _PLOT_NAMES:
        from salvo.extract import plot

        return getattr(plot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Suffix of the per-file output folder beside the inputs (the seed's default layout).
OUTPUT_SUFFIX = "_results"
#: The report files Salvo (and the seed) write in the report folder; never inputs.
REPORT_FILES = frozenset(
    {"batch_processing_summary.txt", "batch_summary.json", "batch_resume.txt", "run_report.html", "trace.tsv"}
)
#: The report folder's run history (``runs/<run name>/``, salvo.report), never entered when it is Salvo's.
HISTORY = ("runs", ".salvo-history")
#: The seed's resume file: one processed file per line.
RESUME_FILE = "batch_resume.txt"
#: Folder of resume records inside the report folder.
STATE_DIR = ".salvo"
#: In STATE_DIR: hashes of the batch_resume.txt lists Salvo wrote or already imported (never imported again).
WRITTEN_MARK = "batch_resume.written"


def _own_folder(name: str) -> bool:
    """Folders discovery never enters: hidden ones (``.salvo/``), temporary ones, ``*_results/``."""
    return name.startswith((".", TMP_PREFIX)) or name.endswith(OUTPUT_SUFFIX)


def discover_inputs(
    directory: str | os.PathLike[str],
    *,
    pattern: str = "*.nc",
    recursive: bool = False,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Entries under ``directory`` whose name matches the glob ``pattern``, sorted.

    Salvo's own outputs are never inputs: hidden and temporary entries, ``*_results/`` folders,
    the report files, and any folder in ``exclude`` (the ``--output-dir`` when it lies inside the
    input folder) are left out. Anything else that matches and is not a folder is an input, even
    when it cannot be read (a dangling link, a FIFO): it becomes that item's error, not silence.
    """
    return [Path(f) for f in _discover(directory, pattern=pattern, recursive=recursive, exclude=exclude)]


def _discover(
    directory: str | os.PathLike[str], *, pattern: str, recursive: bool, exclude: Iterable[str | os.PathLike[str]]
) -> list[str]:
    """:func:`discover_inputs` as strings, in the same order (a ``Path`` per file costs more than the walk)."""
    root = os.fspath(Path(directory))  # spelled as before: "./d/" is "d"
    if not os.path.isdir(root):
        raise UsageError(f"directory does not exist: {root}")
    skip = {os.path.realpath(p) for p in exclude}
    found: list[tuple[tuple[str, ...], str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        # os.walk lists folders (and links to folders, never followed) apart from everything else.
        keep = [
            d
            for d in dirnames
            if not _own_folder(d)
            and os.path.realpath(os.path.join(dirpath, d)) not in skip
            and not (d == HISTORY[0] and os.path.exists(os.path.join(dirpath, d, HISTORY[1])))
        ]
        dirnames[:] = sorted(keep) if recursive else []
        parts = tuple(dirpath.split(os.sep))
        for f in fnmatch.filter(filenames, pattern):
            if f.startswith((".", TMP_PREFIX)) or f in REPORT_FILES:
                continue
            found.append(((*parts, f), os.path.join(dirpath, f)))
    # Sorted as Paths sort (part by part: "a/x" before "a-b/x"), not as strings.
    found.sort(key=lambda pf: pf[0])
    return [f for _, f in found]


def output_dir_for(
    nc_file: str | os.PathLike[str],
    *,
    directory: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where a file's plots go: ``<stem>_results/`` beside it, or mirrored under ``output_dir``."""
    f = Path(nc_file)
    if output_dir is None:
        return f.with_name(f.stem + OUTPUT_SUFFIX)
    rel = f.relative_to(directory)
    return Path(output_dir) / rel.parent / rel.stem


def report_dir(directory: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None) -> Path:
    """The folder of the reports and (by default) the resume records."""
    return Path(output_dir or directory)


def png_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The valid, non-empty PNG files in ``folder``."""
    d = Path(folder)
    if not d.is_dir():
        return []
    good = []
    for p in sorted(d.glob("*.png")):
        try:
            with open(p, "rb") as fh:
                if fh.read(8) == PNG_SIGNATURE and p.stat().st_size > 8:
                    good.append(p)
        except OSError:
            continue
    return good


def check_for_output(item: Any, result: Any) -> str | None:
    """The extract output contract, run on the staged folder before it is published (``salvo.contract``):
    the built-in worker must leave at least one non-empty image that decodes; a ``--worker-command``
    at least one non-empty file other than logs. The reason of a silent failure, or None."""
    from salvo.contract import decodes_as_image, folder_listing, result_files

    out = Path(item.outputs[0] if item.outputs else item.params["output_dir"])
    if not out.is_dir():
        return f"exited 0 but wrote no output folder {out}"
    if "command" in item.params:  # a --worker-command: any result file, images or not
        if not result_files(out):
            return f"exited 0 but {out} holds no image nor any other result file, only {folder_listing(out)}"
        return None
    if not any(decodes_as_image(p) for p in png_files(out)):
        return f"exited 0 but {out} holds no valid PNG image that decodes (it holds {folder_listing(out)})"
    return None


#: The seed's worker prints this on stdout when it rightly skips a file (exit 0, no plots): ``skipped``.
SEED_SKIP_MESSAGE = "Skipping."
#: Placeholders a `--worker-command` template may use.
COMMAND_FIELDS = {"input", "output_dir", "name", "stem"}
BUILTIN_WORKER = Worker(
    "python",
    "salvo.extract:extract_plots",
    verify="salvo.extract:check_for_output",
    version="2",
    preload=("xarray", "netCDF4", "cftime", "matplotlib.pyplot"),
    stage=("output_dir",),
)


def extract_worker(worker_command: str | None = None) -> Worker:
    """The built-in plotting worker, or the user's command run with a staged output folder."""
    if worker_command is None:
        return BUILTIN_WORKER
    if not worker_command.strip():
        raise UsageError("--worker-command is empty")
    try:
        argv = shlex.split(worker_command)
    except ValueError as exc:
        raise UsageError(f"--worker-command cannot be parsed ({exc}): {worker_command!r}") from None
    unknown = sorted(set(template_fields(worker_command)) - COMMAND_FIELDS)
    if unknown:
        raise UsageError(
            f"unknown placeholder {{{unknown[0]}}} in --worker-command;"
            " use {input}, {output_dir}, {name} or {stem}"
        )
    program = argv[0]
    if "{" not in program and shutil.which(program) is None:
        raise UsageError(f"worker command not found: {program}")
    validate.command_argv(worker_command, "--worker-command")
    return Worker("python", "salvo.staged:run_staged_command", verify="salvo.extract:check_for_output")


def batch_worker(plan: "Plan", worker_command: str | None = None) -> Worker:
    """The worker a planned batch runs: the seed's own in its layout, else :func:`extract_worker`."""
    if plan.seed_layout:
        from salvo.extract.seed_layout import SEED_WORKER

        return SEED_WORKER
    return extract_worker(worker_command)


def plan_items(
    files: Sequence[str | os.PathLike[str]],
    *,
    directory: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
    worker_command: str | None = None,
    dpi: int | None = None,
) -> list[Item]:
    """One item per input file, with its output folder (absolute paths: keys do not depend on the cwd).

    Paths are handled as strings, each spelled exactly as ``Path`` would (``output_dir_for``):
    10,000 files made 140,000 ``Path`` objects here, more than half of a resumed batch's planning.
    """
    items = []
    directory = os.path.realpath(directory)  # what Path.resolve() gives
    out_root = None if output_dir is None else os.path.realpath(output_dir)
    prefix = directory if directory.endswith(os.sep) else directory + os.sep
    out_prefix = None if out_root is None else out_root if out_root.endswith(os.sep) else out_root + os.sep
    cwd = os.getcwd()
    cwd_prefix = cwd if cwd.endswith(os.sep) else cwd + os.sep
    linked: dict[str, str] = {}  # a folder spelled through a link -> where it is in the input folder
    keep_dpi = not worker_command and dpi is not None and dpi != DEFAULT_DPI
    for p in files:
        text = os.fspath(p)
        absolute = os.path.normpath(text if text.startswith(os.sep) else cwd_prefix + text)  # abspath, one getcwd()
        rel = absolute[len(prefix) :] if absolute.startswith(prefix) else ""
        if not rel or rel.startswith(".."):  # the folder was spelled through a link: compare resolved folders
            folder, name = os.path.split(absolute)
            folder_rel = linked.get(folder)
            if folder_rel is None:
                folder_rel = linked[folder] = os.path.relpath(os.path.realpath(folder), directory)
            rel = os.path.join(folder_rel, name)
            if rel.startswith(".."):
                raise UsageError(f"{Path(p)} is not inside {Path(directory)}")
            rel = os.path.normpath(rel)  # "./a.nc" is "a.nc", as a Path spells it
        # rel is normalised and relative: plain concatenation is what os.path.join gives.
        f = prefix + rel
        cut = rel.rfind(os.sep)
        sub, name = (rel[:cut], rel[cut + 1 :]) if cut >= 0 else ("", rel)
        stem = _stem(name)
        if out_root is None:
            out = f[: len(f) - len(name)] + stem + OUTPUT_SUFFIX
        else:
            out = out_prefix + (sub + os.sep if sub else "") + stem
        item_id = rel if os.sep == "/" else Path(rel).as_posix()
        if worker_command:
            params = {
                "command": worker_command,
                "stage": {"output_dir": out},
                "input": f,
                "name": name,
                "stem": stem,
                "skip_message": SEED_SKIP_MESSAGE,
            }
        else:
            params = {"input": f, "output_dir": out}
            if keep_dpi:
                params["dpi"] = int(dpi)  # type: ignore[arg-type]
        items.append(Item(item_id, inputs=(f,), params=params, outputs=(out,)))
    return items


def _stem(name: str) -> str:
    """``Path(name).stem``: the name without its last suffix (``a.tar.nc`` -> ``a.tar``; ``.x`` and ``a.`` stay)."""
    i = name.rfind(".")
    return name[:i] if 0 < i < len(name) - 1 else name


def check_plan(
    items: Sequence[Item],
    *,
    directory: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None,
    state: str | None = None,
) -> None:
    """Refuse, with one line naming both paths, a plan where an output is, contains or is inside
    an input, a folder Salvo uses (records, reports), or another item's output.

    Two inputs that would share one output folder (``a.nc`` and ``a.nc4``) are refused too.
    """
    root = report_dir(directory, output_dir)
    reserved = [root / STATE_DIR, *(root / name for name in REPORT_FILES), root / HISTORY[0]]
    from salvo.storage import location_kind  # the one path/URL/block decision (fsspec: imported on use)

    kind, where = location_kind(state, "--state") if state else ("", "")
    if kind == "local":
        reserved.append(Path(where))
    # Every output resolved once (its folder once for all its siblings), kept for the layout check.
    folders: dict[str, str] = {}
    local = [it for it in items if "://" not in it.outputs[0]]
    outs = list(zip([it.id for it in local], validate.resolved_texts([it.outputs[0] for it in local], folders)))
    # check_layout compares every input with every output; hand it only the inputs that can be in a
    # relation with some output (is, contains, is inside), found through sets, one walk up per folder: O(n).
    ancestors = validate.Ancestors()
    resolved = {out for _, out in outs}
    near = set(resolved)
    for folder in {os.path.dirname(out) for out in resolved}:
        near.update(ancestors.of_folder(folder))
    below_output: dict[str, bool] = {}  # folder -> whether it is an output or inside one

    def suspect(r: str) -> bool:
        if r in near:
            return True
        folder = os.path.dirname(r)
        hit = below_output.get(folder)
        if hit is None:
            hit = below_output[folder] = folder != r and any(q in resolved for q in ancestors.of_folder(folder))
        return hit

    inputs = [it.inputs[0] for it in items]
    validate.check_resolved_layout(
        outs,
        inputs=[p for p, r in zip(inputs, validate.resolved_texts(inputs, folders)) if suspect(r)],
        reserved=[p for p, r in zip(reserved, validate.resolved_texts(reserved, folders)) if suspect(r)],
        ancestors=ancestors,
    )


def unreadable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why an input cannot be read (a dangling link, a FIFO, no permission, an I/O error), or None.

    Checked without blocking and before any hashing, so such a file is its own item's error and the
    rest of the batch runs.
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        return f"cannot read {p}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"cannot read {p}: not a regular file (a FIFO, socket or device)"
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.read(fd, 1)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"cannot read {p}: {exc.strerror or exc}"
    return None


def unreadable_results(items: Sequence[Item]) -> list[ItemResult]:
    """An `error` result (never retried) for each item whose input cannot be read."""
    out = []
    for it in items:
        why = unreadable_reason(it.inputs[0])
        if why:
            out.append(ItemResult(it.id, Status.ERROR, reason=why, exit_code=EXIT_INPUT_ERROR))
    return out


def has_existing_output(item: Item) -> bool:
    """The seed's --skip-existing test: the output folder already holds PNG plots (in the seed
    layout, as the seed looked: a PNG anywhere below ``<stem>/``)."""
    if "seed" in item.params:
        from salvo.extract.seed_layout import has_existing_plots

        return has_existing_plots(item)
    return bool(png_files(item.outputs[0]))


# --- the seed's batch_resume.txt ------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _known_lists(root: str | os.PathLike[str]) -> list[str]:
    try:
        return (Path(root) / STATE_DIR / WRITTEN_MARK).read_text().split()
    except OSError:
        return []


def remember_resume_lists(
    root: str | os.PathLike[str], texts: Iterable[str], marks: Iterable[str] = (), replaced: bool = False
) -> None:
    """Remember resume lists Salvo wrote or already imported, by hash: they are not imported again
    (their files have resume records now, and an edited input must be processed again).
    ``marks``: other tokens (the journal Salvo appends to while a batch runs, by device and inode).
    ``replaced``: the list in ``root`` is being replaced, so an earlier journal's mark is dropped
    (its inode number may be reused by another file)."""
    known = _known_lists(root)
    if replaced:
        known = [k for k in known if not k.startswith("journal:")]
    known += [d for d in [*map(_digest, texts), *marks] if d not in known]
    atomic_write_text(Path(root) / STATE_DIR / WRITTEN_MARK, "".join(f"{d}\n" for d in known[-100:]))


def write_resume_file(root: str | os.PathLike[str], finished: Iterable[str]) -> Path:
    """Write the seed's ``batch_resume.txt``: one finished file per line, relative to the input folder
    (in the seed layout: as the seed's glob spelled it). While a batch runs it is appended to
    instead, a line per finished file (``salvo.extract.journal``)."""
    text = "".join(f"{i}\n" for i in finished)
    path = atomic_write_text(Path(root) / RESUME_FILE, text)
    remember_resume_lists(root, [text], replaced=True)
    return path


def resume_files(
    directory: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None,
    cwd: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Seed-era ``batch_resume.txt`` files not yet imported: in the report folder, the input folder
    or the cwd (where the seed wrote it). The list Salvo itself wrote is not one of them."""
    written = set(_known_lists(report_dir(directory, output_dir))) | set(_known_lists(directory))
    seen, out = set(), []
    for folder in (report_dir(directory, output_dir), Path(directory), Path(cwd or os.getcwd())):
        p = folder / RESUME_FILE
        key = os.path.realpath(p)
        if key in seen or not p.is_file():
            continue
        seen.add(key)
        try:
            if _digest(p.read_text(encoding="utf-8", errors="replace")) in written or journal_mark(p.stat()) in written:
                continue
        except OSError as exc:
            raise UsageError(f"cannot read {p}: {exc.strerror or exc}") from None
        out.append(p)
    return out


def read_resume_file(path: str | os.PathLike[str]) -> list[str]:
    """The entries of a ``batch_resume.txt``: one processed file per line; blank and ``#`` lines ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def seed_resume_results(
    items: Sequence[Item],
    *,
    directory: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> list[ItemResult]:
    """Items a seed-era ``batch_resume.txt`` lists as processed AND whose plots exist: finished.

    The seed wrote the file in its working directory, with each file as it found it (``data/a.nc``,
    ``./a.nc``, an absolute path or a bare name); every spelling is matched against the inputs.
    Files it lists whose output folder holds no plot are processed as usual.
    """
    by_path = {os.path.realpath(it.inputs[0]): it for it in items}
    by_id = {it.id: it for it in items}
    bases = [Path(cwd or os.getcwd()), Path(directory)]
    out: dict[str, ItemResult] = {}
    for rf in resume_files(directory, output_dir, cwd):
        for entry in read_resume_file(rf):
            it = by_id.get(entry)
            if it is None:
                cands = [Path(entry)] if os.path.isabs(entry) else [b / entry for b in (*bases, rf.parent)]
                it = next((by_path[k] for k in (os.path.realpath(c) for c in cands) if k in by_path), None)
            if it is None or it.id in out or not has_existing_output(it):
                continue
            out[it.id] = ItemResult(
                it.id,
                Status.SUCCESS,
                reason=f"finished by an earlier run ({rf} lists it; its plots exist)",
                outputs=list(it.outputs),
                cached=True,
            )
    return list(out.values())


def resume_entry(item: Item) -> str:
    """The item's line in ``batch_resume.txt``: its id (relative to ``--directory``), or in the seed
    layout the path as the seed's glob spelled it."""
    seed = item.params.get("seed")
    return seed["file"] if seed else item.id


def check_names(files: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse a file whose name holds a line break: ``batch_resume.txt`` (one name a line, as the
    seed reads it) cannot list it, and an escape would be read by the seed as another name."""
    for f in files:
        text = os.fspath(f)
        if any(c in LINE_BREAKS for c in text):
            raise UsageError(
                f"file name holds a line break, which batch_resume.txt (one name a line) cannot list: {text!r}; "
                "rename it or narrow --pattern"
            )


@dataclass
class Plan:
    """A checked batch: its items and the results decided before running (unreadable inputs, seed resume)."""

    items: list[Item]
    settled: list[ItemResult]
    resume_lists: list[Path] = field(default_factory=list)  # the seed-era batch_resume.txt files imported
    seed_layout: str | None = (
        None  # why the seed's own layout is used (``python extract_results.py FILE``, ``<stem>/``)
    )
    root: Path | None = None  # the report folder (the working folder in the seed layout)


def plan_batch(
    directory: str,
    *,
    pattern: str = "*.nc",
    output_dir: str | None = None,
    recursive: bool = False,
    worker_command: str | None = None,
    state: str | None = None,
    dpi: int | None = None,
    resume: bool = False,
    cwd: str | None = None,
    seed_layout: bool | None = False,
    worker_script: str | None = None,
) -> Plan:
    """Discover, plan and check a batch; nothing is written. Raises `UsageError` for a bad layout.

    ``seed_layout``: True runs the seed's own worker in its layout (``salvo.extract.seed_layout``)
    in the working folder ``cwd``; None detects it (only when no flag of Salvo's own layout is given).
    """
    from salvo.extract import seed_layout as seed

    workdir = cwd or os.getcwd()
    script = worker_script or seed.SEED_SCRIPT
    own_layout = {
        "--worker-command": worker_command,
        "--output-dir": output_dir,
        "--recursive": recursive,
        "--dpi": dpi,
    }
    if seed_layout:
        given = [flag for flag, value in own_layout.items() if value]
        if given:
            raise UsageError(
                f"--seed-layout runs the seed's own worker in <stem>/ of the working folder; {given[0]} does not apply"
            )
    exclude = [output_dir] if output_dir else []
    files = discover_inputs(directory, pattern=pattern, recursive=recursive, exclude=exclude)
    check_names(files)
    why = None
    if seed_layout:
        why = "--seed-layout"
    elif seed_layout is None and not any(own_layout.values()):
        names = [f.name for f in files]
        why = seed.detect(workdir, names, script=script, state=state or os.path.join(workdir, STATE_DIR))
    if worker_script is not None and not why:
        raise UsageError("--worker-script names the seed's worker; it applies with --seed-layout only")
    if why:
        seed.check_script(workdir, script)
        seed.python_program()
        script_path = os.path.realpath(os.path.join(workdir, script))
        files = [f for f in files if os.path.realpath(f) != script_path]
        items = seed.plan_seed_items([os.fspath(f) for f in files], directory=directory, workdir=workdir, script=script)
        root = Path(workdir)
        check_plan(items, directory=directory, output_dir=workdir, state=state)
    else:
        items = plan_items(files, directory=directory, output_dir=output_dir, worker_command=worker_command, dpi=dpi)
        root = report_dir(directory, output_dir)
        check_plan(items, directory=directory, output_dir=output_dir, state=state)
    settled = unreadable_results(items)
    lists = resume_files(directory, root if why else output_dir, cwd) if resume else []
    if lists:
        bad = {r.item_id for r in settled}
        settled += seed_resume_results(
            [it for it in items if it.id not in bad],
            directory=directory,
            output_dir=root if why else output_dir,
            cwd=cwd,
        )
    return Plan(items, settled, lists, seed_layout=why, root=root)
