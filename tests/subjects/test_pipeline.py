"""The built-in pipeline and the option/hash helpers."""

import json

import numpy as np
import pytest

from salvo.errors import InputError
from salvo.subjects.config import config_hash, merge_options, option_flags, pipeline_version
from salvo.subjects.pipeline import denoise, find_shells, run_pipeline
from salvo.subjects.samples import write_dwi

pytestmark = pytest.mark.pure  # no Prefect server, no flow


def test_find_shells_groups_nearby_bvalues():
    shells = find_shells(np.array([0, 5, 995, 1000, 1005, 2000, 1990, 3000]))
    assert shells == [{"bval": 0, "count": 2}, {"bval": 1000, "count": 3}, {"bval": 2000, "count": 2}, {"bval": 3000, "count": 1}]


@pytest.mark.parametrize("method", ["gaussian", "median", "patch2self"])
def test_denoisers_reduce_noise_on_a_constant_image(method):
    rng = np.random.default_rng(0)
    clean = np.full((8, 8, 4, 6), 100.0)
    noisy = clean + rng.normal(scale=10, size=clean.shape)
    out = denoise(noisy, method=method)
    assert out.shape == noisy.shape
    assert np.std(out - clean) < np.std(noisy - clean)


def test_run_pipeline_writes_metrics_and_png(tmp_path):
    files = write_dwi(tmp_path / "in" / "dwi.nii.gz", shape=(10, 10, 5), seed=3)
    metrics = run_pipeline(files["nifti"], work_dir=tmp_path / "w", bval=files["bval"], options={"preprocessing": True, "denoise_method": "gaussian"})
    doc = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert doc["shells"] == [{"bval": 0, "count": 2}, {"bval": 1000, "count": 6}, {"bval": 2000, "count": 6}]
    assert len(doc["volumes"]) == 14 and doc["denoise_method"] == "gaussian"
    assert metrics["n_volumes"] == 14 and metrics["n_b0"] == 2 and metrics["n_shells"] == 2
    # The sample's diffusivity is drawn in [0.0007, 0.001] mm^2/s; the estimate must land near it.
    assert 0.0005 < metrics["mean_diffusivity"] < 0.0012
    assert (tmp_path / "w" / "middle_slice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_pipeline_rejects_mismatched_bval(tmp_path):
    files = write_dwi(tmp_path / "dwi.nii.gz", shape=(4, 4, 3), bvals=(0, 1000, 1000))
    (tmp_path / "dwi.bval").write_text("0 1000")
    with pytest.raises(InputError, match="2 values but the image has 3 volumes"):
        run_pipeline(files["nifti"], work_dir=tmp_path / "w", bval=files["bval"])


def test_run_pipeline_rejects_a_file_that_is_not_nifti(tmp_path):
    bad = tmp_path / "bad_dwi.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read NIfTI"):
        run_pipeline(bad, work_dir=tmp_path / "w")


def test_option_flags():
    flags = option_flags({"preprocessing": True, "denoise_method": "patch2self", "skip": False, "none": None, "shells": [1000, 2000], "n": 3})
    # Keys are spelled as written (the seed's --denoise_method), never turned into dashes.
    assert flags == ["--denoise_method", "patch2self", "--n", "3", "--preprocessing", "--shells", "1000", "--shells", "2000"]
    assert option_flags({"denoise-method": "x"}) == ["--denoise-method", "x"]


def test_config_hash_changes_with_options_and_pipeline_only():
    base = config_hash({"preprocessing": True})
    assert base == config_hash({"preprocessing": True})
    assert len(base) == 8
    assert base != config_hash({"preprocessing": False})
    assert base != config_hash({"preprocessing": True}, pipeline_command="tool {nifti}")
    assert pipeline_version(None) == "builtin-1" and pipeline_version("tool {nifti}").startswith("command-")


def test_merge_options_subject_wins():
    assert merge_options({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
