"""NAF rév. 2 codes: accepted forms, normalisation, malformed codes, and prefix matching."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salvo.errors import UsageError
from salvo.jobs.naf import NOMENCLATURE_FILE, NafCode, nearest_codes, nomenclature, parse_naf, parse_naf_list
from salvo.jobs.schema import parse_job
from salvo.jobs.synth import NAF_SUBCLASSES

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("text", "level", "compact", "dotted"),
    [
        ("43", "division", "43", "43"),
        ("43.2", "group", "432", "43.2"),
        ("432", "group", "432", "43.2"),
        ("43.29", "class", "4329", "43.29"),
        ("43.29A", "subclass", "4329A", "43.29A"),
        ("4329A", "subclass", "4329A", "43.29A"),
        (" 69.20z ", "subclass", "6920Z", "69.20Z"),
    ],
)
def test_accepted_forms_normalise(text: str, level: str, compact: str, dotted: str) -> None:
    naf = parse_naf(text)
    assert (naf.level, naf.compact, naf.dotted, naf.niche_name) == (level, compact, dotted, f"naf_{compact}")


@pytest.mark.parametrize(
    "bad", ["", "4", "43.", "43.2A", "69.2Z", "6920ZZ", "ABCDE", "43..2", "00", "43-29A", "43.29A1"]
)
def test_malformed_code_is_an_error_naming_it(bad: str) -> None:
    with pytest.raises(UsageError, match="malformed NAF code") as info:
        parse_naf(bad)
    assert repr(bad) in str(info.value)


def test_list_stops_at_the_first_malformed_code_and_drops_duplicates() -> None:
    assert [n.compact for n in parse_naf_list(["6920Z", "69.20Z", "43"])] == ["6920Z", "43"]
    with pytest.raises(UsageError, match="'X1'"):
        parse_naf_list(["6920Z", "X1"])
    with pytest.raises(UsageError, match="no NAF code"):
        parse_naf_list([])


def test_division_prefix_matches_only_its_own_subclasses() -> None:
    div = parse_naf("43")
    assert div.matches("43.29A") and div.matches("43.11Z")
    assert not div.matches("41.20A") and not div.matches("44.00Z") and not div.matches("4.3") and not div.matches(None)
    group = parse_naf("43.2")
    assert group.matches("43.22B") and not group.matches("43.32A") and not group.matches("43.1")
    sub = parse_naf("4329A")
    assert sub.matches("43.29A") and not sub.matches("43.29B")


@given(code=st.sampled_from(NAF_SUBCLASSES), cut=st.sampled_from([2, 4, 5]))
def test_prefix_match_equals_startswith(code: str, cut: int) -> None:
    prefix = parse_naf(code[:cut])
    for value in NAF_SUBCLASSES:
        expected = value.startswith(prefix.dotted + ("." if cut == 2 else ""))
        assert prefix.matches(value) == expected


# --- the codes are checked against NAF rév. 2 as INSEE publishes it (salvo/jobs/data/naf_rev2.csv) ---


def test_the_shipped_nomenclature_is_complete() -> None:
    levels = Counter(entry.level for entry in nomenclature().values())
    assert levels == {"section": 21, "division": 88, "group": 272, "class": 615, "subclass": 732}
    sections = sorted(c for c, e in nomenclature().items() if e.level == "section")
    assert sections == [chr(c) for c in range(ord("A"), ord("U") + 1)]
    # Every code's parent exists, in the same section: the levels nest as the nomenclature does.
    for code, entry in nomenclature().items():
        if entry.level != "section":
            parent = code[:2] if entry.level == "group" else (entry.section if entry.level == "division" else code[:-1])
            assert parent in nomenclature() and nomenclature()[parent].section == entry.section, code
    assert nomenclature()["69.20Z"].title == "Activités comptables"
    assert (NOMENCLATURE_FILE.parent / "PROVENANCE.md").is_file()


def test_every_code_parses_with_and_without_its_dot() -> None:
    for code, entry in nomenclature().items():
        if entry.level == "section":
            continue
        compact = code.replace(".", "")
        assert parse_naf(code).dotted == code and parse_naf(compact).dotted == code
        assert parse_naf(code).level == entry.level


def test_the_synthetic_sirene_uses_real_codes() -> None:
    assert all(parse_naf(code).dotted == code for code in NAF_SUBCLASSES)


@pytest.mark.parametrize(
    ("code", "said", "nearest"),
    [
        ("6902Z", "sub-class 69.02Z does not exist in NAF rév. 2", ["69.20Z", "68.32B", "69.10Z"]),
        ("69.02Z", "sub-class 69.02Z does not exist", ["69.20Z", "68.32B", "69.10Z"]),
        ("40", "division 40 does not exist in NAF rév. 2", ["39", "41"]),
        ("4329C", "sub-class 43.29C does not exist", ["43.29A", "43.29B", "43.31Z"]),
        ("43.20", "class 43.20 does not exist", ["43.21", "43.22", "43.29", "43.13"]),
        ("9999Z", "sub-class 99.99Z does not exist", ["99.00Z"]),
        ("100", "group 10.0 does not exist", ["10.1", "10.2", "10.3", "10.4"]),
    ],
)
def test_a_code_that_does_not_exist_is_refused_naming_the_nearest(code: str, said: str, nearest: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        parse_naf(code)
    msg = str(info.value)
    assert msg.startswith(f"unknown NAF code {code!r}: {said}") and len(msg.splitlines()) == 1
    assert nearest_codes(parse_naf_shape(code)) == nearest
    for near in nearest:  # each suggestion exists, and is named with its title
        assert f"{near} ({nomenclature()[near].title})" in msg


def test_a_section_letter_is_refused_with_its_divisions() -> None:
    with pytest.raises(UsageError, match=r"'f' is section F \(CONSTRUCTION\).*: 41, 42, 43$"):
        parse_naf("f")
    with pytest.raises(UsageError, match="sections A to U only"):
        parse_naf("V")


def test_a_yaml_job_naming_a_code_that_does_not_exist_is_refused_at_its_field() -> None:
    with pytest.raises(UsageError) as info:
        parse_job("niche: n\nprofile: quick\nfilters: {naf_include: ['43', '6902Z']}\n", source="jobs/n.yaml")
    assert "'filters.naf_include[1]'" in str(info.value) and "nearest: 69.20Z" in str(info.value)


def parse_naf_shape(code: str) -> NafCode:
    """The code's shape without the existence check (what nearest_codes is given)."""
    digits = code.replace(".", "")
    letter = digits[-1] if digits[-1].isalpha() else ""
    return NafCode(digits=digits.rstrip(letter) if letter else digits, letter=letter)
