"""The built-in pipeline and the option/hash helpers."""

import json

import dipy
import numpy as np
import pytest

from salvo.errors import InputError
from salvo.subjects.config import config_hash, merge_options, option_flags, pipeline_version
from salvo.subjects.pipeline import OUTPUT_FILES, denoise, find_shells, run_pipeline
from salvo.subjects.samples import write_dwi

pytestmark = pytest.mark.pure  # no Prefect server, no flow


def test_find_shells_groups_nearby_bvalues():
    shells = find_shells(np.array([0, 5, 995, 1000, 1005, 2000, 1990, 3000]))
    assert shells == [
        {"bval": 0, "count": 2},
        {"bval": 1000, "count": 3},
        {"bval": 2000, "count": 2},
        {"bval": 3000, "count": 1},
    ]


@pytest.mark.parametrize("method", ["patch2self", "nlmeans", "mppca"])
def test_denoisers_reduce_noise_on_a_smooth_image(method):
    rng = np.random.default_rng(0)
    bvals = np.array([0, 0] + [1000] * 10, dtype=float)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 10)] * 3, indexing="ij"))
    base = 300.0 + 100.0 * grid[0]  # smooth S0, diffusivity and anisotropy that vary across the image
    adc = 0.0005 + 0.0005 * (grid[1] + 1)
    dirs = rng.normal(size=(12, 3))
    dirs /= np.linalg.norm(dirs, axis=1)[:, None]
    aniso = 1 + 0.25 * (grid[2][..., None] + 1) * dirs[None, None, None, :, 0] ** 2
    clean = base[..., None] * np.exp(-bvals * adc[..., None] * aniso)
    noisy = (clean + rng.normal(scale=20, size=clean.shape)).astype(np.float32)
    out = denoise(noisy, method=method, bvals=bvals, mask=np.ones(clean.shape[:3], dtype=bool))
    assert out.shape == noisy.shape
    assert np.std(out - clean) < 0.7 * np.std(noisy - clean)


def test_run_pipeline_writes_maps_metrics_and_png(tmp_path):
    files = write_dwi(tmp_path / "in" / "dwi.nii.gz", shape=(12, 12, 6), seed=3)
    metrics = run_pipeline(
        files["nifti"],
        work_dir=tmp_path / "w",
        bval=files["bval"],
        bvec=files["bvec"],
        options={"preprocessing": True, "denoise_method": "nlmeans"},
    )
    doc = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(OUTPUT_FILES)
    assert doc["shells"] == [{"bval": 0, "count": 2}, {"bval": 1000, "count": 8}, {"bval": 2000, "count": 8}]
    assert doc["denoise_method"] == "nlmeans" and doc["pipeline_version"].startswith("builtin-2+dipy")
    assert metrics["n_volumes"] == 18 and metrics["n_b0"] == 2 and metrics["n_shells"] == 2
    # The sample is isotropic (a sphere of free diffusion) with its diffusivity drawn in [0.0007, 0.001] mm^2/s:
    # the tensor's MD lands near it, and its FA is low.
    assert 0.0005 < metrics["md_mean"] < 0.0012
    assert 0 <= metrics["fa_mean"] < 0.3
    assert (tmp_path / "w" / "dti_FA.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_pipeline_without_gradients_is_bad_input(tmp_path):
    files = write_dwi(tmp_path / "dwi.nii.gz", shape=(6, 6, 4))
    with pytest.raises(InputError, match="needs the image's .bval and .bvec"):
        run_pipeline(files["nifti"], work_dir=tmp_path / "w", bval=files["bval"])


def test_run_pipeline_rejects_mismatched_bval(tmp_path):
    files = write_dwi(tmp_path / "dwi.nii.gz", shape=(4, 4, 3), bvals=(0, 1000, 1000))
    (tmp_path / "dwi.bval").write_text("0 1000")
    with pytest.raises(InputError, match="2 values but the image has 3 volumes"):
        run_pipeline(files["nifti"], work_dir=tmp_path / "w", bval=files["bval"], bvec=files["bvec"])


def test_run_pipeline_rejects_a_file_that_is_not_nifti(tmp_path):
    bad = tmp_path / "bad_dwi.nii.gz"
    bad.write_bytes(b"not an image")
    files = write_dwi(tmp_path / "ok" / "dwi.nii.gz", shape=(4, 4, 3))
    with pytest.raises(InputError, match="cannot read NIfTI"):
        run_pipeline(bad, work_dir=tmp_path / "w", bval=files["bval"], bvec=files["bvec"])


def test_option_flags():
    flags = option_flags(
        {
            "preprocessing": True,
            "denoise_method": "patch2self",
            "skip": False,
            "none": None,
            "shells": [1000, 2000],
            "n": 3,
        }
    )
    # Keys are spelled as written (the seed's --denoise_method), never turned into dashes.
    assert flags == [
        "--denoise_method",
        "patch2self",
        "--n",
        "3",
        "--preprocessing",
        "--shells",
        "1000",
        "--shells",
        "2000",
    ]
    assert option_flags({"denoise-method": "x"}) == ["--denoise-method", "x"]


def test_config_hash_changes_with_options_and_pipeline_only():
    base = config_hash({"preprocessing": True})
    assert base == config_hash({"preprocessing": True})
    assert len(base) == 8
    assert base != config_hash({"preprocessing": False})
    assert base != config_hash({"preprocessing": True}, pipeline_command="tool {nifti}")
    assert pipeline_version(None) == f"builtin-2+dipy{dipy.__version__}"
    assert pipeline_version("tool {nifti}").startswith("command-")
    assert pipeline_version(None, pipeline="csttool").startswith("csttool-")
    assert base != config_hash({"preprocessing": True}, pipeline="csttool")


def test_merge_options_subject_wins():
    assert merge_options({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
