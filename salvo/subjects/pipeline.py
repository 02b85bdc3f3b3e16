"""The built-in pipeline: read a DWI image, per-volume statistics, b-value shells, a slice picture."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from salvo.errors import InputError

PIPELINE_VERSION = "builtin-1"
#: Units of the metrics the built-in pipeline writes (shown on the report's plot axes).
METRIC_UNITS = {
    "n_volumes": "volumes", "n_b0": "volumes", "n_shells": "shells", "mask_fraction": "fraction of voxels",
    "b0_mean": "a.u.", "dwi_mean": "a.u.", "snr_b0": "ratio", "mean_diffusivity": "mm²/s",
    "denoise_residual_std": "a.u.",
}
DENOISE_METHODS = ("none", "gaussian", "median", "patch2self")
#: b-values below this count as b0; b-values closer than SHELL_TOLERANCE share a shell.
B0_THRESHOLD = 50.0
SHELL_TOLERANCE = 100.0


def read_bvals(path: str | os.PathLike[str]) -> np.ndarray:
    """The b-values of an FSL ``.bval`` file (one row of numbers)."""
    try:
        values = np.array(Path(path).read_text().split(), dtype=float)
    except ValueError as exc:
        raise InputError(f"bad .bval file {path}: {exc}") from None
    return values


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


def _patch2self(data: np.ndarray) -> np.ndarray:
    """Self-supervised denoising (Patch2Self with a zero patch radius): each volume is regressed on the others."""
    n_vol = data.shape[-1]
    if n_vol < 3:
        return data.copy()
    x = data.reshape(-1, n_vol).astype(np.float64)
    out = np.empty_like(x)
    for j in range(n_vol):
        others = np.delete(x, j, axis=1)
        design = np.hstack([others, np.ones((x.shape[0], 1))])
        coef, *_ = np.linalg.lstsq(design, x[:, j], rcond=None)
        out[:, j] = design @ coef
    return out.reshape(data.shape)


def denoise(data: np.ndarray, *, method: str) -> np.ndarray:
    """Denoise a 4D image volume by volume ('gaussian', 'median') or across volumes ('patch2self')."""
    from scipy import ndimage

    if method == "none":
        return data
    if method == "gaussian":
        return np.stack([ndimage.gaussian_filter(data[..., i], 0.7) for i in range(data.shape[-1])], axis=-1)
    if method == "median":
        return np.stack([ndimage.median_filter(data[..., i], size=3) for i in range(data.shape[-1])], axis=-1)
    if method == "patch2self":
        return _patch2self(data)
    raise InputError(f"unknown denoise method {method!r} (built-in pipeline knows: {', '.join(DENOISE_METHODS)})")


def compute_metrics(data: np.ndarray, bvals: np.ndarray | None) -> dict[str, Any]:
    """Per-volume statistics, shells, and study-level scalars (SNR, mean diffusivity) in a brain mask."""
    n_vol = data.shape[-1]
    if bvals is not None and len(bvals) != n_vol:
        raise InputError(f".bval has {len(bvals)} values but the image has {n_vol} volumes")
    is_b0 = bvals < B0_THRESHOLD if bvals is not None else np.ones(n_vol, dtype=bool)
    ref = data[..., is_b0].mean(axis=-1) if is_b0.any() else data.mean(axis=-1)
    mask = ref > 0.5 * np.percentile(ref, 99)
    volumes = []
    for i in range(n_vol):
        vol = data[..., i][mask]
        volumes.append(
            {
                "index": i,
                "bval": float(bvals[i]) if bvals is not None else None,
                "mean": float(vol.mean()),
                "std": float(vol.std()),
                "min": float(vol.min()),
                "max": float(vol.max()),
            }
        )
    background = ref[~mask]
    noise = float(background.std()) if background.size > 1 else 0.0
    metrics: dict[str, Any] = {
        "n_volumes": n_vol,
        "mask_fraction": round(float(mask.mean()), 6),
        "b0_mean": float(ref[mask].mean()),
        "snr_b0": float(ref[mask].mean() / noise) if noise > 0 else None,
    }
    if bvals is not None:
        shells = find_shells(bvals)
        dw = ~is_b0
        metrics["n_b0"] = int(is_b0.sum())
        metrics["n_shells"] = sum(1 for s in shells if s["bval"] > 0)
        metrics["dwi_mean"] = float(data[..., dw][mask].mean()) if dw.any() else None
        if dw.any() and is_b0.any():
            s0 = np.clip(ref[mask], 1e-6, None)[:, None]
            ratio = np.clip(data[..., dw][mask] / s0, 1e-6, None)
            metrics["mean_diffusivity"] = float(np.mean(-np.log(ratio) / bvals[dw][None, :]))
        else:
            metrics["mean_diffusivity"] = None
    else:
        shells = []
    return {"metrics": metrics, "shells": shells, "volumes": volumes, "mask": mask, "reference": ref}


def write_slice_png(reference: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save the middle axial slice of a 3D image as a grey-scale PNG (first voxel row at the bottom)."""
    from PIL import Image

    picture = reference[:, :, reference.shape[2] // 2].T[::-1].astype(np.float64)
    lo, hi = float(picture.min()), float(picture.max())
    scaled = np.zeros_like(picture) if hi <= lo else (picture - lo) / (hi - lo) * 255.0
    out = Path(path)
    Image.fromarray(scaled.round().astype(np.uint8)).save(out, format="PNG")
    return out


def run_pipeline(
    nifti: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str],
    bval: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the built-in pipeline on one image into ``work_dir``; return its scalar metrics."""
    import nibabel as nib

    opts = dict(options or {})
    method = str(opts.get("denoise_method") or "patch2self") if opts.get("preprocessing") else "none"
    if method not in DENOISE_METHODS:
        raise InputError(f"unknown denoise method {method!r} (built-in pipeline knows: {', '.join(DENOISE_METHODS)})")
    try:
        image = nib.load(str(nifti))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for a bad file
        raise InputError(f"cannot read NIfTI {nifti}: {exc}") from None
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise InputError(f"expected a 3D or 4D image, got {data.ndim} dimensions")
    bvals = read_bvals(bval) if bval else None
    clean = denoise(data, method=method)
    result = compute_metrics(clean, bvals)
    metrics = result["metrics"]
    if method != "none":
        metrics["denoise_residual_std"] = float(np.std(data - clean))
    out = Path(work_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_slice_png(result["reference"], out / "middle_slice.png")
    document = {
        "pipeline_version": PIPELINE_VERSION,
        "input": str(nifti),
        "shape": list(data.shape),
        "voxel_size_mm": [float(v) for v in image.header.get_zooms()[:3]],
        "preprocessing": bool(opts.get("preprocessing")),
        "denoise_method": method,
        "metrics": metrics,
        "units": {k: v for k, v in METRIC_UNITS.items() if k in metrics},
        "shells": result["shells"],
        "volumes": result["volumes"],
    }
    (out / "metrics.json").write_text(json.dumps(document, indent=2))
    return metrics
