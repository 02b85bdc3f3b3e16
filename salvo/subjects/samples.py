"""Small synthetic diffusion MRI data for demos and tests: NIfTI images with .bval/.bvec sidecars."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: b-values of a small two-shell acquisition: two b0, eight directions at b=1000 and at b=2000 (18 volumes:
#: DIPY 1.12's Patch2Self cannot denoise exactly 14).
DEFAULT_BVALS = (0, 0) + (1000,) * 8 + (2000,) * 8


def _directions(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(3, n))
    return v / np.linalg.norm(v, axis=0)


def write_dwi(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, int, int] = (12, 12, 6),
    bvals: Sequence[int] = DEFAULT_BVALS,
    seed: int = 0,
    sidecars: bool = True,
) -> dict[str, str]:
    """Write a synthetic DWI image (a noisy sphere, mono-exponential decay) and its sidecars."""
    import nibabel as nib

    nifti = Path(path)
    nifti.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    b = np.asarray(bvals, dtype=float)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = (grid**2).sum(axis=0) < 0.7
    s0 = np.where(brain, 1000.0, 20.0)
    diffusivity = 0.0007 + 0.0003 * rng.random()  # mm^2/s, one value per subject
    signal = s0[..., None] * np.exp(-b * diffusivity)[None, None, None, :]
    data = signal + rng.normal(scale=15.0, size=signal.shape)
    image = nib.Nifti1Image(np.clip(data, 0, None).astype(np.int16), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(image, str(nifti))
    out = {"nifti": str(nifti)}
    if sidecars:
        stem = nifti.name.removesuffix(".gz").removesuffix(".nii")
        bval = nifti.with_name(f"{stem}.bval")
        bvec = nifti.with_name(f"{stem}.bvec")
        bval.write_text(" ".join(str(int(v)) for v in b) + "\n")
        write_bvec(bvec, len(b), seed=seed)
        out.update(bval=str(bval), bvec=str(bvec))
    return out


def write_bvec(path: str | os.PathLike[str], n: int, *, seed: int = 0) -> Path:
    """Write ``n`` random unit gradient directions in FSL's three-row layout."""
    vecs = _directions(n, np.random.default_rng(seed + 1))
    rows = [" ".join(f"{x:.6f}" for x in row) for row in vecs]
    p = Path(path)
    p.write_text("\n".join(rows) + "\n")
    return p


def make_bids_dataset(
    root: str | os.PathLike[str],
    *,
    subjects: int = 3,
    sessions: Sequence[str] = ("test", "retest"),
    shape: tuple[int, int, int] = (12, 12, 6),
) -> Path:
    """A ds114-shaped BIDS tree: root-level dwi.bval/bvec, two sessions, anat, derivatives, sourcedata."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "dataset_description.json").write_text(json.dumps({"Name": "synthetic ds114", "BIDSVersion": "1.8.0"}))
    (base / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{i:02d}\n" for i in range(1, subjects + 1))
    )
    (base / "dwi.bval").write_text(" ".join(str(v) for v in DEFAULT_BVALS) + "\n")
    write_bvec(base / "dwi.bvec", len(DEFAULT_BVALS))
    seed = 0
    for i in range(1, subjects + 1):
        sub = f"sub-{i:02d}"
        for ses in sessions or (None,):
            folder = base / sub / (f"ses-{ses}" if ses else "") / "dwi"
            stem = f"{sub}_ses-{ses}" if ses else sub
            seed += 1
            write_dwi(folder / f"{stem}_dwi.nii.gz", shape=shape, seed=seed, sidecars=False)
            anat = folder.parent / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            (anat / f"{stem}_T1w.nii.gz").write_bytes(b"not a dwi image")
    # Places discovery must ignore: derivatives, sourcedata and hidden folders shaped like subjects.
    for ignored in (
        "derivatives/dtifit/sub-01/ses-test/dwi",
        "sourcedata/sub-01/ses-test/dwi",
        ".heudiconv/sub-01/dwi",
    ):
        (base / ignored).mkdir(parents=True, exist_ok=True)
        (base / ignored / "sub-01_ses-test_dwi.nii.gz").write_bytes(b"ignored")
    (base / "sub-99.tmp").write_text("a file named like a subject")
    return base


def make_manifest_study(
    root: str | os.PathLike[str],
    *,
    subjects: int = 3,
    global_options: Mapping[str, Any] | None = None,
    shape: tuple[int, int, int] = (12, 12, 6),
) -> Path:
    """Raw images under ``root/raw`` and a ``study_manifest.json`` listing them; returns the manifest."""
    base = Path(root)
    entries = []
    for i in range(1, subjects + 1):
        sid = f"sub-{i:03d}"
        files = write_dwi(base / "raw" / sid / "dwi.nii.gz", shape=shape, seed=100 + i)
        entries.append({"id": sid, "nifti": os.path.relpath(files["nifti"], base)})
    manifest = base / "study_manifest.json"
    manifest.write_text(json.dumps({"global_options": dict(global_options or {}), "subjects": entries}, indent=2))
    return manifest


#: DIPY's bundled acquisitions (in its wheel, so offline): name -> the file names ``get_fnames`` gives.
DIPY_ACQUISITIONS = ("small_64D", "small_101D")


def dipy_acquisition(name: str) -> dict[str, str]:
    """The NIfTI image and ``.bval``/``.bvec`` of one of DIPY's bundled acquisitions (``small_64D``, ``small_101D``)."""
    from dipy.data import get_fnames

    nifti, bval, bvec = get_fnames(name=name)
    return {"nifti": str(nifti), "bval": str(bval), "bvec": str(bvec)}


def make_dipy_bids_study(
    root: str | os.PathLike[str],
    *,
    acquisitions: Sequence[str] = DIPY_ACQUISITIONS,
    b0_only: bool = False,
    corrupt: bool = False,
) -> Path:
    """A BIDS study of DIPY's real bundled acquisitions: ``sub-01`` = the first one, ``sub-02`` the next...

    ``b0_only`` adds a subject whose image is DIPY's ``S0_10slices`` (ten b0 slices, one volume, with
    no sidecars: not a diffusion acquisition); ``corrupt`` adds one whose image is not a NIfTI file.
    Files are copied (never linked), so a test may change them.
    """
    import shutil

    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "dataset_description.json").write_text(
        json.dumps({"Name": "DIPY bundled acquisitions", "BIDSVersion": "1.8.0"})
    )
    n = 0
    for name in acquisitions:
        n += 1
        files = dipy_acquisition(name)
        folder = base / f"sub-{n:02d}" / "dwi"
        folder.mkdir(parents=True, exist_ok=True)
        ext = ".nii.gz" if files["nifti"].endswith(".gz") else ".nii"
        shutil.copyfile(files["nifti"], folder / f"sub-{n:02d}_dwi{ext}")
        shutil.copyfile(files["bval"], folder / f"sub-{n:02d}_dwi.bval")
        shutil.copyfile(files["bvec"], folder / f"sub-{n:02d}_dwi.bvec")
    if b0_only:
        from dipy.data import get_fnames

        n += 1
        folder = base / f"sub-{n:02d}" / "dwi"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_fnames(name="S0_10"), folder / f"sub-{n:02d}_dwi.nii.gz")
    if corrupt:
        n += 1
        folder = base / f"sub-{n:02d}" / "dwi"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"sub-{n:02d}_dwi.nii.gz").write_bytes(b"this is not a NIfTI image")
        files = dipy_acquisition(acquisitions[0])
        shutil.copyfile(files["bval"], folder / f"sub-{n:02d}_dwi.bval")
        shutil.copyfile(files["bvec"], folder / f"sub-{n:02d}_dwi.bvec")
    return base
