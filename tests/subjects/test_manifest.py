"""Manifest validation: every problem reported at once, with line and column for bad JSON."""

import json

import pytest

from salvo.errors import UsageError
from salvo.subjects.manifest import ManifestError, load_manifest, sidecars_of, unsafe_id_reason
from salvo.subjects.samples import write_dwi

pytestmark = pytest.mark.pure  # no Prefect server, no flow


def _write(tmp_path, doc, name="m.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return path


@pytest.fixture
def images(tmp_path):
    a = write_dwi(tmp_path / "raw" / "a" / "dwi.nii.gz", shape=(4, 4, 3), bvals=(0, 1000, 1000))
    dicom = tmp_path / "raw" / "b" / "dicoms"
    dicom.mkdir(parents=True)
    (dicom / "IM0001.dcm").write_bytes(b"x")
    return {"nifti": a["nifti"], "dicom": str(dicom)}


def test_valid_manifest_resolves_relative_paths_and_sidecars(tmp_path, images):
    doc = {
        "global_options": {"preprocessing": True},
        "subjects": [{"id": "sub-001", "nifti": "raw/a/dwi.nii.gz"}, {"id": "sub-002", "dicom": "raw/b/dicoms"}],
    }
    m = load_manifest(_write(tmp_path, doc))
    assert m.global_options == {"preprocessing": True}
    assert [s.id for s in m.subjects] == ["sub-001", "sub-002"]
    assert m.subjects[0].nifti == images["nifti"]
    assert m.subjects[0].bval.endswith("raw/a/dwi.bval") and m.subjects[0].bvec.endswith("raw/a/dwi.bvec")
    assert m.subjects[1].dicom == images["dicom"] and m.subjects[1].nifti is None


def test_invalid_json_reports_line_and_column(tmp_path):
    path = _write(tmp_path, '{\n  "subjects": [\n    {"id": "sub-001",}\n  ]\n}\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert "line 3, column 22" in str(info.value)
    assert "\n" not in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path, images):
    doc = {
        "global_options": {"preprocessing": True, "nested": {"a": 1}},
        "colour": "blue",
        "subjects": [
            {"id": "sub-001", "nifti": images["nifti"]},
            {"nifti": images["nifti"]},
            {"id": "sub-003"},
            {"id": "sub-004", "nifti": str(tmp_path / "missing.nii.gz")},
            {"id": "sub-005", "dicom": str(tmp_path / "no-such-folder")},
            {"id": "sub-001", "nifti": images["nifti"]},
            {"id": "../x", "nifti": images["nifti"]},
            {"id": "/abs", "nifti": images["nifti"]},
            {"id": "", "nifti": images["nifti"]},
            {"id": "sub-010", "nifti": images["nifti"], "flavour": "x"},
            "sub-011",
        ],
    }
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path, doc))
    problems = info.value.problems
    text = " | ".join(problems)
    expected = [
        "unknown key 'colour'",
        "global_options.nested must be",
        "subjects[1]: missing field 'id'",
        "subjects[2] (sub-003): missing field 'nifti' or 'dicom'",
        "subjects[3] (sub-004): nifti file not found",
        "subjects[4] (sub-005): dicom folder not found",
        "subjects[5]: duplicate id 'sub-001' (first at subjects[0])",
        "subjects[6] (../x): id '../x' is not a safe folder name",
        "subjects[7] (/abs): id '/abs' is not a safe folder name",
        "subjects[8]: id is empty",
        "subjects[9] (sub-010): unknown key 'flavour'",
        "subjects[10] must be an object",
    ]
    for fragment in expected:
        assert fragment in text, fragment
    assert len(problems) == len(expected)
    assert isinstance(info.value, UsageError) and "\n" not in str(info.value)
    assert str(info.value).count(";") == len(expected) - 1


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({"global_options": {}}, "missing field 'subjects'"),
        ({"subjects": []}, "subjects is empty"),
        ({"subjects": {"id": "x"}}, "subjects must be a list"),
        ([1, 2], "top level must be an object"),
        ({"subjects": [{"id": 7, "nifti": "x"}]}, "id must be a string"),
    ],
)
def test_structural_problems(tmp_path, doc, fragment):
    with pytest.raises(ManifestError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_manifest(_write(tmp_path, doc))


def test_missing_manifest_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="manifest not found"):
        load_manifest(tmp_path / "nope.json")


@pytest.mark.parametrize("bad", ["", " ", ".", "..", "../x", "/abs", "a/b", "a\\b", ".hidden", "sub 1", 5])
def test_unsafe_ids(bad):
    assert unsafe_id_reason(bad) is not None


@pytest.mark.parametrize("good", ["sub-001", "sub-01_ses-test", "P.01", "_x"])
def test_safe_ids(good):
    assert unsafe_id_reason(good) is None


def test_sidecars_of_plain_nii(tmp_path):
    (tmp_path / "x_dwi.nii").write_bytes(b"")
    (tmp_path / "x_dwi.bval").write_text("0 1000")
    assert sidecars_of(tmp_path / "x_dwi.nii") == {"bval": str(tmp_path / "x_dwi.bval")}
