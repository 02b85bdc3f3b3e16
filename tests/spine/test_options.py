"""RunOptions: one typed value for how to run a batch, each default written once."""

from __future__ import annotations

import functools
import math

import pytest
from pydantic import ValidationError

from salvo.options import PIPELINE_TIMEOUT_S, RunOptions

pytestmark = pytest.mark.pure


def test_defaults_are_sequential_with_two_retries_and_fifteen_minutes() -> None:
    o = RunOptions()
    assert (o.timeout_s, o.workers, o.retries, o.force, o.fail_fast, o.parallel) == (900.0, 1, 2, False, False, False)


def test_each_pipeline_gets_its_own_timeout_unless_given() -> None:
    assert RunOptions.for_pipeline("subject-batch").timeout_s == 120 * 60 == PIPELINE_TIMEOUT_S["subject-batch"]
    assert RunOptions.for_pipeline("subject-batch", timeout_s=30.0).timeout_s == 30.0
    assert RunOptions.for_pipeline("netcdf-extract", timeout_s=None).timeout_s == 900.0  # None means "not given"


@pytest.mark.parametrize(
    "field, value",
    [
        ("timeout_s", math.nan),
        ("timeout_s", math.inf),
        ("timeout_s", 1e308),
        ("timeout_s", -1),
        ("workers", 0),
        ("retries", -1),
        ("items_per_task", 0),
        ("retry_delays_s", (-1.0,)),
        ("unknown", 1),
    ],
)
def test_bad_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        RunOptions(**{field: value})


def test_more_than_one_worker_or_a_cluster_means_parallel() -> None:
    assert RunOptions(workers=2).parallel
    assert RunOptions(dask_address="127.0.0.1:8786").dask_address == "tcp://127.0.0.1:8786"
    assert RunOptions(dask_address="127.0.0.1:8786").parallel


def test_retry_delays_repeat_the_last_one() -> None:
    o = RunOptions(retry_delays_s=(2.0, 10.0))
    assert [o.delay_before(a) for a in (1, 2, 3, 4)] == [0.0, 2.0, 10.0, 10.0]


def test_options_round_trip_through_json_as_a_flow_parameter_would() -> None:
    o = RunOptions(timeout_s=60, workers=3, force=True)
    assert RunOptions.model_validate_json(o.model_dump_json()) == o


def test_a_flow_given_some_fields_keeps_them_and_takes_the_pipelines_defaults_for_the_rest() -> None:
    # What a deployment sends (`run: {retries: 0}`) or Python gives (`RunOptions(workers=3)`).
    assert RunOptions.of("subject-batch", {"retries": 0}) == RunOptions(timeout_s=7200.0, retries=0)
    assert RunOptions.of("job-batch", RunOptions(workers=3)) == RunOptions(timeout_s=3600.0, workers=3, fail_fast=True)
    assert RunOptions.of("job-batch", RunOptions(fail_fast=False, timeout_s=None)) == RunOptions(
        timeout_s=None, fail_fast=False
    )
    assert RunOptions.of("netcdf-extract", None) == RunOptions.for_pipeline("netcdf-extract") == RunOptions()


@functools.cache
def _parser():  # noqa: ANN202
    from cli.main import build_parser

    return build_parser()


def _args(*argv: str):  # noqa: ANN202
    return _parser().parse_args(list(argv))


EXTRACT = ("extract", "--directory", ".")
JOBS = ("jobs", "batch", "--naf", "43", "--input", "x.parquet", "--output-dir", "o")
SUBJECTS = ("subjects", "--manifest", "m.json", "--out", "o")


@pytest.mark.parametrize(
    ("argv", "pipeline", "expected"),
    [
        (EXTRACT, "netcdf-extract", {}),
        ((*EXTRACT, "--parallel"), "netcdf-extract", {"workers": "cpus"}),
        ((*EXTRACT, "--parallel", "--max-workers", "3"), "netcdf-extract", {"workers": 3}),
        ((*EXTRACT, "--max-workers", "3", "--timeout", "90"), "netcdf-extract", {"workers": 3, "timeout_s": 90.0}),
        (
            (*EXTRACT, "--timeout", "2h", "--retries", "0", "--force", "--items-per-task", "5"),
            "netcdf-extract",
            {"timeout_s": 7200.0, "retries": 0, "force": True, "items_per_task": 5},
        ),
        (JOBS, "job-batch", {"timeout_s": 3600.0, "fail_fast": True}),
        ((*JOBS, "--workers", "2", "--continue-on-error"), "job-batch", {"timeout_s": 3600.0, "workers": 2}),
        ((*JOBS, "--parallel"), "job-batch", {"timeout_s": 3600.0, "fail_fast": True, "workers": "cpus"}),
        (SUBJECTS, "subject-batch", {"timeout_s": 7200.0}),
        (
            (*SUBJECTS, "--parallel", "3", "--timeout", "90"),
            "subject-batch",
            {"timeout_s": 5400.0, "workers": 3},
        ),  # minutes
        ((*SUBJECTS, "--workers", "2", "--timeout", "90s"), "subject-batch", {"timeout_s": 90.0, "workers": 2}),
        ((*EXTRACT, "--kill-grace", "10"), "netcdf-extract", {"kill_grace_s": 10.0}),
        ((*JOBS, "--kill-grace", "1m"), "job-batch", {"timeout_s": 3600.0, "fail_fast": True, "kill_grace_s": 60.0}),
        (
            ("assembly", "run", "parameter-distortion", "--dask-address", "127.0.0.1:8786"),
            "assembly-run",
            {"dask_address": "tcp://127.0.0.1:8786", "workers": "cpus"},
        ),
    ],
)
def test_the_cli_builds_one_run_options_from_each_seeds_spelling(
    argv: tuple[str, ...], pipeline: str, expected: dict
) -> None:
    from cli.common import run_options
    from salvo.options import cpu_workers

    want = {k: cpu_workers() if v == "cpus" else v for k, v in expected.items()}
    assert run_options(_args(*argv), pipeline) == RunOptions(**want)


def test_every_command_retries_twice_unless_told() -> None:
    from cli.common import run_options

    for argv, pipeline in (
        (EXTRACT, "netcdf-extract"),
        (JOBS, "job-batch"),
        (SUBJECTS, "subject-batch"),
        (("assembly", "run", "x"), "assembly-run"),
    ):
        assert run_options(_args(*argv), pipeline).retries == 2 == RunOptions().retries


def test_a_value_out_of_range_is_a_usage_error_naming_the_flag() -> None:
    from cli.common import run_options
    from salvo.errors import UsageError

    with pytest.raises(UsageError, match="--workers"):
        run_options(_args(*EXTRACT, "--workers", "5000"), "netcdf-extract")
    with pytest.raises(UsageError, match="--items-per-task"):
        run_options(_args(*EXTRACT, "--items-per-task", "20000"), "netcdf-extract")


def test_the_kill_grace_reaches_the_runner() -> None:
    from salvo.batchcore import run_one
    from salvo.items import Item, Worker
    from salvo.outcome import ItemResult, Status

    seen: list[dict] = []

    class NoRecords:
        def lock(self, key):  # noqa: ANN001, ANN202
            import contextlib

            return contextlib.nullcontext()

        def read(self, key):  # noqa: ANN001, ANN202
            return None

        def write(self, key, result):  # noqa: ANN001, ANN202
            pass

    def run(item, worker, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.append(kw)
        return ItemResult(item.id, Status.SUCCESS)

    run_one(
        Item("a"),
        "k",
        Worker("command", "true"),
        records=NoRecords(),
        options=RunOptions(kill_grace_s=7.5, timeout_s=5),
        run=run,
    )
    assert (seen[0]["kill_grace_s"], seen[0]["timeout_s"]) == (7.5, 5.0)
