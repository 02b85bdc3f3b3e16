"""The three seed experiments over the cascade model, their config, and user generators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salvo.assembly.cascade import draw_params, simulate
from salvo.assembly.config import EXPERIMENTS, config_hash, default_config, validate_config
from salvo.assembly.experiments import generate_frame, load_generator
from salvo.assembly.run import build_config, plan_assembly
from salvo.errors import InputError, UsageError

SMALL = {"n_samples": 4, "n_reps": 2, "simulation": {"t_end": 60.0, "n_points": 31}}


def small(experiment: str, **extra) -> dict:
    return validate_config({**SMALL, **extra}, experiment=experiment)


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
class TestExperiments:
    def test_one_row_per_sample_level_and_rep(self, experiment):
        cfg = small(experiment)
        df = generate_frame(experiment, cfg, [0, 1, 2])
        levels = cfg[EXPERIMENTS[experiment][3]]
        assert len(df) == 3 * len(levels) * cfg["n_reps"]
        assert set(df["perturbation"]) == {experiment.replace("-", "_")}
        assert sorted(df["level"].unique()) == sorted(levels)
        assert {"sample", "rep", "seed", "outcome_final", "c2_auc"} <= set(df.columns)
        assert df["seed"].nunique() == len(df)  # every perturbation has its own recorded seed

    def test_chunks_give_the_same_rows_as_one_run(self, experiment):
        cfg = small(experiment)
        whole = generate_frame(experiment, cfg, [0, 1, 2, 3])
        parts = pd.concat(
            [generate_frame(experiment, cfg, [0, 1]), generate_frame(experiment, cfg, [2, 3])], ignore_index=True
        )
        pd.testing.assert_frame_equal(whole, parts)  # so a resumed run equals an uninterrupted one

    def test_seed_changes_the_data(self, experiment):
        a = generate_frame(experiment, small(experiment), [0])
        b = generate_frame(experiment, small(experiment, seed=7), [0])
        assert not np.allclose(a["outcome_auc"], b["outcome_auc"])


def test_zero_noise_gives_identical_repetitions():
    cfg = small("expression-noise", noise_levels=[0.0, 0.5])
    df = generate_frame("expression-noise", cfg, [0])
    clean = df[df["level"] == 0.0]["outcome_final"]
    noisy = df[df["level"] == 0.5]["outcome_final"]
    assert clean.nunique() == 1
    assert noisy.nunique() == len(noisy)


def test_distortion_factor_one_changes_nothing():
    cfg = small("parameter-distortion", distortion_factors=[1.0])
    df = generate_frame("parameter-distortion", cfg, [1])
    assert df["outcome_auc"].nunique() == 1


def test_response_noise_perturbs_the_response_only():
    cfg = small("response-noise", noise_levels=[0.0, 0.2])
    df = generate_frame("response-noise", cfg, [0])
    base = df[df["level"] == 0.0]
    assert base["outcome_final"].nunique() == 1
    assert not np.allclose(df[df["level"] == 0.2]["outcome_final"], base["outcome_final"].iloc[0])


def test_cascade_active_fractions_stay_between_zero_and_one():
    cfg = default_config("parameter-distortion")
    params = draw_params(cfg["spec"], cfg["parameter_generation"], np.random.default_rng(3))
    times, frac = simulate(params, t_end=120.0, n_points=61)
    assert frac.shape == (3, 2, 61)
    assert frac.min() >= 0.0 and frac.max() <= 1.0 + 1e-6
    assert frac[:, :, -1].max() > 0.0  # the stimulus does switch the cascade on


@pytest.mark.parametrize(
    "override, message",
    [
        ({"n_samples": 0}, "n_samples must be >= 1"),
        ({"n_reps": 1.5}, "n_reps must be an integer"),
        ({"spec": {"n_layers": "two"}}, "spec.n_layers must be an integer"),
        ({"parameter_generation": {"ic_range": [1000, 200]}}, "ic_range must be \\[low, high\\] with low <= high"),
        ({"parameter_generation": {"ic_range": [0, 200]}}, "ic_range\\[0\\] must be > 0"),
        ({"parameter_generation": {"ic_range": 5}}, "ic_range must be \\[low, high\\]"),
        ({"distortion_factors": [0.5]}, "distortion_factors\\[0\\] must be >= 1"),
        ({"distortion_factors": []}, "must be a non-empty list"),
        ({"spec": {"n_layer": 2}}, "unknown key spec.n_layer"),
        ({"noise": 1}, "unknown key 'noise'"),
    ],
)
def test_bad_config_values_are_one_line_errors(override, message):
    with pytest.raises(UsageError, match=message) as info:
        validate_config(override, experiment="parameter-distortion")
    assert "\n" not in str(info.value)


def test_yaml_file_then_flags_override(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("spec:\n  n_cascades: 2\nn_samples: 20\nnoise_levels: [0.0, 0.3]\n")
    cfg = build_config("expression-noise", config_file=str(cfg_file), overrides={"n_samples": 5})
    assert cfg["spec"] == {"n_layers": 2, "n_cascades": 2}
    assert (cfg["n_samples"], cfg["noise_levels"]) == (5, [0.0, 0.3])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        build_config("expression-noise", config_file=str(bad))


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_user_generators_by_import_path():
    fn = load_generator("tests.assembly.helpers:tiny_generator")
    assert list(fn({"n_reps": 2}, [3])["value"]) == [30.0, 31.0]
    with pytest.raises(UsageError, match="cannot import generator module"):
        load_generator("no_such_module_xyz:f")
    with pytest.raises(UsageError, match="has no callable"):
        load_generator("tests.assembly.helpers:nothing_here")
    with pytest.raises(InputError, match="not a DataFrame"):
        generate_frame("tests.assembly.helpers:not_a_frame", {}, [1])


def test_plan_uses_the_seed_names():
    plan = plan_assembly("parameter-distortion", overrides={"n_samples": 5})
    assert (plan.folder, plan.result_name) == ("01_v1_batch-parameter-distortion", "parameter_distortion_results")
    custom = plan_assembly("tests.assembly.helpers:tiny_generator", version="v2")
    assert (custom.folder, custom.result_name) == ("01_v2_batch-tiny-generator", "tiny_generator_results")
    with pytest.raises(UsageError, match="unknown experiment"):
        plan_assembly("no-such-experiment")
