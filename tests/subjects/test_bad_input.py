"""`salvo subjects` bad-input catalogue: every case exits 2 with one line, before Prefect starts, and
leaves the raw images, the manifest and an earlier batch's outputs byte-for-byte as they were."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from salvo.subjects.samples import make_bids_dataset, make_manifest_study
from tests.badinput import assert_refused

pytestmark = pytest.mark.pure


def _manifest(study: Path, subjects: list[dict], name: str = "odd_manifest.json") -> str:
    path = study / name
    path.write_text(json.dumps({"global_options": {}, "subjects": subjects}))
    return str(path)


@pytest.fixture
def p(tmp_path):
    """A study (raw images and a manifest), a BIDS tree without sessions, and an earlier batch's outputs."""
    study = tmp_path / "study"
    manifest = make_manifest_study(study, subjects=2, shape=(4, 4, 3))
    bids = make_bids_dataset(tmp_path / "bids", subjects=2, sessions=(), shape=(4, 4, 3))
    sessions = make_bids_dataset(tmp_path / "ds114", subjects=1, shape=(4, 4, 3))
    out = tmp_path / "out"  # an earlier batch's outputs, which no refused command may touch
    (out / "sub-001" / "logs").mkdir(parents=True)
    (out / "sub-001" / "_done.json").write_text(json.dumps({"status": "success", "config_hash": "a1b2c3d4"}))
    (out / "sub-001" / "metrics.json").write_text('{"fa_mean": 0.41}')
    (out / "sub-001" / "logs" / "sub-001.log").write_text("sub-001: success in 1.0s\n")
    (out / "batch_report.html").write_text("<html>earlier</html>")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    dicom = study / "raw" / "sub-003" / "dicoms"
    dicom.mkdir(parents=True)
    (dicom / "IM0001.dcm").write_bytes(b"DICM" + bytes(128))
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    return SimpleNamespace(
        tmp=tmp_path,
        study=study,
        manifest=str(manifest),
        bids=str(bids),
        sessions=str(sessions),
        out=str(out),
        fifo=str(fifo),
        dicom=str(dicom),
        file=str(a_file),
        keep=[study, bids, sessions, out],
    )


def _m(p, *extra, out=None):
    return ["subjects", "--manifest", p.manifest, "--out", out or p.out, *extra]


CASES = {
    # the manifest itself
    "manifest is a FIFO (must not hang)": (
        lambda p: ["subjects", "--manifest", p.fifo, "--out", p.out],
        "not a regular file",
    ),
    "manifest is a folder": (lambda p: ["subjects", "--manifest", str(p.study), "--out", p.out], "is a folder"),
    "manifest missing": (lambda p: ["subjects", "--manifest", str(p.study / "nope.json"), "--out", p.out], "not found"),
    "manifest not JSON": (lambda p: ["subjects", "--manifest", p.file, "--out", p.out], "invalid JSON"),
    "manifest lists a FIFO as image": (
        lambda p: ["subjects", "--manifest", _manifest(p.study, [{"id": "sub-009", "nifti": p.fifo}]), "--out", p.out],
        "not a regular file",
    ),
    "subject id 'logs'": (
        lambda p: [
            "subjects",
            "--manifest",
            _manifest(p.study, [{"id": "logs", "nifti": "raw/sub-001/dwi.nii.gz"}]),
            "--out",
            p.out,
        ],
        "a name Salvo uses",
    ),
    "subject id of a quarantined work folder": (
        lambda p: [
            "subjects",
            "--manifest",
            _manifest(p.study, [{"id": "_failed-x", "nifti": "raw/sub-001/dwi.nii.gz"}]),
            "--out",
            p.out,
        ],
        "a name Salvo uses",
    ),
    "subject id of a report": (
        lambda p: [
            "subjects",
            "--manifest",
            _manifest(p.study, [{"id": "batch_report.html", "nifti": "raw/sub-001/dwi.nii.gz"}]),
            "--out",
            p.out,
        ],
        "a name Salvo uses",
    ),
    "subject id 'raw' with --out the study folder": (
        lambda p: [
            "subjects",
            "--manifest",
            _manifest(p.study, [{"id": "raw", "nifti": "raw/sub-001/dwi.nii.gz"}]),
            "--out",
            str(p.study),
        ],
        "contains the input",
    ),
    "subject id naming the manifest": (
        lambda p: [
            "subjects",
            "--manifest",
            _manifest(p.study, [{"id": "m.json", "nifti": "raw/sub-001/dwi.nii.gz"}], "m.json"),
            "--out",
            str(p.study),
        ],
        "is the input",
    ),
    # output folders over inputs (issue 15: these deleted the raw images)
    "--out is the raw folder of the manifest": (lambda p: _m(p, out=str(p.study / "raw")), "contains the input"),
    "--out is the BIDS folder (no sessions)": (
        lambda p: ["subjects", "--bids-dir", p.bids, "--out", p.bids],
        "contains the input",
    ),
    "--out the BIDS folder with sessions": (
        lambda p: ["subjects", "--bids-dir", p.sessions, "--out", p.sessions],
        "is the BIDS dataset",
    ),
    "--out inside the BIDS folder, not in derivatives": (
        lambda p: ["subjects", "--bids-dir", p.sessions, "--out", str(Path(p.sessions) / "results")],
        "is inside the BIDS dataset",
    ),
    "--out inside a DICOM input folder": (
        lambda p: [
            "subjects",
            "--manifest",
            _manifest(p.study, [{"id": "sub-003", "dicom": "raw/sub-003/dicoms"}]),
            "--out",
            str(Path(p.dicom) / "results"),
            "--pipeline-command",
            "true {input}",
        ],
        "is inside the input",
    ),
    "--out is a file": (lambda p: _m(p, out=p.file), "is a file"),
    # the pipeline command
    "--pipeline-command with an unbalanced quote": (
        lambda p: _m(p, "--pipeline-command", "true '{input}"),
        "cannot be parsed",
    ),
    "--pipeline-command program missing": (
        lambda p: _m(p, "--pipeline-command", "no-such-dwi-tool-xyz {input}"),
        "program not found",
    ),
    "--pipeline-command empty": (lambda p: _m(p, "--pipeline-command", ""), "is empty"),
    "--pipeline-command unknown placeholder": (
        lambda p: _m(p, "--pipeline-command", "true {subject}"),
        "unknown placeholder",
    ),
    "--pipeline-command {nifti} with a DICOM subject": (
        lambda p: [
            "subjects",
            "--manifest",
            _manifest(
                p.study,
                [
                    {"id": "sub-001", "nifti": "raw/sub-001/dwi.nii.gz"},
                    {"id": "sub-003", "dicom": "raw/sub-003/dicoms"},
                ],
            ),
            "--out",
            p.out,
            "--pipeline-command",
            "true {nifti}",
        ],
        "use {input}",
    ),
    "--denoise-method unknown": (lambda p: _m(p, "--denoise-method", "magic"), "unknown --denoise-method"),
    # numbers
    "--timeout nan": (lambda p: _m(p, "--timeout", "nan"), "--timeout"),
    "--timeout inf": (lambda p: _m(p, "--timeout", "inf"), "--timeout"),
    "--timeout negative": (lambda p: _m(p, "--timeout=-5"), "--timeout"),
    "--timeout zero": (lambda p: _m(p, "--timeout", "0"), "--timeout"),
    "--timeout over a week": (lambda p: _m(p, "--timeout", "20000"), "at most a week"),
    "--parallel zero": (lambda p: _m(p, "--parallel", "0"), "--parallel"),
    "--parallel nan": (lambda p: _m(p, "--parallel", "nan"), "--parallel"),
    "--parallel fraction": (lambda p: _m(p, "--parallel", "1.5"), "--parallel"),
    "--retries negative": (lambda p: _m(p, "--retries=-1"), "--retries"),
    "--retries inf": (lambda p: _m(p, "--retries", "inf"), "--retries"),
    # the BIDS folder and the rest
    "--bids-dir missing": (
        lambda p: ["subjects", "--bids-dir", str(p.tmp / "nope"), "--out", p.out],
        "--bids-dir not found",
    ),
    "--bids-dir is a file": (lambda p: ["subjects", "--bids-dir", p.file, "--out", p.out], "is not a folder"),
    "--bids-dir is a FIFO": (lambda p: ["subjects", "--bids-dir", p.fifo, "--out", p.out], "is not a folder"),
    "--bids-dir with no DWI images": (
        lambda p: ["subjects", "--bids-dir", str(p.study), "--out", p.out],
        "no DWI images",
    ),
    "--include with a manifest": (lambda p: _m(p, "--include", "sub-*"), "apply to --bids-dir only"),
    "--dask-address malformed": (lambda p: _m(p, "--dask-address", "not an address"), "--dask-address"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_anything_runs(case, p, capsys):
    make_argv, mentions = CASES[case]
    argv = make_argv(p)
    assert_refused(argv, capsys, keep=p.keep, mentions=mentions)
    assert not (Path(p.out) / ".salvo-runs").exists()  # no flow run started


@pytest.mark.parametrize("layout", ["manifest raw", "bids without sessions"])
def test_out_over_the_inputs_names_both_paths_and_keeps_the_images(layout, p, capsys):
    if layout == "manifest raw":
        argv, out_sub, image = (
            _m(p, out=str(p.study / "raw")),
            p.study / "raw" / "sub-001",
            p.study / "raw" / "sub-001" / "dwi.nii.gz",
        )
    else:
        bids = Path(p.bids)
        argv, out_sub, image = (
            ["subjects", "--bids-dir", p.bids, "--out", p.bids],
            bids / "sub-01",
            bids / "sub-01" / "dwi" / "sub-01_dwi.nii.gz",
        )
    before = image.read_bytes()
    err = assert_refused(argv, capsys, keep=p.keep)
    assert str(out_sub.resolve()) in err and str(image.resolve()) in err, err
    assert image.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder: permissions cannot make one unreadable")
def test_unreadable_bids_dir(p, capsys):
    locked = Path(p.bids)
    locked.chmod(0)
    try:
        assert_refused(["subjects", "--bids-dir", p.bids, "--out", p.out], capsys, mentions="cannot be read")
    finally:
        locked.chmod(0o755)


def test_a_fifo_manifest_does_not_hang_the_command(p):
    # Opening a FIFO for reading blocks until a writer comes: the check must not open it. Run in a
    # child with a (generous) timeout, so that a regression fails instead of hanging the suite.
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "cli", "subjects", "--manifest", p.fifo, "--out", p.out],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 2 and "not a regular file" in proc.stderr


def test_out_under_the_datasets_derivatives_or_beside_the_inputs_is_accepted(p):
    from salvo.subjects.plan import plan_subjects

    for bids in (p.bids, p.sessions):
        plan = plan_subjects(bids_dir=bids, out_dir=str(Path(bids) / "derivatives" / "salvo"))
        assert plan.subjects
    assert plan_subjects(manifest=p.manifest, out_dir=str(p.study / "results")).subjects  # beside raw/, not over it
    assert plan_subjects(manifest=p.manifest, out_dir=str(p.study)).subjects  # OUT/sub-001 is not raw/sub-001
