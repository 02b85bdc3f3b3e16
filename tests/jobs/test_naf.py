"""NAF rév. 2 codes: accepted forms, normalisation, malformed codes, and prefix matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salvo.errors import UsageError
from salvo.jobs.naf import parse_naf, parse_naf_list
from salvo.jobs.synth import NAF_SUBCLASSES


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


@pytest.mark.parametrize("bad", ["", "4", "43.", "43.2A", "69.2Z", "6920ZZ", "ABCDE", "43..2", "00", "43-29A", "43.29A1"])
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
