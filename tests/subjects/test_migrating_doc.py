"""The migration page's example commands (docs/migrating/subjects.md), run as written, in order, on
small generated images: each does what the page says."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from salvo.subjects.samples import make_bids_dataset, make_manifest_study
from salvo.subjects.unit import read_done

PAGE = Path(__file__).resolve().parents[2] / "docs" / "migrating" / "subjects.md"
#: A user's own pipeline, standard library only: records its arguments, writes metrics and a QC image.
MY_PIPELINE = """import argparse, json, pathlib, sys
p = argparse.ArgumentParser()
p.add_argument("--input"); p.add_argument("--out"); p.add_argument("--preprocessing", action="store_true")
p.add_argument("--denoise_method")
a = p.parse_args()
out = pathlib.Path(a.out)
(out / "args.json").write_text(json.dumps(sys.argv[1:]))
(out / "qc.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + pathlib.Path(a.input).name.encode())
(out / "metrics.json").write_text(json.dumps({"metrics": {"fa_mean": 0.42}, "units": {"fa_mean": "ratio"}}))
"""


def examples() -> dict[str, list[str]]:
    """Each ``<!-- example: NAME -->`` block's `salvo` command lines, in page order."""
    found = {}
    for m in re.finditer(r"<!-- example: (?P<name>[\w-]+) -->\s*```bash\n(?P<body>.*?)```", PAGE.read_text(), re.S):
        found[m["name"]] = [line.strip() for line in m["body"].splitlines() if line.strip().startswith("salvo ")]
    return found


def _run(line: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    from cli.main import main

    capsys.readouterr()
    code = main(shlex.split(line)[1:])
    out = capsys.readouterr()
    assert code == 0, f"{line!r} exited {code}: {out.err[-2000:]}"
    return out.out.splitlines()


def test_the_migration_pages_commands_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = examples()
    assert list(blocks) == ["seed-commands", "resume", "own-tool"]
    make_manifest_study(tmp_path, subjects=3, global_options={"preprocessing": True}, shape=(6, 6, 4))
    make_bids_dataset(tmp_path / "raw_data", subjects=3, sessions=(), shape=(6, 6, 4))
    monkeypatch.chdir(tmp_path)

    manifest_cmd, bids_cmd = blocks["seed-commands"]
    lines = _run(manifest_cmd, capsys)
    assert lines[:2] == ["Starting batch processing for 3 subjects", f"Output directory: {tmp_path / 'study_results'}"]
    assert [line.split(": Success in ")[0] for line in lines if ": Success in " in line] == [
        "1. sub-001",
        "2. sub-002",
        "3. sub-003",
    ]
    assert "BATCH PROCESSING COMPLETE" in lines
    out = tmp_path / "study_results"
    for name in ("batch_metrics.csv", "batch_report.html"):
        assert (out / name).is_file()
    for sid in ("sub-001", "sub-002", "sub-003"):  # the seed's layout, logs included
        assert read_done(out / sid)["status"] == "success"
        assert f"{sid}: success in" in (out / sid / "logs" / f"{sid}.log").read_text()
        assert (out / sid / "dti_FA.nii.gz").is_file() and (out / sid / "dti_FA.png").is_file()
        assert read_done(out / sid)["options"] == {"preprocessing": True, "denoise_method": "patch2self"}
    assert not (out / "logs").exists()

    _run(bids_cmd, capsys)
    assert sorted(p.name for p in (tmp_path / "bids_results").iterdir() if p.name.startswith("sub-")) == [
        "sub-01",
        "sub-03",
    ]

    same, changed = blocks["resume"]
    assert same == manifest_cmd
    lines = _run(same, capsys)
    assert sum("Skipped - already done (config hash" in line for line in lines) == 3
    first_hash = read_done(out / "sub-001")["config_hash"]
    lines = _run(changed, capsys)
    assert sum(": Success in " in line for line in lines) == 3
    assert read_done(out / "sub-001")["config_hash"] != first_hash
    assert read_done(out / "sub-001")["options"]["denoise_method"] == "nlmeans"
    assert len((out / "sub-001" / "logs" / "sub-001.log").read_text().split("config hash")) - 1 >= 2  # appended, kept

    # The seed's own manifest example: one NIfTI subject, one DICOM subject.
    (tmp_path / "raw" / "sub-002" / "dicoms").mkdir(parents=True)
    (tmp_path / "raw" / "sub-002" / "dicoms" / "IM0001.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (tmp_path / "mixed_manifest.json").write_text(
        json.dumps(
            {
                "global_options": {"preprocessing": True},
                "subjects": [
                    {"id": "sub-001", "nifti": "raw/sub-001/dwi.nii.gz"},
                    {"id": "sub-002", "dicom": "raw/sub-002/dicoms/"},
                ],
            }
        )
    )
    (tmp_path / "my_pipeline.py").write_text(MY_PIPELINE)
    (own,) = blocks["own-tool"]
    _run(own + " --denoise_method patch2self", capsys)
    tool = tmp_path / "tool_results"
    args = json.loads((tool / "sub-001" / "args.json").read_text())
    assert args[:2] == ["--input", str(tmp_path / "raw" / "sub-001" / "dwi.nii.gz")]
    assert args[2] == "--out" and args[4:] == ["--denoise_method", "patch2self", "--preprocessing"]
    assert json.loads((tool / "sub-002" / "args.json").read_text())[1] == str(tmp_path / "raw" / "sub-002" / "dicoms")
    page = (tool / "batch_report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2 and "fa_mean (ratio)" in page
