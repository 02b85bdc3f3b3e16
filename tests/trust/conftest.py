"""Fixtures of the trust tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo.jobs.synth import write_synthetic_sirene


@pytest.fixture(scope="session")
def sirene_for_trust(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 synthetic SIRENE establishments (the jobs pipeline's input format)."""
    return write_synthetic_sirene(
        tmp_path_factory.mktemp("sirene") / "small.parquet", rows=2_000, seed=1, row_group_rows=1_000
    )
