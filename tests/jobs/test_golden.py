"""Golden rendering: every case folder under golden/ renders exactly its expected YAML (or its error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobs.golden_helper import case_names, run_case


@pytest.mark.parametrize("name", case_names())
def test_golden_case(name: str, tmp_path: Path) -> None:
    run_case(name, jobs_dir=tmp_path / "jobs")


def test_golden_cases_cover_success_and_errors() -> None:
    names = case_names()
    assert {"default_subclass", "default_levels", "custom_unquoted", "inject_attribute", "inject_index"} <= set(names)
