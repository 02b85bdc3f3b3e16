"""`salvo subjects --pipeline csttool`: the installed csttool (from PyPI, the salvo[csttool] extra), per subject."""

import glob
import json
import re

import pytest

from salvo.subjects.samples import make_dipy_bids_study
from salvo.subjects.unit import read_done
from tests.helpers import salvo

csttool = pytest.importorskip("csttool", reason="csttool is not installed (pip install 'salvo[csttool]')")


def _salvo(args, env):
    return salvo("subjects", *args, env=env, timeout=900)


@pytest.fixture
def env(child_env, tmp_path):
    """The session's Prefect API, and a home whose csttool data folder is empty: no `csttool fetch-data` there."""
    return dict(child_env, XDG_DATA_HOME=str(tmp_path / "xdg-data"), MPLBACKEND="Agg")


def test_atlas_steps_are_refused_up_front_without_fetch_data(tmp_path, env):
    study = make_dipy_bids_study(tmp_path / "study", acquisitions=("small_101D",))
    proc = _salvo(["--bids-dir", str(study), "--out", str(tmp_path / "out"), "--pipeline", "csttool"], env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "extract, metrics need csttool's FSL atlas data" in lines[0] and "csttool fetch-data" in lines[0]
    assert "--steps preprocess,track" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(1200)  # csttool starts two Python processes per subject, each importing its whole stack
def test_csttool_preprocess_and_track_per_subject_with_an_error_and_a_resume(tmp_path, env):
    study = make_dipy_bids_study(tmp_path / "study", acquisitions=("small_64D", "small_101D"), corrupt=True)
    out = tmp_path / "out"
    args = [
        "--bids-dir",
        str(study),
        "--out",
        str(out),
        "--pipeline",
        "csttool",
        "--steps",
        "preprocess,track",
        "--preprocessing",
        "--denoise_method",
        "patch2self",
        "--retries",
        "0",
        "--workers",
        "2",
        "--json",
    ]
    first = _salvo(args, env)
    assert first.returncode == 1, first.stderr[-2000:]
    doc = json.loads(first.stdout)
    status = {i["item_id"]: i["status"] for i in doc["items"]}
    assert status == {"sub-01": "success", "sub-02": "success", "sub-03": "error"}
    reasons = {i["item_id"]: i["reason"] for i in doc["items"]}
    assert reasons["sub-03"].startswith("bad input: cannot read NIfTI")
    for sid in ("sub-01", "sub-02"):
        folder = out / sid
        # csttool's own preprocess output (denoised with Patch2Self, not motion-corrected) and its tracking.
        assert glob.glob(str(folder / "preprocessing" / f"{sid}_dwi_preproc_nomc.nii.gz"))
        assert (folder / "tracking" / "tractograms" / f"{sid}_whole_brain.trk").stat().st_size > 0
        assert (folder / "tracking" / "scalar_maps" / f"{sid}_fa.nii.gz").stat().st_size > 0
        done = read_done(folder)
        assert done["pipeline"] == "csttool" and done["pipeline_version"] == f"csttool-{csttool.__version__}"
        assert 0 < done["metrics"]["fa_mean"] < 1
        log = (folder / "logs" / f"{sid}.log").read_text()
        assert "csttool preprocess --nifti" in log and "--denoise-method patch2self" in log
        assert "csttool track --nifti" in log
    assert read_done(out / "sub-03") is None and not (out / "sub-03" / "tracking").exists()
    second = _salvo(args, env)
    assert second.returncode == 1
    again = {i["item_id"]: (i["status"], i["reason"]) for i in json.loads(second.stdout)["items"]}
    assert again["sub-01"][0] == again["sub-02"][0] == "skipped"
    assert again["sub-01"][1].startswith("already done")
    assert again["sub-03"][0] == "error"


@pytest.mark.pure
@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"fa_threshold": 0.2}, "option 'fa_threshold' is not one csttool takes"),
        ({"denoise_method": "mppca"}, "csttool knows patch2self, nlmeans"),
        ({"steps": ["track"]}, "each csttool step feeds the next"),
        ({"steps": ["preprocess", "tract"]}, "unknown csttool step 'tract'"),
    ],
)
def test_options_csttool_does_not_take_are_refused_before_anything_runs(tmp_path, options, says):
    from salvo.errors import UsageError
    from salvo.subjects.plan import plan_subjects

    study = make_dipy_bids_study(tmp_path / "study", acquisitions=("small_101D",))
    with pytest.raises(UsageError, match=re.escape(says)):
        plan_subjects(bids_dir=str(study), options=options, pipeline="csttool", out_dir=tmp_path / "out")


@pytest.mark.pure
def test_steps_are_csttools_and_options_reach_it_spelled_as_it_expects(tmp_path):
    from salvo.errors import UsageError
    from salvo.subjects.csttool_pipeline import _flags, expected_outputs
    from salvo.subjects.plan import plan_subjects

    opts = {"denoise_method": "nlmeans", "coil_count": 8, "unring": True, "fa_thr": 0.25, "verbose": False}
    assert _flags("preprocess", opts) == ["--coil-count", "8", "--denoise-method", "nlmeans", "--unring"]
    assert _flags("track", opts) == ["--fa-thr", "0.25"]
    assert expected_outputs(("preprocess", "track"), "sub-01", preprocessing=False) == [
        "tracking/tractograms/sub-01_whole_brain.trk",
        "tracking/scalar_maps/sub-01_fa.nii.gz",
        "tracking/scalar_maps/sub-01_md.nii.gz",
    ]
    with pytest.raises(UsageError, match="--steps chooses csttool's steps"):
        study = make_dipy_bids_study(tmp_path / "study", acquisitions=("small_101D",))
        plan_subjects(bids_dir=str(study), options={"steps": ["preprocess"]})
