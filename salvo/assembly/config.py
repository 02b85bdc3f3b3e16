"""Experiment configuration: the seed's defaults, YAML loading, validation with one-line errors."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from salvo.errors import UsageError
from salvo.validate import regular_file

#: The most samples one assembly may have: a typo such as ``--samples 1000000000000`` is refused
#: up front instead of planning a billion items.
MAX_SAMPLES = 10_000_000
#: The most repetitions per sample and level.
MAX_REPS = 10_000
#: The highest seed (seeds are 32-bit, as numpy's ``SeedSequence`` entropy words).
MAX_SEED = 2**32 - 1

#: The three experiments of the seed: CLI name -> (exp number, seed notebook title, result name,
#: perturbation kind, the config key holding its levels).
EXPERIMENTS: dict[str, tuple[str, str, str, str]] = {
    "parameter-distortion": ("01", "batch-parameter-distortion", "parameter_distortion_results", "distortion_factors"),
    "expression-noise": ("02", "batch-expression-noise", "expression_noise_results", "noise_levels"),
    "response-noise": ("03", "batch-response-noise", "response_noise_results", "noise_levels"),
}

_BASE: dict[str, Any] = {
    "spec": {"n_layers": 2, "n_cascades": 3},
    "parameter_generation": {
        "ic_range": [200.0, 1000.0],  # total amount of each kinase
        "kc_range": [10.0, 60.0],  # catalytic rate of activation
        "vmax_range": [1.0, 20.0],  # maximal rate of deactivation (phosphatase)
        "km_range": [100.0, 1000.0],  # Michaelis constants
        "stimulus_range": [0.2, 1.0],  # fraction of the input ligand present
    },
    "simulation": {"t_end": 240.0, "n_points": 121},
    "n_samples": 100,
    "n_reps": 3,
    "seed": 42,
}

_LEVELS: dict[str, dict[str, list[float]]] = {
    "parameter-distortion": {"distortion_factors": [1.1, 1.3, 1.5, 2.0, 3.0]},
    "expression-noise": {"noise_levels": [0.0, 0.1, 0.2, 0.3, 0.5, 1.0]},
    "response-noise": {"noise_levels": [0.0, 0.05, 0.1, 0.2, 0.3]},
}


def default_config(experiment: str) -> dict[str, Any]:
    """The seed's default configuration of ``experiment`` (a fresh copy)."""
    if experiment not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {experiment!r}: use one of {', '.join(EXPERIMENTS)}")
    return {**copy.deepcopy(_BASE), **copy.deepcopy(_LEVELS[experiment])}


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, nested sections merged key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) file; a one-line error if it is not one."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"config file {p} does not exist")
    regular_file(p, "config file")  # a folder or a FIFO is refused before anything reads it
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"config file {p} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {p} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {p} must hold a mapping, got {type(data).__name__}")
    return data


def _num(
    where: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
) -> float:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise UsageError(f"config: {where} must be {kind}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise UsageError(f"config: {where} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and value > high:
        bound = f"{high:,.0f}" if float(high).is_integer() else f"{high:g}"
        raise UsageError(f"config: {where} must be <= {bound} (Salvo's bound), got {value!r}")
    return int(value) if integer else float(value)


def _range(where: str, value: Any, *, positive: bool = True) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise UsageError(f"config: {where} must be [low, high], got {value!r}")
    lo = _num(f"{where}[0]", value[0], low=0.0, low_open=positive)
    hi = _num(f"{where}[1]", value[1], low=0.0, low_open=positive)
    if lo > hi:
        raise UsageError(f"config: {where} must be [low, high] with low <= high, got {list(value)}")
    return [lo, hi]


def validate_config(config: Mapping[str, Any], *, experiment: str) -> dict[str, Any]:
    """Check every value of a built-in experiment's config; return it normalised."""
    defaults = default_config(experiment)
    cfg = merge_config(defaults, config)
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise UsageError(f"config: unknown key {unknown[0]!r} for {experiment}: expected {', '.join(sorted(defaults))}")
    for section in ("spec", "parameter_generation", "simulation"):
        if not isinstance(cfg[section], Mapping):
            raise UsageError(f"config: {section} must be a mapping, got {cfg[section]!r}")
        extra = sorted(set(cfg[section]) - set(defaults[section]))
        if extra:
            raise UsageError(
                f"config: unknown key {section}.{extra[0]}: expected {', '.join(sorted(defaults[section]))}"
            )
    spec, gen, sim = cfg["spec"], cfg["parameter_generation"], cfg["simulation"]
    spec["n_layers"] = int(_num("spec.n_layers", spec["n_layers"], integer=True, low=1, high=10))
    spec["n_cascades"] = int(_num("spec.n_cascades", spec["n_cascades"], integer=True, low=1, high=20))
    for key in gen:
        gen[key] = _range(f"parameter_generation.{key}", gen[key])
    if gen["stimulus_range"][1] > 1:
        raise UsageError(f"config: parameter_generation.stimulus_range must lie in (0, 1], got {gen['stimulus_range']}")
    sim["t_end"] = _num("simulation.t_end", sim["t_end"], low=0, low_open=True)
    sim["n_points"] = int(_num("simulation.n_points", sim["n_points"], integer=True, low=3, high=100_000))
    check_counts(cfg)
    level_key = EXPERIMENTS[experiment][3]
    levels = cfg[level_key]
    if not isinstance(levels, (list, tuple)) or not levels:
        raise UsageError(f"config: {level_key} must be a non-empty list, got {levels!r}")
    floor = 1.0 if level_key == "distortion_factors" else 0.0
    cfg[level_key] = [_num(f"{level_key}[{i}]", v, low=floor) for i, v in enumerate(levels)]
    return cfg


def check_counts(cfg: dict[str, Any]) -> None:
    """``n_samples``, ``n_reps`` and ``seed`` of any experiment: whole numbers in their bounds."""
    cfg["n_samples"] = int(_num("n_samples", cfg["n_samples"], integer=True, low=1, high=MAX_SAMPLES))
    cfg["n_reps"] = int(_num("n_reps", cfg["n_reps"], integer=True, low=1, high=MAX_REPS))
    cfg["seed"] = int(_num("seed", cfg["seed"], integer=True, low=0, high=MAX_SEED))


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
