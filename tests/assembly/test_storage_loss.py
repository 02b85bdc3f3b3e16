"""S3 lost in the middle of an assembly: stop at once, keep what finished, one line, exit 1.

moto sits behind a TCP proxy (``tests.fixtures_s3.TcpProxy``) that the test cuts while a chunk is
running; the test itself still reaches moto directly to check what was kept.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from blocks import save_storage_block
from salvo.assembly.ledger import read_ledger
from salvo.storage import open_storage
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
GEN = "tests.assembly.helpers:gated_from_generator"
FOLDER = "01_v1_batch-gated-from-generator"
#: The product aims at ~30 s from the cut to the exit; the test allows more on a loaded machine.
EXIT_WITHIN_S = 120


def test_storage_lost_mid_run_stops_scheduling_keeps_finished_chunks_and_says_one_line(
    s3_url, s3_endpoint, s3_proxy, tmp_path, child_env
):
    name = f"lossy-{uuid.uuid4().hex[:6]}"
    save_storage_block(name, s3_url, endpoint_url=s3_proxy.url)
    calls, gate = tmp_path / "calls.txt", tmp_path / "gate"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"calls: {calls}\ngate: {gate}\ngate_from: 2\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "assembly",
            "run",
            GEN,
            "--storage",
            name,
            "--config",
            str(cfg),
            "--samples",
            "6",
            "--chunk-size",
            "1",
            "--retries",
            "0",
        ],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    exp = open_storage(s3_url, endpoint_url=s3_endpoint).child(FOLDER)  # moto itself, not the proxy
    try:
        # Chunks 0 and 1 are written; chunk 2 is running (waiting at the gate) when S3 goes away.
        assert wait_until(lambda: calls.exists() and "2" in calls.read_text().split(), timeout=180)
        assert len(exp.list("chunks/" + exp.list("chunks")[0])) == 2
    except BaseException:
        proc.kill()
        raise
    s3_proxy.cut()
    cut_at = time.monotonic()
    gate.touch()
    out, err = proc.communicate(timeout=300)
    elapsed = time.monotonic() - cut_at
    print(f"exit {elapsed:.1f} s after the cut")
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("salvo: error:")]
    assert len(errors) == 1, err[-3000:]
    assert s3_url in errors[0]  # names the storage...
    assert "connect" in errors[0].lower()  # ...and the cause
    assert elapsed < EXIT_WITHIN_S
    # No chunk was started after the loss; the finished ones are kept.
    assert sorted(calls.read_text().split()) == ["0", "1", "2"]
    [aid] = exp.list("chunks")
    assert exp.list(f"chunks/{aid}") == ["chunk_00000.parquet", "chunk_00001.parquet"]
    [row] = read_ledger(exp)
    assert (row.assembly_id, row.status) == (aid, "started")  # resumable; never 'completed'
    assert not [n for n in exp.list("") if n.endswith(".parquet")]
