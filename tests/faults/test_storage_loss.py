"""S3 holding a pipeline's resume records lost mid-run: stop scheduling, keep what finished, one line, exit 1.

moto sits behind a TCP proxy (``tests.fixtures_s3.TcpProxy``) that the test cuts while an item is
running; the test itself still reaches moto directly to check what was kept.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from salvo.outcome import ItemResult, Status
from salvo.procs import free_port
from salvo.storage import StorageLost, open_storage
from salvo.spine.records import StopOnStorageLoss
from tasks.state import stop_on_storage_loss
from tests.extract.scripts import command, write_script
from tests.helpers import child_env_for, markers, wait_until

ROOT = Path(__file__).resolve().parents[2]
#: The product aims at 30 s from the cut to the exit; the test allows more on a loaded machine.
EXIT_WITHIN_S = 120


def test_extract_with_s3_state_stops_at_the_first_storage_error(s3_url, s3_endpoint, s3_proxy, prefect_api, tmp_path):
    data, calls = tmp_path / "data", tmp_path / "calls"
    data.mkdir()
    for i in range(8):
        (data / f"slow_{i}.nc").write_text(str(i))
    env = {**child_env_for(prefect_api), "AWS_ENDPOINT_URL": s3_proxy.url, "SLOW_SECONDS": "1.5"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "extract",
            "--directory",
            str(data),
            "--state",
            s3_url,
            "--retries",
            "0",
            "--worker-command",
            command(write_script(tmp_path), str(calls)),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Two items finished and recorded, the third running, when S3 goes away.
        assert wait_until(lambda: len(markers(calls)) >= 3, timeout=180), proc.stderr
    except BaseException:
        proc.kill()
        raise
    s3_proxy.cut()
    cut_at = time.monotonic()
    out, err = proc.communicate(timeout=300)
    elapsed = time.monotonic() - cut_at
    print(f"exit {elapsed:.1f} s after the cut; stderr {len(err.splitlines())} lines")
    print(err[-3000:])
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("salvo: error:")]
    assert len(errors) == 1, err[-3000:]
    assert s3_url in errors[0] and "testing" not in errors[0]  # names the storage, never a secret
    assert "connect" in errors[0].lower()  # and the cause
    assert elapsed < EXIT_WITHIN_S
    started = sorted(m.name.split(".")[0] for m in markers(calls))
    assert len(started) <= 4, started  # nothing scheduled after the first storage error
    # What finished before the loss is kept: its outputs, and its records on S3.
    done = sorted(p.name.removesuffix("_results") for p in data.glob("*_results"))
    assert len(done) >= 2, done
    records = open_storage(s3_url, endpoint_url=s3_endpoint).child("records")
    assert len([n for n in records.list("") if n not in ("index", "claims")]) >= 2


@pytest.mark.pure
@pytest.mark.slow  # seconds on an idle machine: make test runs it, make test-fast does not
def test_the_storage_check_runs_only_after_a_failure_and_names_storage_and_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECRETLOOKING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert stop_on_storage_loss(str(tmp_path)) is None  # a local folder: nothing to watch
    assert isinstance(stop_on_storage_loss("s3://some-bucket/study"), StopOnStorageLoss)
    gone = StopOnStorageLoss(
        open_storage("s3://some-bucket/study", endpoint_url=f"http://127.0.0.1:{free_port()}").child("records")
    )
    gone(ItemResult("a", Status.SUCCESS))  # a finished item: no request at all
    with pytest.raises(StorageLost) as lost:
        gone(ItemResult("b", Status.EXCEPTION, reason="StorageError: ..."))
    message = str(lost.value)
    assert "s3://some-bucket/study/records does not answer" in message and "connect" in message.lower()
    assert "\n" not in message and "?" not in message  # one line, no request noise
    assert "AKIDSECRETLOOKING" not in message and "very-secret-value" not in message
