"""Demo of subject-batch: a manifest study (one corrupt image) and a ds114-shaped BIDS tree, then a resume."""

from __future__ import annotations

import json
from pathlib import Path

from cli.common import run_flow
from salvo.subjects.samples import make_bids_dataset, make_manifest_study


def run_demo(root: Path) -> list[str]:
    """Make sample DWI data under ``root``, run the built-in pipeline on both layouts, then rerun."""
    from flows.subject_batch import subject_batch

    root = Path(root)
    manifest = make_manifest_study(root / "study", subjects=4, global_options={"preprocessing": True})
    corrupt = root / "study" / "raw" / "sub-005" / "dwi.nii.gz"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"this is not a NIfTI image")
    doc = json.loads(manifest.read_text())
    doc["subjects"].append({"id": "sub-005", "nifti": "raw/sub-005/dwi.nii.gz"})
    manifest.write_text(json.dumps(doc, indent=2))
    bids = make_bids_dataset(root / "ds114", subjects=2)

    study_out, bids_out = root / "study_results", root / "bids_results"
    opts = {"denoise_method": "patch2self"}
    first = run_flow(subject_batch, out=str(study_out), manifest=str(manifest), options=opts, echo=True)
    again = run_flow(subject_batch, out=str(study_out), manifest=str(manifest), options=opts, echo=True)
    units = run_flow(subject_batch, out=str(bids_out), bids_dir=str(bids), exclude=["sub-02_ses-retest"], echo=True)
    return [
        f"subjects (manifest {manifest}): {first['summary']['counts']} (sub-005 is a corrupt image on purpose);"
        f" rerun: {again['summary']['counts']}",
        f"  metrics: {first['reports']['metrics']}",
        f"  report:  {first['reports']['html']}",
        f"  logs:    {study_out / 'sub-001' / 'logs' / 'sub-001.log'} (one per subject, in its folder)",
        f"subjects (BIDS {bids}): {units['summary']['counts']} over units {[i['item_id'] for i in units['items']]}",
        f"  metrics: {units['reports']['metrics']}",
        f"  report:  {units['reports']['html']}",
    ]
