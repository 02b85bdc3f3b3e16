"""Issue 10 (subjects): real BIDS layouts (tests/data/bids, copied from the BIDS examples) and manifests
that mix NIfTI and DICOM."""

from __future__ import annotations

import json
import sys

import pytest

from salvo.subjects.discover import discover_bids
from salvo.subjects.samples import make_manifest_study, write_bvec, write_dwi
from tests.badinput import snapshot
from tests.helpers import PUBLIC_FIXTURES

# Resolved, as discovery resolves paths.
FIXTURES = (PUBLIC_FIXTURES / "bids").resolve()
UKBB = FIXTURES / "genetics_ukbb"
EEG = FIXTURES / "eeg_rest_fmri"


@pytest.mark.pure
def test_ukbb_without_sessions_inherits_the_dataset_level_bval_and_bvec():
    units = discover_bids(UKBB)
    assert [u.id for u in units] == [f"sub-{i:02d}" for i in range(1, 15)]
    for u in units:
        assert u.nifti == str(UKBB / u.id / "dwi" / f"{u.id}_dwi.nii.gz")
        assert u.bval == str(UKBB / "dwi.bval") and u.bvec == str(UKBB / "dwi.bvec")


@pytest.mark.pure
def test_eeg_fmri_acq_entities_each_a_unit_with_their_own_sidecars_derivatives_ignored():
    units = discover_bids(EEG)
    assert [u.id for u in units] == [f"sub-{s}_acq-NODDI{d}DIR" for s in (32, 35, 36) for d in (10, 33)]
    for u in units:
        sub, acq = u.id.split("_")
        stem = EEG / sub / "dwi" / f"{sub}_{acq}_dwi"
        assert (u.nifti, u.bval, u.bvec) == (f"{stem}.nii.gz", f"{stem}.bval", f"{stem}.bvec")
        assert "derivatives" not in u.nifti
    assert [u.id for u in discover_bids(EEG, include=["sub-35"])] == ["sub-35_acq-NODDI10DIR", "sub-35_acq-NODDI33DIR"]


@pytest.mark.pure
def test_mixed_layout_sessions_run_dir_entities_and_inherited_sidecars(tmp_path):
    root = tmp_path / "study"
    shape = (4, 4, 3)
    # Dataset-level sidecars for one acquisition, inherited by every subject that has no nearer one.
    (root).mkdir()
    (root / "acq-multi_dwi.bval").write_text("0 1000 1000\n")
    write_bvec(root / "acq-multi_dwi.bvec", 3)
    (root / "dwi.bval").write_text("0 0 1000 1000 1000 1000 1000 1000 2000 2000 2000 2000 2000 2000\n")
    write_bvec(root / "dwi.bvec", 14)
    write_dwi(root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz", shape=shape, sidecars=False)  # no sessions
    write_dwi(
        root / "sub-02" / "ses-pre" / "dwi" / "sub-02_ses-pre_acq-multi_dir-AP_run-1_dwi.nii.gz",
        shape=shape,
        sidecars=False,
    )
    write_dwi(
        root / "sub-02" / "ses-pre" / "dwi" / "sub-02_ses-pre_acq-multi_dir-PA_run-1_dwi.nii.gz", shape=shape
    )  # its own
    write_dwi(
        root / "sub-02" / "ses-post" / "dwi" / "sub-02_ses-post_dir-AP_run-2_dwi.nii", shape=shape, sidecars=False
    )
    for ignored in ("derivatives/pipeline/sub-01/dwi", "sourcedata/sub-03/dwi", "sub-01/ses-x/.git/dwi"):
        (root / ignored).mkdir(parents=True)
        (root / ignored / "sub-01_dwi.nii.gz").write_bytes(b"")
    by_id = {u.id: u for u in discover_bids(root)}
    assert sorted(by_id) == [
        "sub-01",
        "sub-02_ses-post_dir-AP_run-2",
        "sub-02_ses-pre_acq-multi_dir-AP_run-1",
        "sub-02_ses-pre_acq-multi_dir-PA_run-1",
    ]
    assert by_id["sub-01"].bval == str(root / "dwi.bval")
    assert by_id["sub-02_ses-post_dir-AP_run-2"].bval == str(root / "dwi.bval")
    assert by_id["sub-02_ses-pre_acq-multi_dir-AP_run-1"].bval == str(root / "acq-multi_dwi.bval")  # most specific wins
    own = root / "sub-02" / "ses-pre" / "dwi" / "sub-02_ses-pre_acq-multi_dir-PA_run-1_dwi"
    assert by_id["sub-02_ses-pre_acq-multi_dir-PA_run-1"].bval == f"{own}.bval"


def test_builtin_pipeline_on_the_placeholder_images_fails_per_subject_not_the_batch(tmp_path):
    from flows.batch import BatchFailed
    from flows.subject_batch import subject_batch
    from salvo.options import RunOptions

    before = snapshot([UKBB])
    out = tmp_path / "out"
    state = subject_batch(
        out=str(out), bids_dir=str(UKBB), include=["sub-0[12]"], run=RunOptions(retries=0), return_state=True
    )
    err = state.result(raise_on_failure=False)
    assert isinstance(err, BatchFailed)
    items = {i["item_id"]: i for i in err.summary["items"]}
    assert sorted(items) == ["sub-01", "sub-02"]
    for sid, item in items.items():
        assert item["status"] == "error" and item["reason"].startswith("bad input: cannot read NIfTI"), item
        assert str(UKBB / sid / "dwi" / f"{sid}_dwi.nii.gz") in item["reason"]
        assert "cannot read NIfTI" in (out / sid / "logs" / f"{sid}.log").read_text()
    assert (out / "batch_metrics.csv").exists() and (out / "batch_report.html").exists()
    assert snapshot([UKBB]) == before


# A stand-in for the user's tool: records its arguments; exits 7 for sub-004 (no braces: they are placeholders).
_RECORDER = (
    "import json, sys, pathlib; work = pathlib.Path(sys.argv[2]); "
    "(work / 'args.json').write_text(json.dumps(dict(input=sys.argv[1], rest=sys.argv[3:]))); "
    "sys.exit(7 if work.parent.name == 'sub-004' else 0)"
)


def test_a_manifest_mixing_nifti_and_dicom_runs_each_with_its_own_input(tmp_path, capsys):
    from cli.main import main

    manifest = make_manifest_study(
        tmp_path / "study", subjects=1, global_options={"preprocessing": True}, shape=(4, 4, 3)
    )
    dicoms = tmp_path / "study" / "raw" / "sub-002" / "dicoms"
    dicoms.mkdir(parents=True)
    for i in range(3):
        (dicoms / f"IM{i:04d}.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes([i]))
    doc = json.loads(manifest.read_text())
    doc["subjects"] += [
        {"id": "sub-002", "dicom": "raw/sub-002/dicoms", "options": {"denoise_method": "mppca"}},
        {"id": "sub-004", "dicom": "raw/sub-002/dicoms"},
    ]
    manifest.write_text(json.dumps(doc))
    out = tmp_path / "out"
    command = f'{sys.executable} -c "{_RECORDER}" {{input}} {{work_dir}} {{options}}'
    code = main(
        [
            "subjects",
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--pipeline-command",
            command,
            "--denoise_method",
            "patch2self",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1, captured.err[-2000:]
    result = json.loads(captured.out)
    items = {i["item_id"]: i for i in result["items"]}
    assert items["sub-001"]["status"] == items["sub-002"]["status"] == "success"
    # sub-004's command exited 7: the subject's result keeps 7, not a generic 1.
    assert items["sub-004"]["status"] == "error" and items["sub-004"]["exit_code"] == 7
    assert items["sub-004"]["reason"].startswith("exit code 7")
    first = json.loads((out / "sub-001" / "args.json").read_text())
    second = json.loads((out / "sub-002" / "args.json").read_text())
    assert first["input"] == str(tmp_path / "study" / "raw" / "sub-001" / "dwi.nii.gz")
    assert second["input"] == str(dicoms)
    # Options as the seed's tool spells them (keys as written), the subject's own option winning.
    assert first["rest"] == ["--denoise_method", "patch2self", "--preprocessing"]
    assert second["rest"] == ["--denoise_method", "mppca", "--preprocessing"]
    done = json.loads((out / "sub-002" / "_done.json").read_text())
    assert list(done["inputs"]) == [str(dicoms)] and len(done["inputs"][str(dicoms)]) == 40  # BLAKE2b-160 of the folder
    assert done["input_fingerprints"] == {"dicom": done["inputs"][str(dicoms)]}
