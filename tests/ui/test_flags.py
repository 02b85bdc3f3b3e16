"""The shared flags on every batch command (recover and assembly included), with the same units, and
durations printed in human units. Parsing only: no server."""

from __future__ import annotations

import pytest

from cli.common import _shown, run_options
from cli.main import build_parser
from salvo.durations import human_duration

pytestmark = pytest.mark.pure

SHARED = ("--workers", "--retries", "--kill-grace", "--force", "--verbose", "--quiet", "--timeout")
BATCH_COMMANDS = {
    "extract": ["extract", "--directory", "d"],
    "assembly run": ["assembly", "run", "exp1"],
    "subjects": ["subjects", "--manifest", "m.json", "--out", "o"],
    "jobs batch": ["jobs", "batch", "--naf", "43", "--input", "i.parquet", "--output-dir", "o"],
    "recover": ["recover", "--model-command", "true", "--mask", "m.nc", "--output", "o"],
}
PIPELINES = {
    "extract": "netcdf-extract",
    "assembly run": "assembly-run",
    "subjects": "subject-batch",
    "jobs batch": "job-batch",
    "recover": "salvage-merge",
}


@pytest.mark.parametrize("name", sorted(BATCH_COMMANDS))
def test_every_batch_command_takes_the_shared_flags_in_the_same_units(name: str) -> None:
    argv = BATCH_COMMANDS[name]
    parser = build_parser(argv[0])
    args = parser.parse_args([*argv, "--workers", "3", "--retries", "1", "--kill-grace", "10s", "--force", "--quiet"])
    assert (args.max_workers, args.retries, args.kill_grace, args.force, args.quiet) == (3, 1, 10.0, True, True)
    assert parser.parse_args([*argv, "--verbose"]).verbose is True
    run = run_options(args, PIPELINES[name])
    assert (run.workers, run.retries, run.kill_grace_s, run.force) == (3, 1, 10.0, True)
    if name != "recover":  # recover's --timeout is read by its own check, in the same units
        assert parser.parse_args([*argv, "--timeout", "2h"]).timeout == 7200.0
        assert parser.parse_args([*argv, "--timeout", "15m"]).timeout == 900.0


@pytest.mark.parametrize("action", [["reassemble", "r"], ["list"], ["status", "20260101_000000_run001"]])
def test_assembly_actions_take_quiet_and_verbose(action: list[str]) -> None:
    parser = build_parser("assembly")
    assert parser.parse_args(["assembly", *action, "-q"]).quiet is True
    assert parser.parse_args(["assembly", *action, "--verbose"]).verbose is True


def test_durations_are_printed_in_human_units() -> None:
    assert [human_duration(s) for s in (5, 10, 1.5, 300, 5400, 7200, 86400, None)] == [
        "5 s",
        "10 s",
        "1.5 s",
        "5 min",
        "90 min",
        "2 h",
        "24 h",
        "no limit",
    ]
    assert _shown(3600.0) == "1 h"
    from salvo.subjects.report import format_minutes

    assert format_minutes(5 / 60) == "5 s" and format_minutes(120) == "2 h"


def test_help_shows_defaults_in_human_units(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("subjects").parse_args(["subjects", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 2 h)" in text and "0.0833" not in text
