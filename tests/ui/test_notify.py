"""Failure notifications, end to end: a real local Prefect server (its automations and actions
services), `salvo notify add` for a webhook and for e-mail, a `salvo extract` run that fails, and a
local HTTP receiver and a local SMTP server (aiosmtpd) on 127.0.0.1 that each receive one message
naming the pipeline, the failed items, the run's UI page and its report."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from salvo.procs import free_port
from tests.helpers import salvo, wait_until
from tests.ui.conftest import Local, series, worker


class _Receiver(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).got.append({"path": self.path, "json": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"got": got})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/salvo", got
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    got: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            got.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, got
    finally:
        controller.stop()


def test_a_failed_run_notifies_a_webhook_and_an_email_naming_the_failed_items(
    tmp_path: Path, local: Local, webhook, smtp
) -> None:
    url, posts = webhook
    port, mails = smtp
    added = salvo("notify", "add", "--webhook", url, env=local.env)
    assert added.returncode == 0, added.stderr
    added = salvo("notify", "add", "--email", "ops@example.org", "--smtp", f"127.0.0.1:{port}", env=local.env)
    assert added.returncode == 0, added.stderr
    listed = salvo("notify", "list", env=local.env)
    assert listed.returncode == 0 and "webhook" in listed.stdout and "ops@example.org" in listed.stdout, listed.stdout

    data = series(tmp_path / "nightly", ["a.nc", "b1.nc", "b2.nc", "c.nc"])
    run = salvo(
        "extract",
        "--retries",
        "0",
        "--directory",
        str(data),
        "--worker-command",
        worker(tmp_path, fail=("b1.nc", "b2.nc")),
        env=local.env,
    )
    assert run.returncode == 1, run.stderr[-2000:]

    assert wait_until(lambda: posts and mails, timeout=120, interval=0.5), (posts, mails)
    assert len(posts) == 1 and len(mails) == 1, (posts, mails)
    text = posts[0]["json"]["text"]
    rcpt, mail = mails[0]
    body = mail.get_payload(decode=True).decode()
    assert rcpt == ["ops@example.org"] and "netcdf-extract" in mail["Subject"]
    for message in (text, body):
        assert "netcdf-extract" in message and "2 of 4 items failed: b1.nc, b2.nc" in message, message
        assert "/runs/flow-run/" in message and local.info.ui in message, message  # the run's page in the UI
        assert "run_report.html" in message, message  # and its report

    tested = salvo("notify", "test", "email", env=local.env)
    assert tested.returncode == 0, tested.stderr
    assert wait_until(lambda: len(mails) == 2, timeout=60) and "test" in mails[1][1]["Subject"]
    removed = salvo("notify", "remove", "webhook", env=local.env)
    assert removed.returncode == 0, removed.stderr
    listed = salvo("notify", "list", "--json", env=local.env)
    assert [r["name"] for r in json.loads(listed.stdout)] == ["email"]
    assert salvo("notify", "remove", "webhook", env=local.env).returncode == 1
