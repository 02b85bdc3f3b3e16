"""BIDS discovery over a ds114-shaped tree: sessions, root-level sidecars, ignored folders, globs."""

import pytest

from salvo.errors import UsageError
from salvo.subjects.discover import discover_bids
from salvo.subjects.samples import make_bids_dataset, write_dwi

pytestmark = pytest.mark.pure  # no Prefect server, no flow


@pytest.fixture(scope="module")
def ds114(tmp_path_factory):
    return make_bids_dataset(tmp_path_factory.mktemp("ds114"), subjects=3, shape=(4, 4, 3))


def test_one_unit_per_session(ds114):
    units = discover_bids(ds114)
    assert [u.id for u in units] == [
        "sub-01_ses-retest",
        "sub-01_ses-test",
        "sub-02_ses-retest",
        "sub-02_ses-test",
        "sub-03_ses-retest",
        "sub-03_ses-test",
    ]
    first = units[1]
    assert first.nifti == str(ds114 / "sub-01" / "ses-test" / "dwi" / "sub-01_ses-test_dwi.nii.gz")


def test_root_level_sidecars_are_inherited(ds114):
    for unit in discover_bids(ds114):
        assert unit.bval == str(ds114 / "dwi.bval")
        assert unit.bvec == str(ds114 / "dwi.bvec")


def test_derivatives_sourcedata_and_hidden_folders_are_ignored(ds114):
    for unit in discover_bids(ds114):
        for ignored in ("derivatives", "sourcedata", ".heudiconv"):
            assert f"/{ignored}/" not in unit.nifti


def test_include_and_exclude_globs(ds114):
    assert [u.id for u in discover_bids(ds114, include=["*ses-test"])] == [
        "sub-01_ses-test",
        "sub-02_ses-test",
        "sub-03_ses-test",
    ]
    assert [u.id for u in discover_bids(ds114, include=["sub-0*"], exclude=["sub-02"])] == [
        "sub-01_ses-retest",
        "sub-01_ses-test",
        "sub-03_ses-retest",
        "sub-03_ses-test",
    ]
    assert [u.id for u in discover_bids(ds114, exclude=["*_ses-retest", "sub-03*"])] == [
        "sub-01_ses-test",
        "sub-02_ses-test",
    ]


def test_nearest_sidecar_wins_and_sessionless_layout(tmp_path):
    write_dwi(tmp_path / "sub-01" / "dwi" / "sub-01_dwi.nii", shape=(4, 4, 3), bvals=(0, 1000, 1000))
    write_dwi(tmp_path / "sub-02" / "dwi" / "sub-02_dwi.nii.gz", shape=(4, 4, 3), bvals=(0, 1000, 1000), sidecars=False)
    (tmp_path / "dwi.bval").write_text("0 1000 1000")
    units = {u.id: u for u in discover_bids(tmp_path)}
    assert set(units) == {"sub-01", "sub-02"}
    assert units["sub-01"].bval == str(tmp_path / "sub-01" / "dwi" / "sub-01_dwi.bval")
    assert units["sub-02"].bval == str(tmp_path / "dwi.bval")
    assert units["sub-02"].bvec is None


def test_several_runs_in_a_session_are_separate_units(tmp_path):
    for run in (1, 2):
        write_dwi(
            tmp_path / "sub-01" / "ses-a" / "dwi" / f"sub-01_ses-a_run-{run}_dwi.nii.gz",
            shape=(4, 4, 3),
            bvals=(0, 1000, 1000),
        )
    assert [u.id for u in discover_bids(tmp_path)] == ["sub-01_ses-a_run-1", "sub-01_ses-a_run-2"]


def test_empty_tree_and_filters_that_drop_everything(tmp_path, ds114):
    with pytest.raises(UsageError, match="no DWI images"):
        discover_bids(tmp_path)
    with pytest.raises(UsageError, match="no subjects left"):
        discover_bids(ds114, include=["sub-99*"])
    with pytest.raises(UsageError, match="not a folder"):
        discover_bids(tmp_path / "missing")
