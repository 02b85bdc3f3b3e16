"""salvo.report.json_text writes the JSON report and --json: what json.dumps(indent=2, default=str) means,
encoded faster."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import math
from pathlib import Path

import pytest

from salvo.outcome import ItemResult, Status
from salvo.report import json_text

pytestmark = pytest.mark.pure


class Colour(str, enum.Enum):
    RED = "r\u00e9d"


class Level(enum.IntEnum):
    HIGH = 3


Pair = collections.namedtuple("Pair", "a b")
SCALARS = [
    "",
    "é 日本",
    '\n\t"\\/',
    0,
    -7,
    1.5,
    -0.0,
    1e300,
    True,
    False,
    None,
    Colour.RED,
    Level.HIGH,
    Path("/a/b"),
    dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc),
    Pair(1, "x"),
]


def _docs() -> list[object]:
    results = [
        ItemResult(
            f"f{i}.nc",
            [Status.SUCCESS, Status.ERROR][i % 2],
            reason="x" * i,
            exit_code=i % 3 or None,
            duration_s=i / 7,
            peak_rss_mb=None if i % 2 else 1.5 * i,
            outputs=[f"/out/f{i}"] * (i % 3),
            metrics={"m": [i, {"n": None}]} if i % 4 == 0 else {},
            cached=bool(i % 2),
        )
        for i in range(12)
    ]
    return [
        *SCALARS,
        [],
        {},
        [[]],
        [{}],
        {"a": []},
        SCALARS,
        {str(i): v for i, v in enumerate(SCALARS)},
        {1: "int key", 1.5: "float key", True: "bool key", None: "none key"},  # noqa: F601 (the bool key on purpose)
        ("a", ("b",)),
        {
            "summary": {"total": 12},
            "items": [r.to_dict() for r in results],
            "reports": {"json": "/out/batch_summary.json"},
        },
    ]


@pytest.mark.parametrize("doc", _docs())
def test_the_same_document_as_json_dumps(doc: object) -> None:
    assert json.loads(json_text(doc)) == json.loads(json.dumps(doc, indent=2, default=str))


def test_indented_as_json_dumps_indents() -> None:
    doc = {
        "summary": {"total": 2, "failed": 0},
        "items": [{"id": "a", "outputs": []}, {"id": "b", "outputs": ["/x"]}],
        "e": {},
    }
    assert json_text(doc) == json.dumps(doc, indent=2)


def test_non_ascii_is_utf8_and_nan_is_null() -> None:
    text = json_text({"name": "Île-de-France", "x": math.nan, "y": math.inf})
    assert "Île-de-France" in text and json.loads(text) == {"name": "Île-de-France", "x": None, "y": None}


def test_what_orjson_cannot_encode_is_left_to_json() -> None:
    odd = "caf\udce9.nc"  # an undecodable file name, as os.listdir gives it
    assert json.loads(json_text({"f": odd, "big": 10**30})) == {"f": odd, "big": 10**30}
    assert json.loads(json_text({"deep": _nested(300)})) == json.loads(json.dumps({"deep": _nested(300)}))


def _nested(depth: int) -> object:
    value: object = {"x": 1}
    for _ in range(depth):
        value = [value]
    return value


def test_what_json_refuses_is_refused_the_same_way() -> None:
    with pytest.raises(TypeError, match="keys must be"):
        json_text({(1, 2): 3})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text({"loop": loop})
