"""Helpers of the subjects tests: the fake pipeline command and its run counters."""

import json
import shlex
import sys
from pathlib import Path

FAKE = Path(__file__).with_name("fake_pipeline.py")


def fake_command(plan_path: Path) -> str:
    """A ``--pipeline-command`` template that runs the fake pipeline with a behaviour plan."""
    return (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} --id {{id}} --out {{work_dir}}"
        f" --plan {shlex.quote(str(plan_path))} {{options}}"
    )


def write_plan(folder: Path, behaviours: dict) -> Path:
    """Write the fake pipeline's behaviour plan; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.json"
    path.write_text(json.dumps(behaviours))
    return path


def runs(plan_path: Path, subject_id: str) -> int:
    """How many times the fake pipeline ran for a subject."""
    marker = plan_path.parent / "markers" / f"{subject_id}.runs"
    return len(marker.read_text().splitlines()) if marker.exists() else 0
