"""Fixtures of the subjects tests."""

import pytest


@pytest.fixture
def plan_dir(tmp_path):
    """Where a test keeps the fake pipeline's behaviour plan and run markers."""
    return tmp_path / "plan"
