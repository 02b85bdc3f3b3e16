"""Fixtures of the jobs tests: small synthetic SIRENE files."""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo.jobs.synth import write_synthetic_sirene


@pytest.fixture(scope="session")
def sirene_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 synthetic establishments in small row groups."""
    return write_synthetic_sirene(
        tmp_path_factory.mktemp("sirene") / "small.parquet", rows=5_000, seed=1, row_group_rows=1_000
    )
