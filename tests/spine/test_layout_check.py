"""The one up-front layout check every command uses (salvo.validate.check_layout), directly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salvo.errors import UsageError
from salvo.validate import check_layout

pytestmark = pytest.mark.pure


def test_separate_outputs_beside_the_inputs_pass(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    check_layout(
        {f"f{i}": tmp_path / "out" / f"f{i}" for i in range(1000)},
        inputs=[tmp_path / "in"],
        reserved=[tmp_path / "out" / ".salvo"],
    )


@pytest.mark.parametrize(
    ("outputs", "inputs", "reserved", "says"),
    [
        ({"a": "out/a", "b": "out/a"}, [], [], "would write the same output"),
        ({"a": "out/a", "b": "out/a/b"}, [], [], "is inside the output of a"),
        ({"a": "in"}, ["in"], [], "is the input"),
        ({"a": "in/sub"}, ["in"], [], "is inside the input"),
        ({"a": "."}, ["in"], [], "contains the input"),
        ({"a": "out/logs"}, [], ["out/logs"], "is the folder Salvo uses"),
    ],
)
def test_overlapping_layouts_are_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outputs: dict, inputs: list, reserved: list, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    with pytest.raises(UsageError, match=says):
        check_layout(outputs, inputs=inputs, reserved=reserved)


def test_links_are_followed_for_the_folder_and_for_the_output_itself(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "in")  # a folder that is the input under another name
    with pytest.raises(UsageError, match="is inside the input"):
        check_layout({"a": tmp_path / "alias" / "a", "b": tmp_path / "out" / "b"}, inputs=[tmp_path / "in"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c").symlink_to(tmp_path / "in")  # an output folder that is a link to the input
    with pytest.raises(UsageError, match="is the input"):
        check_layout({"b": tmp_path / "out" / "b", "c": tmp_path / "out" / "c"}, inputs=[tmp_path / "in"])


def test_an_output_deep_inside_another_is_found_among_many_siblings(tmp_path: Path) -> None:
    outputs = {f"f{i}": tmp_path / "out" / f"f{i}" for i in range(1000)}
    outputs["late"] = tmp_path / "out" / "f7" / "x" / "y" / "late"  # checked after its folders were seen clean
    with pytest.raises(
        UsageError, match=r"the output of late \(.*/out/f7/x/y/late\) is inside the output of f7 \(.*/out/f7\)"
    ):
        check_layout(outputs)
    outputs["late"] = tmp_path / "out" / "f7x" / "late"  # a name that only starts like another output
    check_layout(outputs)


def test_many_paths_of_one_folder_resolve_as_each_alone_links_included(tmp_path: Path) -> None:
    from salvo.validate import LIST_FOLDER_FROM, resolved_text, resolved_texts

    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "alias").symlink_to(out)
    (out / "to_input").symlink_to(tmp_path / "in")  # an output that is a link to the input
    (out / "dangling").symlink_to(tmp_path / "nowhere")
    (out / "plain").mkdir()
    names = ["to_input", "dangling", "plain"] + [f"f{i}" for i in range(LIST_FOLDER_FROM)]  # listed once: many names
    paths = (
        [out / n for n in names]
        + [tmp_path / "alias" / n for n in names]
        + [tmp_path / "in", "/", tmp_path / "x" / ".." / "in"]
    )
    assert resolved_texts(paths) == [resolved_text(p) for p in paths]
    assert resolved_texts(paths)[0] == os.path.realpath(tmp_path / "in")
