"""``--pipeline csttool``: the installed csttool's own steps, run per subject as csttool's command line.

Each step is csttool's subcommand (``csttool preprocess``, ``track``, ``extract``, ``metrics``), run
as a child process of the subject's own process, into the subject's work folder with the layout
``csttool run`` uses (``preprocessing/``, ``tracking/``, ``extraction/``, ``metrics/``). csttool's
command line exits 0 even when a step failed (it prints ``✗`` and returns), so each step's files are
checked after it ends (`STEP_OUTPUTS`): a step that wrote nothing is a failure, whatever its exit code.
"""

from __future__ import annotations

import collections
import functools
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from salvo.errors import InputError, UsageError

PIPELINE_NAME = "csttool"
STEPS = ("preprocess", "track", "extract", "metrics")
#: Steps that need csttool's FSL atlas data (``csttool fetch-data``), which csttool downloads from the internet.
ATLAS_STEPS = ("extract", "metrics")
#: What each step must leave in the work folder (``{id}`` is the subject id, ``{mc}`` ``mc`` with
#: ``perform_motion_correction``, else ``nomc``, as csttool names them): the pipeline's output contract.
STEP_OUTPUTS: dict[str, tuple[str, ...]] = {
    "preprocess": ("preprocessing/{id}_dwi_preproc_{mc}.nii.gz",),
    "track": (
        "tracking/tractograms/{id}_whole_brain.trk",
        "tracking/scalar_maps/{id}_fa.nii.gz",
        "tracking/scalar_maps/{id}_md.nii.gz",
    ),
    "extract": ("extraction/trk/{id}_cst_left.trk", "extraction/trk/{id}_cst_right.trk"),
    "metrics": ("metrics/{id}_bilateral_metrics.json",),
}
#: csttool's denoisers (its ``--denoise-method`` choices).
DENOISE_METHODS = ("patch2self", "nlmeans")
#: The seed's option keys each csttool step accepts; a key becomes its flag with dashes (``fa_thr`` -> ``--fa-thr``).
STEP_OPTIONS: dict[str, tuple[str, ...]] = {
    "preprocess": (
        "coil_count",
        "denoise_method",
        "save_visualizations",
        "perform_motion_correction",
        "unring",
        "target_voxel_size",
        "verbose",
    ),
    "track": ("fa_thr", "seed_density", "step_size", "sh_order", "rng_seed", "use_brain_mask_stop", "verbose"),
    "extract": (
        "dilate_brainstem",
        "dilate_motor",
        "min_length",
        "max_length",
        "extraction_method",
        "fast_registration",
        "save_visualizations",
        "skip_coordinate_validation",
        "verbose",
    ),
    "metrics": ("space", "generate_pdf", "verbose"),
}
#: Options the batch itself reads: ``preprocessing`` (csttool run's ``--preprocess``: off means the input goes to
#: tracking as it is) and ``steps`` (which of `STEPS` to run, a prefix of them).
OWN_OPTIONS = ("preprocessing", "steps")
FETCH_HINT = "csttool fetch-data --accept-fsl-license"


def known_options() -> list[str]:
    """Every option key the csttool pipeline accepts."""
    return sorted({k for keys in STEP_OPTIONS.values() for k in keys} | set(OWN_OPTIONS))


def parse_steps(value: Any) -> tuple[str, ...]:
    """``"preprocess,track"`` or a list -> the steps, which must be a prefix of `STEPS` (each feeds the next)."""
    if value is None or value == "":
        return STEPS
    names = [s.strip() for s in (value.split(",") if isinstance(value, str) else value)]
    names = [str(s) for s in names if s]
    unknown = [s for s in names if s not in STEPS]
    if unknown:
        raise UsageError(f"unknown csttool step {unknown[0]!r} in --steps (steps: {','.join(STEPS)})")
    if not names or tuple(names) != STEPS[: len(names)]:
        choices = " | ".join(",".join(STEPS[:n]) for n in range(1, len(STEPS) + 1))
        raise UsageError(f"--steps {','.join(names)}: each csttool step feeds the next; give one of {choices}")
    return tuple(names)


@functools.lru_cache(maxsize=1)
def csttool_version() -> str | None:
    """The installed csttool's version, or None when it is not installed."""
    try:
        return metadata.version("csttool")
    except metadata.PackageNotFoundError:
        return None


def csttool_executable() -> str | None:
    """The ``csttool`` command of this Python's environment (beside ``sys.executable``), else on the PATH."""
    beside = Path(sys.executable).parent / "csttool"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("csttool")


def atlas_installed() -> bool:
    """Whether ``csttool fetch-data`` has been done (csttool's own check, run by the installed csttool)."""
    code = "import sys; from csttool.data.loader import is_data_installed; sys.exit(0 if is_data_installed() else 3)"
    try:
        proc = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def check_options(options: Mapping[str, Any], *, subject: str | None = None) -> tuple[str, ...]:
    """Refuse option keys and values csttool does not take; return the steps the options ask for."""
    where = f" (subject {subject})" if subject else ""
    allowed = set(known_options())
    unknown = sorted(k for k in options if k not in allowed)
    if unknown:
        raise UsageError(f"option {unknown[0]!r}{where} is not one csttool takes (known: {', '.join(known_options())})")
    method = options.get("denoise_method")
    if method is not None and method not in DENOISE_METHODS:
        raise UsageError(f"--denoise_method {method!r}{where}: csttool knows {', '.join(DENOISE_METHODS)}")
    return parse_steps(options.get("steps"))


def check_ready(option_sets: Sequence[Mapping[str, Any]]) -> None:
    """Up front: csttool installed, and its atlas fetched when any subject runs ``extract`` or ``metrics``."""
    if csttool_version() is None or csttool_executable() is None:
        raise UsageError(
            "--pipeline csttool: csttool is not installed in this environment;"
            " install it with: pip install 'salvo[csttool]'"
        )
    steps = {step for options in option_sets for step in check_options(options)}
    needing = [s for s in ATLAS_STEPS if s in steps]
    if needing and not atlas_installed():
        raise UsageError(
            f"--pipeline csttool: steps {', '.join(needing)} need csttool's FSL atlas data, which is not installed;"
            f" run `{FETCH_HINT}` once, or give --steps preprocess,track"
        )


def expected_outputs(
    steps: Sequence[str], subject_id: str, *, preprocessing: bool, motion_correction: bool = False
) -> list[str]:
    """The output contract of one subject: the files its steps must have written (relative to its folder)."""
    names: list[str] = []
    for step in steps:
        if step == "preprocess" and not preprocessing:
            continue  # pass-through, as `csttool run` without --preprocess
        names += [_name(g, subject_id, motion_correction) for g in STEP_OUTPUTS[step]]
    return names


def _name(pattern: str, subject_id: str, motion_correction: bool) -> str:
    return pattern.format(id=subject_id, mc="mc" if motion_correction else "nomc")


def _flags(step: str, options: Mapping[str, Any]) -> list[str]:
    flags: list[str] = []
    for key in STEP_OPTIONS[step]:
        value = options.get(key)
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags += [flag, *(str(v) for v in value)]  # nargs options (--target-voxel-size X Y Z)
        else:
            flags += [flag, str(value)]
    return flags


def _stage_input(subject: Mapping[str, Any], folder: Path) -> Path:
    """csttool reads ``<stem>.nii.gz`` with ``<stem>.bval``/``.bvec`` beside it: link the subject's files so."""
    sid = str(subject["id"])
    nifti = Path(subject["nifti"]).resolve()
    staged = folder / f"{sid}.nii.gz"
    if nifti.name.endswith(".gz"):
        staged.symlink_to(nifti)
    else:  # csttool only opens .nii.gz
        with open(nifti, "rb") as src, gzip.open(staged, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
    for kind in ("bval", "bvec"):
        (folder / f"{sid}.{kind}").symlink_to(Path(subject[kind]).resolve())
    return staged


def _check_input(subject: Mapping[str, Any]) -> None:
    """A subject csttool cannot read fails here as bad input, in one line, not after csttool's traceback."""
    import nibabel as nib

    sid = subject["id"]
    if not subject.get("nifti"):
        raise InputError(
            f"subject {sid} has only a DICOM folder: the csttool pipeline reads NIfTI"
            " (convert with `csttool import` first)"
        )
    if not subject.get("bval") or not subject.get("bvec"):
        raise InputError(f"subject {sid} has no .bval/.bvec: csttool needs both")
    try:
        shape = nib.load(str(subject["nifti"])).shape
    except Exception as exc:  # nibabel raises many types for a bad file
        raise InputError(f"cannot read NIfTI {subject['nifti']}: {exc}") from None
    if len(shape) != 4:
        raise InputError(f"expected a 4D diffusion image, got shape {list(shape)}")


class StepFailed(RuntimeError):
    """A csttool step exited non-zero, or exited 0 without writing its outputs."""


def _run_step(argv: list[str], *, cwd: Path) -> tuple[int, str]:
    """Run one csttool command, its output (stdout and stderr) copied to this process's stderr (the log)."""
    print("running: " + " ".join(argv), file=sys.stderr, flush=True)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
    )
    tail: collections.deque[str] = collections.deque(maxlen=5)
    failures: collections.deque[str] = collections.deque(maxlen=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        if line.strip():
            tail.append(line.strip())
            if "✗" in line or "Error" in line:
                failures.append(line.strip())
    code = proc.wait()
    sys.stderr.flush()
    return code, (failures[-1] if failures else (tail[-1] if tail else ""))


def _missing(work: Path, names: Sequence[str]) -> list[str]:
    return [n for n in names if not (work / n).is_file() or (work / n).stat().st_size == 0]


def run_csttool(subject: Mapping[str, Any], *, work: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    """Run the asked csttool steps for one subject into ``work``; return metrics from csttool's own reports."""
    sid = str(subject["id"])
    steps = check_options(options, subject=sid)
    exe = csttool_executable()
    if exe is None:
        raise InputError("csttool is not installed in this environment: pip install 'salvo[csttool]'")
    _check_input(subject)
    preprocessing = bool(options.get("preprocessing"))
    mc = bool(options.get("perform_motion_correction"))
    staging = Path(tempfile.mkdtemp(prefix=".salvo-csttool-"))
    try:
        data = _stage_input(subject, staging)
        for step in steps:
            if step == "preprocess":
                if not preprocessing:
                    print("preprocess: skipped (pass-through, preprocessing is off)", file=sys.stderr, flush=True)
                    continue
                argv = [exe, "preprocess", "--nifti", str(data), "--out", str(work / "preprocessing")]
            elif step == "track":
                argv = [exe, "track", "--nifti", str(data), "--subject-id", sid, "--out", str(work / "tracking")]
            elif step == "extract":
                argv = [
                    exe,
                    "extract",
                    "--tractogram",
                    str(work / f"tracking/tractograms/{sid}_whole_brain.trk"),
                    "--fa",
                    str(work / f"tracking/scalar_maps/{sid}_fa.nii.gz"),
                    "--subject-id",
                    sid,
                    "--out",
                    str(work / "extraction"),
                ]
            else:
                argv = [
                    exe,
                    "metrics",
                    "--cst-left",
                    str(work / f"extraction/trk/{sid}_cst_left.trk"),
                    "--cst-right",
                    str(work / f"extraction/trk/{sid}_cst_right.trk"),
                    "--fa",
                    str(work / f"tracking/scalar_maps/{sid}_fa.nii.gz"),
                    "--md",
                    str(work / f"tracking/scalar_maps/{sid}_md.nii.gz"),
                    "--subject-id",
                    sid,
                    "--out",
                    str(work / "metrics"),
                ]
            code, last = _run_step(argv + _flags(step, options), cwd=work)
            if code < 0:
                raise StepFailed(f"csttool {step} killed by signal {-code}")
            if code != 0:
                raise StepFailed(f"csttool {step} exited with code {code}" + (f": {last}" if last else ""))
            expected = [_name(g, sid, mc) for g in STEP_OUTPUTS[step]]
            missing = _missing(work, expected)
            if missing:
                raise StepFailed(
                    f"csttool {step} exited 0 but did not write {', '.join(missing)}" + (f" ({last})" if last else "")
                )
            if step == "preprocess":
                data = work / expected[0]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _metrics(work, sid)


def _metrics(work: Path, sid: str) -> dict[str, Any]:
    """FA/MD statistics and the streamline count from csttool's tracking report (and its metrics, if run)."""
    out: dict[str, Any] = {}
    try:
        report = json.loads((work / "tracking" / "logs" / f"{sid}_tracking_report.json").read_text())
    except (OSError, ValueError):
        report = {}
    stats = report.get("scalar_stats") or {}
    for key in ("fa_mean", "md_mean"):
        if isinstance(stats.get(key), (int, float)):
            out[key] = float(stats[key])
    count = (report.get("streamline_stats") or {}).get("count")
    if isinstance(count, int):
        out["n_streamlines"] = count
    units = {"fa_mean": "ratio", "md_mean": "mm²/s", "n_streamlines": "streamlines"}
    (work / "metrics.json").write_text(
        json.dumps(
            {
                "pipeline": PIPELINE_NAME,
                "csttool_version": csttool_version(),
                "metrics": out,
                "units": {k: v for k, v in units.items() if k in out},
            },
            indent=2,
        )
    )
    return out
