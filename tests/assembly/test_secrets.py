"""Issue 15: a secret in a storage URL is refused in one line that never echoes it, before any
flow starts, so it reaches neither the terminal, the files written, nor Prefect's database."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import salvo

KEY, SECRET = "AKIASECRETTEST0001", "s3cr3t-VALUE-never-echo-0123456789"
URL = f"s3://{KEY}:{SECRET}@lab-bucket/salvo"


def _files_text(root: Path) -> str:
    text = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                text.append(Path(dirpath, f).read_bytes().decode("utf-8", "replace"))
            except OSError:
                continue
    return "\n".join(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["assembly", "run", "tests.assembly.helpers:tiny_generator", "--storage", URL, "--samples", "2"],
        ["assembly", "reassemble", "tiny_generator_results", "--storage", URL],
        ["assembly", "list", "--storage", URL],
        ["blocks", "create", "s3", "leaky", URL],
    ],
    ids=["run", "reassemble", "list", "blocks-create"],
)
def test_secret_in_a_storage_url_is_refused_and_never_echoed(argv, tmp_path, child_env):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter

    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    work = tmp_path / "work"
    work.mkdir()
    proc = salvo(*argv, env=child_env, cwd=work)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "embeds credentials" in err and "Traceback" not in err
    assert "s3://***@lab-bucket/salvo" in err  # the URL is named, redacted
    seen = proc.stdout + proc.stderr + _files_text(work)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(start_time={"after_": since}), limit=200)
        logs = client.read_logs(log_filter=LogFilter(timestamp={"after_": since}), limit=200)
    seen += " ".join(
        [*(str(r.parameters) + str(r.state and r.state.message) for r in runs), *(log.message for log in logs)]
    )
    assert SECRET not in seen and KEY not in seen


def test_secret_in_salvo_storage_env_is_refused_too(tmp_path, child_env):
    proc = salvo("assembly", "list", env={**child_env, "SALVO_STORAGE": URL}, cwd=tmp_path)
    assert proc.returncode == 2 and "$SALVO_STORAGE" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and KEY not in proc.stdout + proc.stderr
