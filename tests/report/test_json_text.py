"""salvo.report.json_text writes the JSON report and --json: the very text of json.dumps(indent=2, default=str)."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import pytest

from salvo.outcome import ItemResult, Status
from salvo.report import json_text

pytestmark = pytest.mark.pure


class Colour(str, enum.Enum):
    RED = "r\u00e9d"


class Level(enum.IntEnum):
    HIGH = 3


NAN, INF = float("nan"), float("inf")
SCALARS = ["", "é 日本 \ud800", "\n\t\"\\/", 0, -7, 10**30, 1.5, -0.0, 1e300, NAN, INF, -INF, True, False, None,
           Colour.RED, Level.HIGH, Path("/a/b")]


def _nested(depth: int) -> object:
    """A list nested ``depth`` deep (deeper than json_text encodes itself: json.dumps takes over)."""
    value: object = {"x": 1}
    for _ in range(depth):
        value = [value]
    return value


def _docs() -> list[object]:
    docs: list[object] = [*SCALARS, [], {}, [[]], [{}], {"a": []}, {"a": {}}, SCALARS, {str(i): v for i, v in enumerate(SCALARS)},
                          {1: "int key", 1.5: "float key", True: "bool key", None: "none key"}, ("a", ("b",)),
                          {"deep": _nested(40)}]
    # Lists of dicts with the same keys (encoded column by column), each column of one kind or mixed.
    for v in SCALARS:
        docs.append([{"k": v, "n": i} for i in range(5)])
    for column in ([None, 1.5, NAN, None], [None, 1, 2], [True, None, False], [{}, None, {}], [{}, {"x": 1}, {}], [["a"], [], None, ["b", "c"]],
                   [["a"], [1]], [(), ("x",), ["y"]], ["s", None, "t"], [1, True, 2], [1, 2.0, 3], [Colour.RED, "x", "y"], [INF, 1.0, 2.0]):
        rows = [{"a": v, "z": 0} for v in column * 2]
        docs += [rows, {"items": rows}, [rows, rows]]
    docs.append([{"a": 1, "b": 2}, {"b": 2, "a": 1}] * 3)  # same keys, another order: not one table
    docs.append([{"a": 1}, {"a": 2}, {"b": 3}, {"a": 4}, {"a": 5}])
    results = [ItemResult(f"f{i}.nc", [Status.SUCCESS, Status.ERROR][i % 2], reason="x" * i, exit_code=i % 3 or None, duration_s=i / 7,
                          peak_rss_mb=None if i % 2 else 1.5 * i, outputs=[f"/out/f{i}"] * (i % 3), metrics={"m": [i, {"n": None}]} if i % 4 == 0 else {},
                          cached=bool(i % 2)) for i in range(12)]
    docs.append({"summary": {"total": 12}, "items": [r.to_dict() for r in results], "reports": {"json": "/out/batch_summary.json"}})
    return docs


@pytest.mark.parametrize("doc", _docs())
def test_the_same_text_as_json_dumps(doc: object) -> None:
    assert json_text(doc) == json.dumps(doc, indent=2, default=str)


def test_what_json_refuses_is_refused_the_same_way() -> None:
    with pytest.raises(TypeError, match="keys must be"):
        json_text({(1, 2): 3})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text({"loop": loop})
