"""`salvo subjects`: exit codes, console lines, two batches at once, and an orchestrator killed mid-run."""

import json
import os
import signal
import subprocess
import sys

import psutil

from cli.main import main
from flows.subject_batch import subject_batch
from salvo.subjects.samples import make_manifest_study
from salvo.subjects.unit import DONE_FILE, LOCKED_REASON, WORK_DIR, read_done
from tests.helpers import alive, wait_until
from tests.subjects.support import fake_command, runs, write_plan


def test_bad_manifest_exits_2_with_every_problem_on_one_line(tmp_path, capsys):
    bad = tmp_path / "m.json"
    bad.write_text(
        json.dumps({"subjects": [{"id": "/abs", "nifti": "missing.nii.gz"}, {"id": "sub-2", "dicom": "nope", "x": 1}]})
    )
    assert main(["subjects", "--manifest", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for fragment in (
        "'/abs' is not a safe folder name",
        "nifti file not found",
        "dicom folder not found",
        "unknown key 'x'",
    ):
        assert fragment in err
    assert not (tmp_path / "out").exists()


def test_other_bad_inputs_exit_2(tmp_path, capsys):
    manifest = make_manifest_study(tmp_path / "study", subjects=1, shape=(4, 4, 3))
    out = str(tmp_path / "out")
    cases = [
        (["--manifest", str(manifest), "--pipeline-command", "true {subject}"], "unknown placeholder {subject}"),
        (["--manifest", str(manifest), "--denoise-method", "magic"], "unknown --denoise-method 'magic'"),
        (["--bids-dir", str(tmp_path / "study")], "no DWI images"),
        (["--manifest", str(manifest), "--include", "sub-*"], "--include/--exclude apply to --bids-dir only"),
        (["--manifest", str(tmp_path / "none.json")], "manifest not found"),
    ]
    for args, message in cases:
        assert main(["subjects", *args, "--out", out]) == 2, args
        assert message in capsys.readouterr().err


def test_console_lines_and_exit_1_when_a_subject_fails(tmp_path, plan_dir, capsys):
    manifest = make_manifest_study(
        tmp_path / "study", subjects=2, global_options={"preprocessing": True}, shape=(4, 4, 3)
    )
    plan = write_plan(plan_dir, {"sub-002": "fail"})
    out = tmp_path / "out"
    code = main(
        [
            "subjects",
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--denoise-method",
            "patch2self",
            "--pipeline-command",
            fake_command(plan),
            "--timeout",
            "1",
            "--retries",
            "0",
        ]
    )
    assert code == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["Starting batch processing for 2 subjects", f"Output directory: {out}", lines[2]]
    assert lines[2].startswith("Config hash: ") and len(lines[2].split()[-1]) == 8
    assert any(line.startswith("1. sub-001: Success in ") for line in lines)
    # The command's own exit code (3) is the subject's, with the command's last stderr line.
    assert "2. sub-002: Failed (ERROR) - exit code 3: sub-002: tract seeding failed" in lines
    tail = lines[lines.index("BATCH PROCESSING COMPLETE") :]
    assert tail[2:6] == ["Total:      2", "Success:    1", "Failed:     1 (sub-002)", "Skipped:    0"]
    assert tail[-2:] == [f"Main metrics: {out}/batch_metrics.csv", f"Batch Report: {out}/batch_report.html"]
    # Global options from the manifest and the command line both reach the command as flags.
    # Options are spelled as the seed's tool expects them: --denoise_method, underscores kept.
    assert (out / "sub-001" / "result.txt").read_text() == "sub-001 --denoise_method patch2self --preprocessing\n"

    assert (
        main(
            [
                "subjects",
                "--manifest",
                str(manifest),
                "--out",
                str(out),
                "--denoise-method",
                "patch2self",
                "--pipeline-command",
                fake_command(write_plan(plan_dir, {})),
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert {i["item_id"]: i["status"] for i in doc["items"]} == {"sub-001": "skipped", "sub-002": "success"}
    assert runs(plan, "sub-001") == 1 and runs(plan, "sub-002") == 2


def _start(args, env):
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "subjects", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_batches_at_once_process_each_subject_exactly_once(tmp_path, plan_dir, child_env):
    manifest = make_manifest_study(tmp_path / "study", subjects=4, shape=(4, 4, 3))
    release = tmp_path / "release"
    # Whichever batch takes sub-001 first holds it until the other batch has finished.
    plan = write_plan(plan_dir, {"sub-001": f"wait:{release}"})
    args = [
        "--manifest",
        str(manifest),
        "--out",
        str(tmp_path / "out"),
        "--pipeline-command",
        fake_command(plan),
        "--json",
    ]
    batches = [_start(args, child_env), _start(args, child_env)]
    try:
        assert wait_until(lambda: any(b.poll() is not None for b in batches), timeout=120)
        release.touch()
        outputs = [b.communicate(timeout=120) for b in batches]
    finally:
        release.touch()
        for b in batches:
            if b.poll() is None:
                b.kill()
    assert [b.returncode for b in batches] == [0, 0], [o[1][-2000:] for o in outputs]
    docs = [{i["item_id"]: i for i in json.loads(o[0])["items"]} for o in outputs]
    for sid in ("sub-001", "sub-002", "sub-003", "sub-004"):
        assert runs(plan, sid) == 1, sid
        statuses = sorted(d[sid]["status"] for d in docs)
        assert statuses == ["skipped", "success"], (sid, statuses)
    skipper = next(d for d in docs if d["sub-001"]["status"] == "skipped")
    assert skipper["sub-001"]["reason"] == LOCKED_REASON
    assert all(read_done(tmp_path / "out" / f"sub-00{i}")["status"] == "success" for i in range(1, 5))


def test_orchestrator_killed_then_rerun(tmp_path, plan_dir, child_env):
    manifest = make_manifest_study(tmp_path / "study", subjects=4, shape=(4, 4, 3))
    release = tmp_path / "release"
    plan = write_plan(plan_dir, {"sub-003": f"wait:{release}"})
    out = tmp_path / "out"
    command = fake_command(plan)
    orchestrator = _start(["--manifest", str(manifest), "--out", str(out), "--pipeline-command", command], child_env)
    try:
        assert wait_until(lambda: runs(plan, "sub-003") == 1, timeout=120)
        helpers = psutil.Process(orchestrator.pid).children(recursive=True)
        pipeline_pid = int((plan.parent / "markers" / "sub-003.runs").read_text().split()[0])
        assert pipeline_pid in [p.pid for p in helpers]
        os.kill(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait(timeout=30)
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
        orchestrator.communicate()
    # Nothing the killed batch started survives it: not the zygote, the subject's child, or its command.
    assert wait_until(lambda: not any(alive(p.pid) for p in helpers), timeout=15)
    # The killed attempt is left unpublished: its work folder as it was, or already set aside by the
    # subject's own SIGTERM clean-up (the zygote's kill of an orphaned item starts with SIGTERM).
    set_aside = [p for p in (out / "sub-003").iterdir() if p.name.startswith("_failed-")]
    assert ((out / "sub-003" / WORK_DIR).is_dir() or len(set_aside) == 1) and read_done(out / "sub-003") is None
    assert read_done(out / "sub-002")["status"] == "success" and not (out / "sub-004").exists()

    release.touch()
    doc = subject_batch(out=str(out), manifest=str(manifest), pipeline_command=command)
    statuses = {i["item_id"]: i["status"] for i in doc["items"]}
    assert statuses == {"sub-001": "skipped", "sub-002": "skipped", "sub-003": "success", "sub-004": "success"}
    assert [runs(plan, f"sub-00{i}") for i in range(1, 5)] == [1, 1, 2, 1]
    for i in range(1, 5):
        folder = out / f"sub-00{i}"
        files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("_failed-"))
        assert files == [DONE_FILE, "logs", "metrics.json", "result.txt", "started.txt"], (folder, files)
        assert read_done(folder)["status"] == "success"
    kept = [p for p in (out / "sub-003").iterdir() if p.name.startswith("_failed-")]
    assert len(kept) == 1 and not (kept[0] / "result.txt").exists()  # the interrupted attempt, set aside
    assert not list(out.glob(".salvo-tmp-*"))
