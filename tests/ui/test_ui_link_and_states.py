"""What the UI shows is true, checked in a real headless Chromium against a real local server whose
usual port (4200) is held by another process:

- the printed UI link opens *this* server: its ``/ui-settings`` send the UI's API calls to the port
  the server really uses, and the page of the run shows the run;
- no green task run holds a failure: an 11-file batch with one worker is grouped, and the items the
  Completed task runs carry are exactly the successful ones (the failed file's group is red and
  names it); a batch stopped by Ctrl-C leaves no Completed task run holding an item that never ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from deployments.server import stop_local_server
from salvo.procs import port_in_use
from tests.helpers import salvo, wait_until
from tests.ui.conftest import ROOT, assert_no_green_run_holds_a_failure, series, start_local, worker

FILES = [f"exp_S4_{i:03d}.nc" for i in range(11)]


class _NotOurs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<html><body>Page not found (another program on port 4200)</body></html>"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _port_4200_held() -> Iterator[None]:
    """Port 4200 held by another process's server (ours here, unless someone's already is)."""
    if port_in_use(4200):
        yield
        return
    server = HTTPServer(("127.0.0.1", 4200), _NotOurs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is missing: `make test` installs it (Debian package chromium)"
    return exe


def _dom(url: str) -> str:
    """The page as a headless Chromium renders it once its scripts (the UI's API calls) have run."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=30000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "HOME": profile},
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_ui_link_shows_this_run_and_no_green_task_run_holds_a_failure(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with _port_4200_held():
        try:
            local = start_local(home)  # no SALVO_SERVER_PORT: 4200 is taken, so a free port
            assert local.info.port != 4200
            data = series(tmp_path / "in", FILES)
            bad = ("exp_S4_000.nc", "exp_S4_007.nc")
            run = salvo(
                "extract",
                "--json",
                "--workers",
                "1",
                "--retries",
                "0",
                "--directory",
                str(data),
                "--worker-command",
                worker(tmp_path, fail=bad),
                env=local.env,
            )
            assert run.returncode == 1, run.stderr[-3000:]
            doc = json.loads(run.stdout)
            outcome = {i["item_id"]: i["status"] for i in doc["items"]}
            assert sorted(i for i, s in outcome.items() if s != "success") == list(bad)

            # The UI's settings name this server's API, not 4200's.
            with urllib.request.urlopen(f"{local.info.ui}/ui-settings", timeout=30) as resp:
                settings = json.loads(resp.read())
            assert settings["api_url"].rstrip("/") == local.info.url, settings

            (flow_run,) = [r for r in local.flow_runs("netcdf-extract-in-") if r["state"]["type"] == "FAILED"]
            # Task runs reach the API as events, a moment after the command returns.
            assert wait_until(
                lambda: (
                    all(t["state"]["type"] in ("COMPLETED", "FAILED") for t in local.task_runs(flow_run["id"]))
                    and len(local.task_runs(flow_run["id"])) >= 5
                ),
                timeout=60,
                interval=0.5,
            )
            tasks = local.task_runs(flow_run["id"])
            grouped = [t for t in tasks if "more)" in t["name"]]
            assert grouped, [t["name"] for t in tasks]  # 11 files, one worker: grouped task runs
            holding = [t for t in grouped if t["name"].startswith("exp_S4_000.nc")]
            assert holding and holding[0]["state"]["type"] == "FAILED", holding
            assert "exp_S4_000.nc" in holding[0]["state"]["message"]
            assert_no_green_run_holds_a_failure(tasks, outcome)

            # The printed link, in a real browser: the run's page shows this run (its name, its task runs).
            page = _dom(f"{local.info.ui}/runs/flow-run/{flow_run['id']}")
            assert flow_run["name"] in page, page[-3000:]
            assert "another program on port 4200" not in page
        finally:
            stop_local_server(home)


def _sigint_when(cmd: subprocess.Popen, predicate) -> None:
    try:
        assert wait_until(predicate, timeout=240, interval=0.2), "the batch never got going"
        os.killpg(cmd.pid, signal.SIGINT)
        cmd.wait(timeout=180)
    finally:
        if cmd.poll() is None:
            os.killpg(cmd.pid, signal.SIGKILL)
            cmd.wait()


def test_a_batch_cut_by_ctrl_c_leaves_no_green_task_run_holding_an_item_that_never_ran(tmp_path: Path, local) -> None:
    names = [f"f{i:02d}.nc" for i in range(24)]
    data = series(tmp_path / "cut", names)
    cmd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "extract",
            "--workers",
            "1",
            "--directory",
            str(data),
            "--worker-command",
            worker(tmp_path, sleep_s=0.4),
        ],
        env=local.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    _sigint_when(cmd, lambda: len(list(data.glob("*_results/plot.png"))) >= 5)
    assert cmd.returncode == 130, cmd.stderr.read()[-2000:] if cmd.stderr else ""
    (flow_run,) = local.flow_runs("netcdf-extract-cut-")
    assert flow_run["state"]["type"] in ("CANCELLED", "FAILED"), flow_run["state"]
    (report,) = [
        p for p in Path(tmp_path).rglob("batch_summary.json") if "runs" not in p.parts
    ]  # not the run's own copy
    outcome = {i["item_id"]: i["status"] for i in json.loads(report.read_text())["items"]}
    assert any(s in ("not_run", "interrupted") for s in outcome.values()), outcome
    final = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
    assert wait_until(
        lambda: all(t["state"]["type"] in final for t in local.task_runs(flow_run["id"])), timeout=60, interval=0.5
    )
    tasks = local.task_runs(flow_run["id"])
    assert tasks
    assert_no_green_run_holds_a_failure(tasks, outcome)
    cut = [t for t in tasks if t["state"]["type"] != "COMPLETED"]
    assert cut and all(t["state"]["type"] in ("FAILED", "CANCELLED", "CRASHED") for t in cut), [t["state"] for t in cut]
