"""The seed's own layout: a user's ``extract_results.py`` run unchanged, its plots in ``<stem>/``.

The seed (``batch_extract_results.py``) ran ``python extract_results.py FILE`` in the folder where
the user started it, ``FILE`` spelled as its glob found it (``--directory`` joined with the name),
and looked for PNG files (sub-folders count) in ``<stem>/`` of that working folder. Such a worker
writes relative to its working folder, so it cannot be given a staging folder to write into.
Instead each run gets a private *staging working folder*, ``.salvo-seed-staging/<stem>/<random>/``
in the working folder, holding links to what the worker reads (the script, ``FILE``'s first path
component, and the working folder's other entries, see :func:`write_links`). The worker runs there
unchanged; its ``<stem>/`` appears inside the staging folder, is checked there (a valid PNG
somewhere below it), and only then renamed over the working folder's ``<stem>/``. An earlier
good ``<stem>/`` is kept byte for byte when the new one fails its check or the worker fails.

A worker that exits 0 without a PNG and printed the seed's skip message (a stdout line holding
``Skipping.``, as for a file with a single time step) is ``skipped`` with that line as its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from salvo.errors import SkipItem, UsageError
from salvo.fsutil import TMP_PREFIX, atomic_write_text, publish_dir
from salvo.items import Item, Worker

#: The seed's worker script, in the working folder.
SEED_SCRIPT = "extract_results.py"
#: What the seed's worker prints on stdout when it rightly skips a file (a single time step).
SKIP_MESSAGE = "Skipping."  # the same as salvo.extract.SEED_SKIP_MESSAGE
#: In the working folder: the staging working folders (hidden: never inputs, never outputs).
STAGING_DIR = ".salvo-seed-staging"
#: In STAGING_DIR: the working folder's entries each staging folder links to (written once per batch).
LINKS_FILE = "links.json"
#: In the state folder: this batch ran in the seed layout (a later run detects it again).
LAYOUT_MARK = "seed_layout"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEED_WORKER = Worker(
    "python",
    "salvo.extract.seed_layout:run_seed_worker",
    verify="salvo.extract.seed_layout:check_seed_output",
    version="seed-1",
)


def stem_of(name: str) -> str:
    """``Path(name).stem``, as the seed named a file's output folder."""
    i = name.rfind(".")
    return name[:i] if 0 < i < len(name) - 1 else name


def png_tree(folder: str | os.PathLike[str]) -> list[Path]:
    """The valid PNG files at any depth below ``folder`` (the seed's ``rglob("*.png")``, each one
    checked: the PNG signature and more than the signature)."""
    d = Path(folder)
    if not d.is_dir():
        return []
    good = []
    for p in sorted(d.rglob("*.png")):
        try:
            with open(p, "rb") as fh:
                if fh.read(8) == PNG_SIGNATURE and fh.read(1):
                    good.append(p)
        except OSError:
            continue
    return good


def python_program() -> str:
    """The ``python`` the seed ran its worker with: ``python`` on PATH, else ``python3``."""
    found = shutil.which("python") or shutil.which("python3")
    if found is None:
        raise UsageError(
            "--seed-layout runs 'python extract_results.py FILE', but neither python nor python3 is on PATH"
        )
    return found


def check_script(workdir: str | os.PathLike[str], script: str) -> str:
    """The worker script's name, checked: a plain file name present in the working folder."""
    if not script or os.sep in script or script in (".", ".."):
        raise UsageError(f"--worker-script must be a file name in the working folder, not {script!r}")
    path = Path(workdir) / script
    if not path.is_file():
        raise UsageError(f"--seed-layout runs 'python {script} FILE' in {Path(workdir)}, but {path} is not there")
    return script


def globbed(directory: str, name_rel: str) -> str:
    """The path as the seed's glob spelled it: ``os.path.join(--directory, pattern)`` matched."""
    return os.path.join(directory, name_rel)


def detect(
    workdir: str | os.PathLike[str],
    names: Iterable[str],
    *,
    script: str = SEED_SCRIPT,
    state: str | os.PathLike[str] | None = None,
) -> str | None:
    """Why this working folder is in the seed layout, or None.

    Detected when the worker script is in the working folder and either an earlier Salvo run used
    the seed layout here (its state folder says so) or the seed left its ``batch_resume.txt`` beside
    an input's ``<stem>/`` folder holding a PNG. ``names``: the inputs' file names.
    """
    wd = Path(workdir)
    if not (wd / script).is_file():
        return None
    if state is not None and (Path(state) / LAYOUT_MARK).is_file():
        return f"an earlier run used it here ({Path(state) / LAYOUT_MARK})"
    if not (wd / "batch_resume.txt").is_file():
        return None
    for name in names:
        stem = stem_of(name)
        if (wd / stem).is_dir() and png_tree(wd / stem):
            return f"batch_resume.txt and {stem}/ with plots in {wd}"
    return None


def plan_seed_items(files: Sequence[str], *, directory: str, workdir: str, script: str) -> list[Item]:
    """One item per input: the seed's command line and its ``<stem>/`` output in the working folder.

    ``FILE`` is spelled as the seed's glob found it: ``--directory`` joined with the name, so
    relative to the working folder unless ``--directory`` is absolute. The worker script is an
    input too: editing it plots every file again, as a changed ``--worker-command`` does.
    """
    wd = os.path.realpath(workdir)
    root = os.path.realpath(directory)
    script_path = os.path.join(wd, script)
    items = []
    for f in files:
        name = os.path.basename(f)
        stem = stem_of(name)
        params = {"seed": {"script": script, "file": globbed(directory, name), "workdir": wd, "stem": stem}}
        items.append(
            Item(name, inputs=(os.path.join(root, name), script_path), params=params, outputs=(os.path.join(wd, stem),))
        )
    return items


def write_links(workdir: str | os.PathLike[str], items: Sequence[Item]) -> Path:
    """Record, once per batch, the working folder's entries a staging folder links to.

    Every entry except hidden and temporary ones, the report files, the batch's ``<stem>/`` output
    folders and its inputs (each item links its own input, or its first path component): a worker
    reading a configuration file or a helper beside it finds it, and the list does not grow with
    the number of inputs. Kept out of the items' parameters, so a new file in the working folder
    does not change any resume key.
    """
    from salvo.extract import REPORT_FILES

    wd = Path(workdir)
    taken = set(REPORT_FILES)
    for it in items:
        seed = it.params["seed"]
        taken.add(seed["stem"])
        taken.add(_first_component(seed["file"]))
    names = sorted(e.name for e in os.scandir(wd) if not e.name.startswith((".", TMP_PREFIX)) and e.name not in taken)
    return atomic_write_text(wd / STAGING_DIR / LINKS_FILE, json.dumps(names))


def _first_component(path: str) -> str:
    """``data`` for ``data/a.nc``, ``a.nc`` for ``./a.nc``; empty for an absolute path."""
    if os.path.isabs(path):
        return ""
    parts = [p for p in os.path.normpath(path).split(os.sep) if p not in ("", ".")]
    return parts[0] if parts else ""


def _links(workdir: str, script: str, file: str) -> list[str]:
    try:
        shared = json.loads((Path(workdir) / STAGING_DIR / LINKS_FILE).read_text())
    except (OSError, ValueError):
        shared = []
    first = _first_component(file)
    return sorted({*shared, script, *([first] if first else [])})


def run_seed_worker(*, seed: dict[str, str]) -> dict[str, Any]:
    """Run ``python SCRIPT FILE`` in a staging working folder; publish its ``<stem>/`` when it checks.

    Exit 0 with a valid PNG below ``<stem>/``: renamed over the working folder's ``<stem>/``.
    Exit 0 without one: skipped when stdout held the seed's skip message, else not published
    (the output check reports the silent failure; an earlier ``<stem>/`` stays as it was).
    Any other end: nothing published, and this process ends as the worker did.
    """
    from salvo.staged import end_like

    workdir, stem, script, file = seed["workdir"], seed["stem"], seed["script"], seed["file"]
    holder = Path(workdir) / STAGING_DIR / stem
    if holder.exists():  # left by a run that was killed: this item's lock is ours, nothing else uses it
        shutil.rmtree(holder, ignore_errors=True)
    holder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=holder))
    try:
        for name in _links(workdir, script, file):
            src = os.path.join(workdir, name)
            if os.path.lexists(src):
                os.symlink(src, stage / name)
        argv = [python_program(), script, file]
        print(f"$ cd {workdir} && {' '.join(argv)}  (staged in {stage})", flush=True)
        proc = subprocess.Popen(argv, cwd=stage, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        skip = None
        out = sys.stdout.buffer
        for raw in proc.stdout:  # type: ignore[union-attr]
            out.write(raw)
            out.flush()
            line = raw.decode("utf-8", "replace").strip()
            if SKIP_MESSAGE in line:
                skip = line
        code = proc.wait()
        if code != 0:
            shutil.rmtree(holder, ignore_errors=True)  # end_like does not return: no `finally` runs
            end_like(code)
        made = stage / stem
        if png_tree(made):
            publish_dir(made, Path(workdir) / stem)
            return {"outputs": [str(Path(workdir) / stem)]}
        if skip is not None:
            raise SkipItem(skip)
        what = f"{stem}/ holds no valid PNG" if made.is_dir() else f"it wrote no {stem}/ folder"
        kept = " (the earlier one is kept)" if png_tree(Path(workdir) / stem) else ""
        return {"outputs": [], "metrics": {"unpublished": f"exited 0 but {what}{kept}"}}
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def check_seed_output(item: Item, result: Any) -> str | None:
    """Verifier: the reason an exit-0 run is a silent failure, or None when its ``<stem>/`` was
    published and holds a valid PNG."""
    why = (result.metrics or {}).get("unpublished")
    if why:
        return str(why)
    out = item.outputs[0]
    if not result.outputs:
        return f"exited 0 but published no {Path(out).name}/"
    if not png_tree(out):
        return f"exited 0 but {out} holds no valid PNG plot"
    return None


def has_existing_plots(item: Item) -> bool:
    """The seed's ``--skip-existing`` test in its layout: ``<stem>/`` holds a PNG (any depth)."""
    return bool(png_tree(item.outputs[0]))


def mark_layout(state: str | os.PathLike[str]) -> None:
    """Remember, in a local state folder, that this working folder runs in the seed layout."""
    if "://" in os.fspath(state):
        return
    p = Path(state) / LAYOUT_MARK
    if not p.is_file():
        atomic_write_text(p, "python extract_results.py FILE; plots in <stem>/ of this folder\n")


def seed_layout_line(plan: Any) -> str:
    """The one line saying the seed's layout is used, and why."""
    script = plan.items[0].params["seed"]["script"] if plan.items else SEED_SCRIPT
    return (
        f"Seed layout ({plan.seed_layout}): each file runs as 'python {script} FILE' in {plan.root}, "
        "its plots checked and published in <stem>/ there"
    )
