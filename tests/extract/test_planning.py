"""Planning handles paths as strings for speed; every path must be spelled as ``pathlib`` spells it.

The resume key of an item hashes its input and output paths, so a path spelled differently
(``d/./x.nc``, a trailing ``/``) would silently run a finished batch again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salvo.extract import discover_inputs, output_dir_for, plan_batch, plan_items

pytestmark = pytest.mark.pure

NAMES = ["x.nc", "y.tar.nc", "a.", "noext", "sub/z.nc", "sub-x/w.nc", "sp ace/q.nc", "a.b/c.nc", "sub/deeper/v.nc"]


def _tree(root: Path) -> Path:
    d = root / "d"
    for name in NAMES:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text("data\n")
    (root / "alias").symlink_to(d)  # the input folder spelled through a link
    return d


def _expected(files: list[Path], directory: Path, output_dir: Path | None) -> list[tuple[str, str, str]]:
    """(id, input, output) of each file, computed with pathlib as planning did before."""
    real = directory.resolve()
    out = None if output_dir is None else output_dir.resolve()
    rows = []
    for p in files:
        f = real / os.path.relpath(os.path.realpath(p), real)
        rows.append((f.relative_to(real).as_posix(), str(f), str(output_dir_for(f, directory=real, output_dir=out))))
    return rows


@pytest.mark.parametrize("spelling", ["d", "d/", "./d", "{root}/d", "{root}//d/", "alias", "{root}/alias/"])
@pytest.mark.parametrize("out", [None, "o", "{root}/o2/", "./o3//x"])
def test_items_are_spelled_as_pathlib_spells_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str, out: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path)
    directory = spelling.format(root=tmp_path)
    output_dir = None if out is None else out.format(root=tmp_path)
    plan = plan_batch(
        directory, pattern="*", output_dir=output_dir, recursive=True, worker_command="echo {input} {output_dir}"
    )
    files = discover_inputs(directory, pattern="*", recursive=True)
    want = _expected(files, Path(directory), None if output_dir is None else Path(output_dir))
    assert [(it.id, it.inputs[0], it.outputs[0]) for it in plan.items] == want
    for it in plan.items:
        assert it.params["name"] == Path(it.inputs[0]).name and it.params["stem"] == Path(it.inputs[0]).stem
        assert it.params["input"] == it.inputs[0] and it.params["stage"] == {"output_dir": it.outputs[0]}


def test_discovery_sorts_as_paths_do_not_as_strings(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    found = discover_inputs(d, pattern="*", recursive=True)
    assert found == sorted(found)
    rel = [p.relative_to(d).as_posix() for p in found]
    assert rel.index("sub/z.nc") < rel.index("sub-x/w.nc")  # as strings, "sub-x/" sorts before "sub/"
    assert sorted(rel) == sorted(NAMES)


def test_a_file_reached_through_a_linked_folder_keeps_its_name_in_the_folder(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    items = plan_items([tmp_path / "alias" / "sub" / "z.nc"], directory=d)
    assert [(it.id, it.inputs[0], it.outputs[0]) for it in items] == [
        ("sub/z.nc", str(d.resolve() / "sub" / "z.nc"), str(d.resolve() / "sub" / "z_results"))
    ]


def test_a_real_bids_tree_is_planned_as_pathlib_spells_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The public BIDS fixture (tests/data, copied with their provenance): real names (``sub-32_task-rest_eeg.vhdr``,
    ``*.nii.gz``), nested folders, ``sub-32`` beside ``sub-32_...``; read through a link and from
    relative spellings. Its EEG recordings share a stem (``.vhdr``, ``.vmrk``, ``.dat``): planned
    together they would write one output folder, which is refused in one line."""
    from salvo.errors import UsageError
    from tests.helpers import PUBLIC_FIXTURES

    real = PUBLIC_FIXTURES / "bids" / "eeg_rest_fmri"
    (tmp_path / "linked").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    for pattern in ("*.gz", "*.vhdr"):
        for directory, out in (("linked", None), (str(real), "outs"), ("./linked/", "./o//x")):
            plan = plan_batch(
                directory, pattern=pattern, output_dir=out, recursive=True, worker_command="echo {input} {output_dir}"
            )
            files = discover_inputs(directory, pattern=pattern, recursive=True)
            assert len(files) >= 6 and files == sorted(files)
            want = _expected(files, Path(directory), None if out is None else Path(out))
            assert [(it.id, it.inputs[0], it.outputs[0]) for it in plan.items] == want
            assert {it.inputs[0] for it in plan.items} == {str(p.resolve()) for p in real.rglob(pattern) if p.is_file()}
    with pytest.raises(UsageError, match=r"sub-32_task-rest_eeg\.\w+ would write the same output"):
        plan_batch("linked", pattern="*", recursive=True, worker_command="echo {input} {output_dir}")
