"""RunOptions: one typed value for how to run a batch, each default written once."""

from __future__ import annotations

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


@pytest.mark.parametrize("field, value", [("timeout_s", math.nan), ("timeout_s", math.inf), ("timeout_s", 1e308), ("timeout_s", -1),
                                          ("workers", 0), ("retries", -1), ("items_per_task", 0), ("retry_delays_s", (-1.0,)),
                                          ("unknown", 1)])
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
