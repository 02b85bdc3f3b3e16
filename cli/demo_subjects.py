"""Demo of subject-batch: DIPY's real bundled acquisitions as a BIDS study (FA maps), a resume, and a manifest study."""

from __future__ import annotations

import json
from pathlib import Path

from cli.common import run_flow
from salvo.subjects.samples import make_bids_dataset, make_dipy_bids_study, make_manifest_study


def run_demo(root: Path) -> list[str]:
    """Run the built-in DIPY pipeline on DIPY's bundled acquisitions, rerun it, then on a manifest and a ds114 tree."""
    from flows.subject_batch import subject_batch

    root = Path(root)
    # sub-01 = DIPY's small_64D, sub-02 = small_101D (real scans, in DIPY's wheel), sub-03 = S0_10slices:
    # one b0 volume with no gradients, which the tensor fit cannot use (bad input, on purpose).
    study = make_dipy_bids_study(root / "dipy_study", b0_only=True)
    study_out = root / "dipy_study_results"
    opts = {"preprocessing": True, "denoise_method": "patch2self"}
    first = run_flow(subject_batch, out=str(study_out), bids_dir=str(study), options=opts, echo=True)
    again = run_flow(subject_batch, out=str(study_out), bids_dir=str(study), options=opts, echo=True)

    manifest = make_manifest_study(root / "study", subjects=3, global_options={"preprocessing": True})
    corrupt = root / "study" / "raw" / "sub-004" / "dwi.nii.gz"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"this is not a NIfTI image")
    doc = json.loads(manifest.read_text())
    doc["subjects"].append({"id": "sub-004", "nifti": "raw/sub-004/dwi.nii.gz"})
    manifest.write_text(json.dumps(doc, indent=2))
    bids = make_bids_dataset(root / "ds114", subjects=2)
    manifest_out, bids_out = root / "study_results", root / "bids_results"
    listed = run_flow(
        subject_batch, out=str(manifest_out), manifest=str(manifest), options={"denoise_method": "mppca"}, echo=True
    )
    units = run_flow(subject_batch, out=str(bids_out), bids_dir=str(bids), exclude=["sub-02_ses-retest"], echo=True)
    fa = {i["item_id"]: i.get("metrics", {}).get("fa_mean") for i in first["items"]}
    return [
        f"subjects (DIPY's bundled scans as BIDS, {study}): {first['summary']['counts']}"
        f" (sub-03 is a b0-only image on purpose); rerun: {again['summary']['counts']}",
        "  mean FA in the brain mask: " + ", ".join(f"{k} {v:.3f}" for k, v in fa.items() if isinstance(v, float)),
        f"  FA maps: {study_out / 'sub-01' / 'dti_FA.nii.gz'} (and dti_MD, dti_RGB, brain_mask, dti_FA.png)",
        f"  report:  {first['reports']['html']} (FA pictures in its gallery)",
        f"  logs:    {study_out / 'sub-01' / 'logs' / 'sub-01.log'} (one per subject, in its folder)",
        f"subjects (manifest {manifest}, MP-PCA): {listed['summary']['counts']}"
        " (sub-004 is a corrupt image on purpose)",
        f"  metrics: {listed['reports']['metrics']}",
        f"subjects (BIDS {bids}): {units['summary']['counts']} over units {[i['item_id'] for i in units['items']]}",
        f"  report:  {units['reports']['html']}",
    ]
