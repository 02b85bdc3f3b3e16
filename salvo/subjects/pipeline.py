"""The built-in pipeline, on DIPY: brain mask, denoising, diffusion tensor, FA/MD/RGB maps and a QC picture.

Every algorithm is DIPY's own (``median_otsu``, ``patch2self``, ``nlmeans``, ``mppca``,
``TensorModel``), called the way DIPY's documentation and csttool (the seed's tool) call them.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from salvo.errors import InputError

PIPELINE_NAME = "builtin"
#: Bumped when the built-in pipeline computes something different; with DIPY's version it keys resume.
PIPELINE_REVISION = "builtin-2"
#: The files the built-in pipeline writes into a subject's folder (its output contract; `_done.json` comes last).
OUTPUT_FILES = (
    "dti_FA.nii.gz",
    "dti_MD.nii.gz",
    "dti_RGB.nii.gz",
    "brain_mask.nii.gz",
    "dti_FA.png",
    "metrics.json",
)
#: Units of the metrics the built-in pipeline writes (shown on the report's plot axes).
METRIC_UNITS = {
    "fa_mean": "ratio",
    "md_mean": "mm²/s",
    "snr_b0": "ratio",
    "n_volumes": "volumes",
    "n_b0": "volumes",
    "n_shells": "shells",
    "mask_fraction": "fraction of voxels",
    "b0_mean": "a.u.",
    "denoise_residual_std": "a.u.",
}
#: The seed's names for DIPY's denoisers (csttool's ``--denoise_method`` values, plus DIPY's MP-PCA).
DENOISE_METHODS = ("patch2self", "nlmeans", "mppca", "none")
DEFAULT_DENOISE = "patch2self"
KNOWN_DENOISE = ", ".join(DENOISE_METHODS)
#: b-values below this count as b0 (DIPY's and csttool's threshold); closer than SHELL_TOLERANCE share a shell.
B0_THRESHOLD = 50.0
SHELL_TOLERANCE = 100.0
#: The seed of NumPy's global RNG while Patch2Self sketches the data (the same maps on every run).
PATCH2SELF_SEED = 0
#: The receiver-coil count NLMeans's noise estimate assumes unless the options give ``coil_count`` (csttool's default).
DEFAULT_COILS = 4


@functools.lru_cache(maxsize=1)
def dipy_version() -> str:
    """The installed DIPY's version (read from its metadata: cheap, no import)."""
    try:
        return metadata.version("dipy")
    except metadata.PackageNotFoundError:
        return "missing"


def pipeline_version() -> str:
    """``builtin-2+dipy1.12.1``: what the built-in pipeline's outputs depend on besides the options."""
    return f"{PIPELINE_REVISION}+dipy{dipy_version()}"


def read_bvals(path: str | os.PathLike[str]) -> np.ndarray:
    """The b-values of an FSL ``.bval`` file (one row of numbers)."""
    try:
        values = np.array(Path(path).read_text().split(), dtype=float)
    except ValueError as exc:
        raise InputError(f"bad .bval file {path}: {exc}") from None
    return values


def read_gradients(
    bval: str | os.PathLike[str], bvec: str | os.PathLike[str], n_volumes: int
) -> tuple[Any, np.ndarray]:
    """DIPY's gradient table from FSL sidecars, checked against the image's volume count."""
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs

    bvals = read_bvals(bval)
    if len(bvals) != n_volumes:
        raise InputError(f".bval has {len(bvals)} values but the image has {n_volumes} volumes")
    try:
        bvals, bvecs = read_bvals_bvecs(str(bval), str(bvec))
        gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=B0_THRESHOLD)
    except (ValueError, OSError, IOError) as exc:
        raise InputError(f"bad .bval/.bvec pair {bval}, {bvec}: {exc}") from None
    if not (~gtab.b0s_mask).any():
        raise InputError("no diffusion-weighted volume (every b-value is below 50): no tensor can be fitted")
    if not gtab.b0s_mask.any():
        raise InputError("no b0 volume (no b-value below 50): no brain mask or SNR can be computed")
    return gtab, np.asarray(bvals, dtype=float)


def find_shells(bvals: np.ndarray, *, tolerance: float = SHELL_TOLERANCE) -> list[dict[str, Any]]:
    """Group b-values into shells: [{'bval': 0, 'count': 2}, {'bval': 1000, 'count': 6}, ...]."""
    shells: list[list[float]] = []
    for b in sorted(float(v) for v in bvals):
        b = 0.0 if b < B0_THRESHOLD else b
        if shells and b - shells[-1][0] <= tolerance:
            shells[-1].append(b)
        else:
            shells.append([b])
    return [{"bval": int(round(float(np.mean(s)) / 10.0) * 10), "count": len(s)} for s in shells]


def brain_mask(data: np.ndarray, b0s_mask: np.ndarray) -> np.ndarray:
    """DIPY's ``median_otsu`` on the b0 volumes, as csttool calls it (radius 2, one pass); a boolean 3D mask."""
    from dipy.segment.mask import median_otsu

    with np.errstate(invalid="ignore", divide="ignore"):  # Otsu's histogram of a tiny image has empty bins
        _, mask = median_otsu(data, vol_idx=np.flatnonzero(b0s_mask), median_radius=2, numpass=1)
    return np.asarray(mask, dtype=bool)


def denoise(
    data: np.ndarray,
    *,
    method: str,
    bvals: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    coils: int = DEFAULT_COILS,
) -> np.ndarray:
    """Denoise a 4D image with DIPY: ``patch2self`` (needs ``bvals``), ``nlmeans``, ``mppca`` or ``none``.

    Parameters follow csttool's calls (Patch2Self: OLS, intensity shift, b0 threshold 50, seeded; NLMeans:
    Gaussian noise, patch radius 1, block radius 2) and DIPY's examples (NLMeans's sigma from
    ``estimate_sigma`` with ``coils`` receiver coils; MP-PCA with patch radius 2 inside the mask, the
    mask voxels at the image's edge, which no patch covers, keeping their values).
    """
    if method == "none":
        return data
    if method == "patch2self":
        from dipy.denoise.patch2self import patch2self

        if bvals is None:
            raise InputError("Patch2Self needs the b-values (.bval)")
        # DIPY's default (version 3, csttool's call) count-sketches the data with NumPy's global RNG: seeded here,
        # a subject gives the same maps on every run (the caller's RNG state is put back). DIPY's version 1
        # is not used: in DIPY 1.12 it leaves the diffusion-weighted volumes near zero on real scans.
        state = np.random.get_state()
        np.random.seed(PATCH2SELF_SEED)
        try:
            out = patch2self(
                data,
                bvals,
                model="ols",
                shift_intensity=True,
                clip_negative_vals=False,
                b0_threshold=B0_THRESHOLD,
                verbose=False,
            )
        except ValueError as exc:  # e.g. DIPY 1.12 cannot split exactly 14 volumes into its chunks
            raise InputError(
                f"DIPY's Patch2Self cannot denoise this image ({data.shape[-1]} volumes: {exc});"
                " use --denoise_method nlmeans or mppca"
            ) from None
        finally:
            np.random.set_state(state)
        return np.asarray(out, dtype=np.float32)
    if method == "nlmeans":
        from dipy.denoise.nlmeans import nlmeans
        from dipy.denoise.noise_estimate import estimate_sigma

        sigma = estimate_sigma(data, N=coils)
        return np.asarray(
            nlmeans(data, sigma=sigma, mask=mask, patch_radius=1, block_radius=2, rician=False, num_threads=1),
            dtype=np.float32,
        )
    if method == "mppca":
        from dipy.denoise.localpca import mppca

        if min(data.shape[:3]) < 5:
            raise InputError(
                f"MP-PCA needs at least 5 voxels along each axis (its 5x5x5 patches); the image is "
                f"{'x'.join(str(n) for n in data.shape[:3])}"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.asarray(mppca(data, mask=mask, patch_radius=2), dtype=np.float32)
        # Mask voxels within the patch radius of the image's edge are in no patch: DIPY leaves them NaN.
        return np.where(np.isfinite(out), out, data).astype(np.float32)
    raise InputError(f"unknown denoise method {method!r} (the built-in pipeline knows: {', '.join(DENOISE_METHODS)})")


def fit_tensor(data: np.ndarray, gtab: Any, mask: np.ndarray) -> dict[str, np.ndarray]:
    """DIPY's ``TensorModel`` fitted inside the mask: FA (0 outside, within [0, 1]), MD and the RGB map."""
    from dipy.reconst.dti import TensorModel, color_fa

    fit = TensorModel(gtab).fit(data, mask=mask)
    fa = np.clip(np.nan_to_num(fit.fa), 0.0, 1.0)
    md = np.nan_to_num(fit.md)
    rgb = color_fa(fa, fit.evecs)
    return {"fa": fa.astype(np.float32), "md": md.astype(np.float32), "rgb": np.nan_to_num(rgb).astype(np.float32)}


def snr_b0(b0: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean b0 signal in the mask over the std of the background (outside the mask grown by 2 voxels).

    None when the image has too little background (fewer than 10 voxels), as DIPY's small scans may.
    """
    from scipy import ndimage

    background = ~ndimage.binary_dilation(mask, iterations=2)
    if background.sum() < 10 or not mask.any():
        return None
    noise = float(b0[background].std())
    return float(b0[mask].mean() / noise) if noise > 0 else None


def write_fa_png(fa: np.ndarray, path: str | os.PathLike[str], mask: np.ndarray | None = None) -> Path:
    """An axial slice of the FA map as a grey-scale PNG (FA 0 black, 1 white; first voxel row at the bottom).

    The slice holding the most mask voxels (the middle one without a mask, or on a tie).
    """
    from PIL import Image

    z = fa.shape[2] // 2
    if mask is not None and mask.any():
        counts = mask.sum(axis=(0, 1))
        z = z if counts[z] == counts.max() else int(np.argmax(counts))
    picture = np.clip(fa[:, :, z].T[::-1].astype(np.float64), 0.0, 1.0) * 255.0
    out = Path(path)
    image = Image.fromarray(picture.round().astype(np.uint8))
    if max(image.size) < 256:  # small acquisitions: enlarge (nearest neighbour) so the gallery shows voxels
        factor = max(1, 256 // max(image.size))
        image = image.resize((image.size[0] * factor, image.size[1] * factor), Image.NEAREST)
    image.save(out, format="PNG")
    return out


def denoise_method_of(options: Mapping[str, Any]) -> str:
    """The denoiser the options ask for: ``denoise_method`` (default patch2self) when ``preprocessing``, else none."""
    if not options.get("preprocessing"):
        return "none"
    return str(options.get("denoise_method") or DEFAULT_DENOISE)


def load_dwi(nifti: str | os.PathLike[str]) -> tuple[Any, np.ndarray]:
    """A 4D diffusion image as float32 (InputError for anything nibabel cannot read or that is not 4D)."""
    import nibabel as nib

    try:
        image = nib.load(str(nifti))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for a bad file
        raise InputError(f"cannot read NIfTI {nifti}: {exc}") from None
    if data.ndim != 4 or data.shape[-1] < 2:
        raise InputError(f"expected a 4D diffusion image with several volumes, got shape {list(data.shape)}")
    return image, data


def run_pipeline(
    nifti: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str],
    bval: str | None = None,
    bvec: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the built-in pipeline on one image into ``work_dir``; return its scalar metrics.

    Writes `OUTPUT_FILES`: ``dti_FA.nii.gz``, ``dti_MD.nii.gz``, ``dti_RGB.nii.gz`` (uint8 RGB, as
    DIPY's example saves it), ``brain_mask.nii.gz``, ``dti_FA.png`` (the axial slice with the most
    brain) and ``metrics.json``.
    """
    import nibabel as nib

    opts = dict(options or {})
    method = denoise_method_of(opts)
    if method not in DENOISE_METHODS:
        raise InputError(f"unknown denoise method {method!r} (the built-in pipeline knows: {KNOWN_DENOISE})")
    if not bval or not bvec:
        raise InputError("the built-in pipeline fits a diffusion tensor: it needs the image's .bval and .bvec")
    image, data = load_dwi(nifti)
    gtab, bvals = read_gradients(bval, bvec, data.shape[-1])
    mask = brain_mask(data, gtab.b0s_mask)
    if not mask.any():
        raise InputError("median_otsu found no brain voxel in the b0 volumes")
    clean = denoise(data, method=method, bvals=bvals, mask=mask, coils=int(opts.get("coil_count") or DEFAULT_COILS))
    maps = fit_tensor(clean, gtab, mask)
    b0 = clean[..., gtab.b0s_mask].mean(axis=-1)
    raw_b0 = data[..., gtab.b0s_mask].mean(axis=-1)  # the acquisition's SNR, before any denoising
    shells = find_shells(bvals)
    metrics: dict[str, Any] = {
        "fa_mean": float(maps["fa"][mask].mean()),
        "md_mean": float(maps["md"][mask].mean()),
        "snr_b0": snr_b0(raw_b0, mask),
        "n_volumes": int(data.shape[-1]),
        "n_b0": int(gtab.b0s_mask.sum()),
        "n_shells": sum(1 for s in shells if s["bval"] > 0),
        "mask_fraction": round(float(mask.mean()), 6),
        "b0_mean": float(b0[mask].mean()),
    }
    if method != "none":
        metrics["denoise_residual_std"] = float(np.std(data - clean))
    out = Path(work_dir)
    out.mkdir(parents=True, exist_ok=True)
    affine = image.affine
    nib.save(nib.Nifti1Image(maps["fa"], affine), str(out / "dti_FA.nii.gz"))
    nib.save(nib.Nifti1Image(maps["md"], affine), str(out / "dti_MD.nii.gz"))
    nib.save(nib.Nifti1Image(np.array(255 * maps["rgb"], dtype=np.uint8), affine), str(out / "dti_RGB.nii.gz"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(out / "brain_mask.nii.gz"))
    write_fa_png(maps["fa"], out / "dti_FA.png", mask)
    document = {
        "pipeline_version": pipeline_version(),
        "input": str(nifti),
        "shape": list(data.shape),
        "voxel_size_mm": [float(v) for v in image.header.get_zooms()[:3]],
        "preprocessing": bool(opts.get("preprocessing")),
        "denoise_method": method,
        "metrics": metrics,
        "units": {k: v for k, v in METRIC_UNITS.items() if k in metrics},
        "shells": shells,
    }
    (out / "metrics.json").write_text(json.dumps(document, indent=2))
    return metrics
