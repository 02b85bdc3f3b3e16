"""Golden cases (snakemake style): a folder of inputs and expected rendered YAML, one helper to compare."""

from __future__ import annotations

from pathlib import Path

import yaml

from salvo.errors import UsageError
from salvo.jobs.batch import render_jobs

GOLDEN = Path(__file__).parent / "golden"


def case_names() -> list[str]:
    """Every golden case folder."""
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "case.yaml").is_file())


def run_case(name: str, *, jobs_dir: Path) -> None:
    """Render the case into ``jobs_dir`` and compare with ``expected/`` (or with the expected error)."""
    folder = GOLDEN / name
    case = yaml.safe_load((folder / "case.yaml").read_text())
    template = folder / case["template"] if "template" in case else None
    try:
        jobs = render_jobs(case["codes"], template=template, profile=case["profile"], jobs_dir=jobs_dir)
    except UsageError as exc:
        assert "error" in case, f"{name}: unexpected error: {exc}"
        assert case["error"] in str(exc), f"{name}: error {str(exc)!r} lacks {case['error']!r}"
        assert "\n" not in str(exc)
        assert not list(jobs_dir.glob("*.yaml")), "nothing may be written when a job is invalid"
        return
    assert "error" not in case, f"{name}: expected the error {case['error']!r}"
    expected = sorted((folder / "expected").glob("*.yaml"))
    assert [p.name for p in expected] == sorted(j.path.name for j in jobs)
    for exp in expected:
        got = (jobs_dir / exp.name).read_text()
        assert got == exp.read_text(), f"{name}/{exp.name} differs from the golden file"
