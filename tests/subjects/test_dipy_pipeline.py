"""The built-in pipeline on DIPY, run on DIPY's own bundled acquisitions (real scans, in its wheel)."""

import csv
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from flows.subject_batch import subject_batch
from salvo.errors import SkipItem
from salvo.subjects.pipeline import DENOISE_METHODS, OUTPUT_FILES, denoise
from salvo.subjects.samples import dipy_acquisition, make_dipy_bids_study
from salvo.subjects.unit import read_done


def _independent_fa_mean(subject_dir, files, *, method):
    """DIPY's own median_otsu, denoiser and TensorModel on the subject's input: the mean FA in the mask."""
    from dipy.core.gradients import gradient_table
    from dipy.denoise.patch2self import patch2self
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.reconst.dti import TensorModel
    from dipy.segment.mask import median_otsu

    data = np.asarray(nib.load(files["nifti"]).dataobj, dtype=np.float32)
    bvals, bvecs = read_bvals_bvecs(files["bval"], files["bvec"])
    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    _, mask = median_otsu(data, vol_idx=np.flatnonzero(gtab.b0s_mask), median_radius=2, numpass=1)
    saved = np.asarray(nib.load(subject_dir / "brain_mask.nii.gz").dataobj).astype(bool)
    assert np.array_equal(saved, mask)  # the mask the pipeline wrote is DIPY's median_otsu mask
    assert method == "patch2self"
    np.random.seed(0)  # Patch2Self's count sketch draws from NumPy's global RNG; the pipeline seeds it with 0
    clean = patch2self(data, bvals, model="ols", shift_intensity=True, clip_negative_vals=False, b0_threshold=50)
    fa = np.clip(np.nan_to_num(TensorModel(gtab).fit(clean, mask=mask).fa), 0, 1)
    return float(fa[mask].mean())


def test_builtin_pipeline_on_dipy_acquisitions_writes_fa_maps_equal_to_dipys_own_fit(tmp_path):
    study = make_dipy_bids_study(tmp_path / "study", acquisitions=("small_64D", "small_101D"))
    out = tmp_path / "out"
    options = {"preprocessing": True, "denoise_method": "patch2self"}
    doc = subject_batch(out=str(out), bids_dir=str(study), options=options)
    assert doc["summary"]["counts"]["success"] == 2 and doc["summary"]["failed"] == 0
    with open(out / "batch_metrics.csv", newline="") as fh:
        rows = {r["subject"]: r for r in csv.DictReader(fh)}
    for sid, name in (("sub-01", "small_64D"), ("sub-02", "small_101D")):
        folder = out / sid
        for f in OUTPUT_FILES:
            assert (folder / f).is_file(), f
        fa = np.asarray(nib.load(folder / "dti_FA.nii.gz").dataobj)
        image = nib.load(dipy_acquisition(name)["nifti"])
        assert fa.shape == image.shape[:3]
        assert np.isfinite(fa).all() and fa.min() >= 0.0 and fa.max() <= 1.0 and fa.max() > 0.1
        rgb = nib.load(folder / "dti_RGB.nii.gz")
        assert rgb.shape == (*image.shape[:3], 3) and rgb.get_data_dtype() == np.uint8
        expected = _independent_fa_mean(folder, dipy_acquisition(name), method="patch2self")
        assert float(rows[sid]["fa_mean"]) == pytest.approx(expected, rel=1e-4)
        assert read_done(folder)["metrics"]["fa_mean"] == pytest.approx(expected, rel=1e-4)
        md = float(rows[sid]["md_mean"])
        assert 1e-4 < md < 5e-3  # mm²/s: tissue diffusivities, not a unit slip
        if name == "small_64D":  # small_101D's brain fills its field of view: no background, no SNR
            assert float(rows[sid]["snr_b0"]) > 1
        assert (folder / "dti_FA.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "batch_report.html").read_text()
    assert page.count("dti_FA.png") >= 2 and "fa_mean (ratio)" in page  # FA pictures in the gallery, FA plotted
    # A sidecar edited in place: that subject alone runs again, and the batch says why.
    bval = study / "sub-02" / "dwi" / "sub-02_dwi.bval"
    bval.write_text(bval.read_text().rstrip() + "\n\n")
    again = subject_batch(out=str(out), bids_dir=str(study), options=options)
    items = {i["item_id"]: i for i in again["items"]}
    assert items["sub-01"]["status"] == "skipped" and items["sub-01"]["reason"].startswith("already done")
    assert items["sub-02"]["status"] == "success"
    assert items["sub-02"]["reason"] == "re-run: input changed: bval (sub-02_dwi.bval)"
    with open(out / "batch_metrics.csv", newline="") as fh:
        assert {r["subject"]: r["reason"] for r in csv.DictReader(fh)}["sub-02"] == items["sub-02"]["reason"]


@pytest.mark.pure
@pytest.mark.parametrize("method", [m for m in DENOISE_METHODS if m != "none"])
def test_each_denoise_method_changes_the_data_and_keeps_its_shape(method):
    files = dipy_acquisition("small_64D")
    data = np.asarray(nib.load(files["nifti"]).dataobj, dtype=np.float32)
    bvals = np.loadtxt(files["bval"])
    mask = data[..., 0] > np.percentile(data[..., 0], 50)
    out = denoise(data, method=method, bvals=bvals, mask=mask)
    assert out.shape == data.shape
    assert np.isfinite(out).all()
    changed = np.abs(out - data)[mask]
    assert changed.mean() > 1e-3 * np.abs(data[mask]).mean()  # the data really changed, inside the brain


@pytest.mark.pure
def test_none_leaves_the_data_alone_and_unknown_methods_are_refused():
    data = np.ones((3, 3, 3, 4), dtype=np.float32)
    assert denoise(data, method="none") is data
    from salvo.errors import InputError

    with pytest.raises(InputError, match="unknown denoise method 'gaussian'"):
        denoise(data, method="gaussian")


@pytest.mark.pure
def test_a_replaced_dwi_reruns_saying_why(tmp_path):
    from salvo.subjects.unit import process_subject

    files = dipy_acquisition("small_101D")
    raw = tmp_path / "raw"
    raw.mkdir()
    for kind in ("nifti", "bval", "bvec"):
        shutil.copyfile(files[kind], raw / os.path.basename(files[kind]))
    subject = {"id": "sub-01", **{k: str(raw / os.path.basename(files[k])) for k in ("nifti", "bval", "bvec")}}
    out = tmp_path / "out"
    params = dict(subject=subject, out_dir=str(out), config_hash="abcd1234", options={})
    first = process_subject(**params)
    assert first["note"] == "" and read_done(out / "sub-01")["ran_because"] == "no successful run yet"
    with pytest.raises(SkipItem, match="already done"):
        process_subject(**params)
    fa_before = np.asarray(nib.load(out / "sub-01" / "dti_FA.nii.gz").dataobj)
    # The scan is replaced (same name, same shape, other content): the subject runs again by itself.
    image = nib.load(subject["nifti"])
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(data[::-1].copy(), image.affine, image.header), subject["nifti"])
    again = process_subject(**params)
    assert again["note"] == f"re-run: input changed: nifti ({os.path.basename(subject['nifti'])})"
    done = read_done(out / "sub-01")
    assert done["ran_because"].startswith("input changed: nifti")
    assert not np.array_equal(np.asarray(nib.load(out / "sub-01" / "dti_FA.nii.gz").dataobj), fa_before)
    with pytest.raises(SkipItem, match="already done"):  # and it is done again, with the new scan
        process_subject(**params)
    # A changed sidecar counts too.
    with open(subject["bval"], "a") as fh:
        fh.write(" ")
    assert process_subject(**params)["note"].startswith("re-run: input changed: bval")
