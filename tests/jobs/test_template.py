"""Safe rendering: only three placeholders, no format-string tricks, values that load back as strings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from salvo.errors import UsageError
from salvo.jobs.naf import parse_naf
from salvo.jobs.schema import load_job, parse_job
from salvo.jobs.template import default_template_path, render_template

NAF = parse_naf("43.2")


@pytest.mark.parametrize(
    "field",
    [
        "{naf_code.__class__}",
        "{naf_code.__class__.__mro__}",
        "{0}",
        "{}",
        "{naf_code[0]}",
        "{profile.upper}",
        "{niche_name.__init__.__globals__}",
        "{__builtins__}",
    ],
)
def test_format_string_injection_is_refused(field: str) -> None:
    with pytest.raises(UsageError, match="unknown placeholder") as info:
        render_template(f"niche: x\nv: {field}\n", naf=NAF, profile="quick")
    assert field in str(info.value)


@pytest.mark.parametrize("field", ["{naf_code!r}", "{naf_code:>20}", "{profile!s}"])
def test_conversion_and_format_spec_are_refused(field: str) -> None:
    with pytest.raises(UsageError, match="format spec or conversion"):
        render_template(f"v: {field}\n", naf=NAF, profile="quick")


def test_unbalanced_brace_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="invalid braces"):
        render_template("v: {naf_code\n", naf=NAF, profile="quick")


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown profile 'huge'"):
        render_template("v: 1\n", naf=NAF, profile="huge")


def test_values_load_back_as_strings_in_every_yaml_context() -> None:
    text = (
        "a: {naf_code}\nb: x-{naf_code}\nc:\n  - {naf_code}\nd: [{naf_code}, {profile}]\n"
        "e: \"{naf_code}\"\nf: 'n {naf_code}'\ng: {{k: {naf_code}}}\n"
    )
    data = yaml.safe_load(render_template(text, naf=parse_naf("43"), profile="deep"))
    assert data == {"a": "43", "b": "x-43", "c": ["43"], "d": ["43", "deep"], "e": "43", "f": "n 43", "g": {"k": "43"}}


def test_default_template_is_shipped_and_renders_a_valid_job(tmp_path: Path) -> None:
    assert default_template_path().is_file()
    text = render_template(default_template_path().read_text(), naf=parse_naf("6920Z"), profile="standard")
    (tmp_path / "j.yaml").write_text(text)
    spec = load_job(tmp_path / "j.yaml")
    assert (spec.niche, spec.profile.name, [c.dotted for c in spec.naf], spec.active_only) == (
        "naf_6920Z",
        "standard",
        ["69.20Z"],
        True,
    )
    assert spec.sample_rows == 100_000


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ("profile: quick\nfilters: {naf_include: ['43']}\n", "'niche'"),
        ("niche: n\nprofile: huge\nfilters: {naf_include: ['43']}\n", "'profile'"),
        ("niche: n\nprofile: quick\nfilters: {naf_include: [43]}\n", "'filters.naf_include[0]'"),
        ("niche: n\nprofile: quick\nfilters: {naf_include: ['4X']}\n", "'filters.naf_include[0]'"),
        ("niche: n\nprofile: quick\nfilters: {naf_include: ['43'], active_only: 'yes'}\n", "'filters.active_only'"),
        ("niche: n\nprofile: quick\nfilters: {naf_include: ['43'], activ_only: true}\n", "'filters.activ_only'"),
        ("niche: n\nprofile: quick\nfilters: {naf_include: ['43']}\nsample: -3\n", "'sample'"),
        ("niche: ../x\nprofile: quick\nfilters: {naf_include: ['43']}\n", "'niche'"),
        ("niche: n\nprofile: quick\nfilters: {naf_include: ['43']}\noutput: {formats: [xlsx]}\n", "'output.formats'"),
    ],
)
def test_schema_errors_name_the_file_and_the_field(doc: str, field: str, tmp_path: Path) -> None:
    path = tmp_path / "naf_x.yaml"
    path.write_text(doc)
    with pytest.raises(UsageError) as info:
        load_job(path)
    assert str(path) in str(info.value) and f"field {field}" in str(info.value)


def test_invalid_yaml_names_the_file_and_line() -> None:
    with pytest.raises(UsageError, match=r"^jobs/a.yaml: not valid YAML at line \d+, column \d+: "):
        parse_job("niche: a\nprofile: [quick\n", source="jobs/a.yaml")


def test_yaml_tags_are_not_executed() -> None:
    with pytest.raises(UsageError, match="not valid YAML"):
        parse_job("niche: !!python/object/apply:os.system ['true']\n", source="evil.yaml")
