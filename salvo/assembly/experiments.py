"""The seed's three generation experiments, user generators, and the chunk worker.

A generator is any callable ``fn(config: dict, samples: list[int]) -> pandas.DataFrame``, named
by import path (``pkg.module:function``). It must be deterministic for a given config and sample
list, so that a chunk re-run after an interruption produces the same rows.

Each built-in experiment, for every sample: draws model parameters (seeded by ``seed`` and the
sample index), then for every perturbation level and repetition applies its perturbation with its
own recorded seed, simulates the cascade, and records the features; one row per
(sample, level, repetition).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salvo.assembly.cascade import CascadeParams, draw_params, extract_features, simulate
from salvo.assembly.config import EXPERIMENTS, validate_config
from salvo.errors import InputError, UsageError
from salvo.outcome import EXIT_DETERMINISTIC
from salvo.storage import StorageError, open_storage

Generator = Callable[[dict[str, Any], list[int]], pd.DataFrame]

#: Import paths of the built-in generators, by experiment name.
GENERATORS = {
    "parameter-distortion": "salvo.assembly.experiments:parameter_distortion",
    "expression-noise": "salvo.assembly.experiments:expression_noise",
    "response-noise": "salvo.assembly.experiments:response_noise",
}


def _seed(config: Mapping[str, Any], *key: int) -> int:
    return int(np.random.SeedSequence([int(config["seed"]), *key]).generate_state(1)[0])


def _sample_params(config: Mapping[str, Any], sample: int) -> CascadeParams:
    rng = np.random.default_rng(_seed(config, int(sample)))
    return draw_params(config["spec"], config["parameter_generation"], rng)


def _run(
    config: Mapping[str, Any],
    samples: Sequence[int],
    experiment: str,
    perturb: Callable[[CascadeParams, float, np.random.Generator, Mapping[str, Any]], np.ndarray],
) -> pd.DataFrame:
    cfg = validate_config(config, experiment=experiment)
    levels = cfg[EXPERIMENTS[experiment][3]]
    kind = experiment.replace("-", "_")
    times = np.linspace(0.0, cfg["simulation"]["t_end"], cfg["simulation"]["n_points"])
    rows = []
    for sample in samples:
        params = _sample_params(cfg, sample)
        for li, level in enumerate(levels):
            for rep in range(cfg["n_reps"]):
                seed = _seed(cfg, int(sample), li, rep)
                responses = perturb(params, level, np.random.default_rng(seed), cfg)
                rows.append(
                    {
                        "sample": int(sample),
                        "rep": rep,
                        "perturbation": kind,
                        "level": float(level),
                        "seed": seed,
                        **extract_features(times, responses),
                    }
                )
    return pd.DataFrame(rows)


def _responses(params: CascadeParams, cfg: Mapping[str, Any]) -> np.ndarray:
    _, frac = simulate(params, **cfg["simulation"])
    return frac[:, -1, :]  # the last kinase of each cascade


def _distort(params: CascadeParams, factor: float, rng: np.random.Generator, cfg: Mapping[str, Any]) -> np.ndarray:
    span = np.log(factor)
    draw = {k: np.exp(rng.uniform(-span, span, size=params.kc.shape)) for k in ("kc", "vmax", "km_act", "km_deact")}
    return _responses(params.scaled(**draw), cfg)


def _express(params: CascadeParams, level: float, rng: np.random.Generator, cfg: Mapping[str, Any]) -> np.ndarray:
    noise = np.exp(rng.normal(0.0, level, size=params.totals.shape))
    return _responses(params.scaled(totals=noise), cfg)


def parameter_distortion(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """Kinetic parameters each multiplied by a log-uniform factor in [1/f, f]."""
    return _run(config, samples, "parameter-distortion", _distort)


def expression_noise(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """Kinase amounts (initial conditions) multiplied by log-normal noise of sigma = level."""
    return _run(config, samples, "expression-noise", _express)


def response_noise(config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """The simulated responses plus Gaussian noise of sd = level (clean model simulated once)."""
    last: list[Any] = [None, None]  # the current sample's params and clean responses

    def noisy(params: CascadeParams, level: float, rng: np.random.Generator, cfg: Mapping[str, Any]) -> np.ndarray:
        if last[0] is not params:
            last[:] = [params, _responses(params, cfg)]
        return last[1] + rng.normal(0.0, level, size=last[1].shape)

    return _run(config, samples, "response-noise", noisy)


def load_generator(target: str) -> Generator:
    """The callable named ``pkg.module:function`` (or a built-in experiment name)."""
    target = GENERATORS.get(target, target)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"generator {target!r} must be an experiment name or 'pkg.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import generator module {module_name!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(f"generator {target!r}: {module_name} has no callable {attr!r}")
    return fn


def generate_frame(target: str, config: dict[str, Any], samples: list[int]) -> pd.DataFrame:
    """Call the generator and check that it returned a DataFrame."""
    frame = load_generator(target)(dict(config), list(samples))
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"generator {target} returned {type(frame).__name__}, not a DataFrame")
    return frame


def run_chunk(
    *,
    generator: str,
    config: dict[str, Any],
    start: int,
    stop: int,
    storage_url: str,
    endpoint_url: str | None = None,
    output: str,
) -> dict[str, Any]:
    """Python worker: generate samples [start, stop) and write them as one Parquet object."""
    frame = generate_frame(generator, config, list(range(int(start), int(stop))))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    target = open_storage(storage_url, endpoint_url=endpoint_url)
    try:
        with target.open_write(output) as fh:
            pq.write_table(table, fh)
    except StorageError as exc:
        # The storage is gone: one line, no traceback, and an exit code that is never retried
        # (the flow then checks the storage and stops the whole assembly).
        print(exc, file=sys.stderr, flush=True)
        os._exit(EXIT_DETERMINISTIC)
    return {"outputs": [target.uri(output)], "metrics": {"rows": table.num_rows}}
