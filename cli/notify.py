"""`salvo notify add | list | remove | test`: tell people when a Salvo run fails or crashes.

Each notification is a Prefect *notification block* (a webhook, or e-mail over SMTP) and a Prefect
*automation* that sends through it when a pipeline's flow run ends Failed or Crashed. The server
sends it (its actions service), so it works for deployment runs, scheduled runs and `salvo` runs
alike, whoever started them, as long as they talk to that server (Salvo's local server, or
PREFECT_API_URL). The message names the pipeline and the run, says how many items failed and which
(the first ten, from the run's state message), and links to the run in the UI and to its report.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import re
import sys
from typing import Any

from salvo.errors import UsageError
from deployments.runs import NAME_PARAMS

#: The flows whose failure is news: each pipeline's own flow, not the subflows of a round.
PIPELINE_FLOWS = sorted(NAME_PARAMS)

SUBJECT = "Salvo: {{ flow.name }} run {{ flow_run.name }} ended {{ flow_run.state.name }}"
BODY = """Pipeline: {{ flow.name }}
Run: {{ flow_run.name }} ended {{ flow_run.state.name }}
{{ flow_run.state.message }}
Run in the UI: {{ flow_run|ui_url }}
"""


def _name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", text):
        raise argparse.ArgumentTypeError(f"a name is lower-case letters, digits and '-', up to 41 characters: {text!r}")
    return text


def _smtp(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return host, int(port)


def _email(text: str) -> str:
    if not re.fullmatch(r"[^@\s,]+@[^@\s,]+", text):
        raise argparse.ArgumentTypeError(f"not an e-mail address: {text!r}")
    return text


def register(subparsers: Any) -> None:
    """Add `salvo notify`."""
    p = subparsers.add_parser(
        "notify",
        help="notify people (webhook, e-mail) when a run fails or crashes",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    sub = p.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="add a notification: --webhook URL, or --email ADDRESS --smtp HOST:PORT")
    target = a.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--webhook",
        metavar="URL",
        help='POST a JSON message ({"text": ...}: Slack, Mattermost, Teams workflows, any URL)',
    )
    target.add_argument(
        "--email",
        metavar="ADDRESS",
        type=_email,
        action="append",
        help="send an e-mail to ADDRESS (repeatable); needs --smtp",
    )
    a.add_argument("--smtp", metavar="HOST:PORT", type=_smtp, help="the SMTP server for --email")
    a.add_argument(
        "--smtp-security",
        choices=["none", "starttls", "ssl"],
        default="none",
        help="encryption to the SMTP server (default: none)",
    )
    a.add_argument("--smtp-user", metavar="USER", help="SMTP login; its password is read from $SALVO_SMTP_PASSWORD")
    a.add_argument("--sender", metavar="ADDRESS", type=_email, default="salvo@localhost", help="the From: address")
    a.add_argument("--name", type=_name, help="its name (default: webhook or email)")
    a.set_defaults(func=add_main)
    ls = sub.add_parser("list", help="the notifications and where they send")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=list_main)
    rm = sub.add_parser("remove", help="remove a notification (its automation and its block)")
    rm.add_argument("name", type=_name)
    rm.set_defaults(func=remove_main)
    t = sub.add_parser("test", help="send a test message through one notification, or every one")
    t.add_argument("name", type=_name, nargs="?")
    t.set_defaults(func=test_main)


def _check_server() -> None:
    from cli.common import RunFailed
    from cli.server import prepare_api

    if not prepare_api():
        raise RunFailed(
            "notifications need a Prefect server (Salvo's local server, or PREFECT_API_URL): "
            "the temporary API of one command cannot send them"
        )


def add_main(args: argparse.Namespace) -> int:
    """Save the block and create its automation; replace one of the same name."""
    import os

    if args.email and not args.smtp:
        raise UsageError("--email needs --smtp HOST:PORT (the SMTP server that sends it)")
    if args.smtp and not args.email:
        raise UsageError("--smtp is for --email")
    if args.webhook and not re.match(r"https?://[^\s/]+", args.webhook):
        raise UsageError(f"--webhook must be an http:// or https:// URL, not {args.webhook!r}")
    if args.smtp_user and not os.environ.get("SALVO_SMTP_PASSWORD"):
        raise UsageError("--smtp-user needs its password in $SALVO_SMTP_PASSWORD (never on the command line)")
    _check_server()
    from blocks.notify import PREFIX, SalvoSmtpEmail, describe, webhook_block

    name = args.name or ("webhook" if args.webhook else "email")
    full = PREFIX + name
    if args.webhook:
        block: Any = webhook_block(args.webhook, full)
    else:
        block = SalvoSmtpEmail(
            to=args.email,
            smtp_host=args.smtp[0],
            smtp_port=args.smtp[1],
            sender=args.sender,
            username=args.smtp_user,
            password=os.environ.get("SALVO_SMTP_PASSWORD") or None,
            security=args.smtp_security,
        )
    _remove(full)
    block_id = block.save(full, overwrite=True)
    create_automation(full, block_id)
    print(f"Added notification {name}: {describe(block)}, when a run of {', '.join(PIPELINE_FLOWS)} fails or crashes")
    return 0


def create_automation(name: str, block_id: Any) -> Any:
    """The automation ``name``: a pipeline's flow run entering Failed or Crashed sends through the block."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    trigger = EventTrigger(
        expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": PIPELINE_FLOWS},
        posture=Posture.Reactive,
        threshold=1,
        within=0,
    )
    return Automation(
        name=name,
        description="salvo notify: a Salvo run failed or crashed",
        trigger=trigger,
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    ).create()


def _ours() -> list[tuple[str, Any, Any]]:
    """(short name, automation or None, block or None) of every `salvo notify` notification."""
    from prefect import get_client
    from prefect.blocks.core import Block

    from blocks.notify import PREFIX

    found: dict[str, list[Any]] = {}
    with get_client(sync_client=True) as client:
        for auto in client.read_automations():
            if auto.name.startswith(PREFIX):
                found.setdefault(auto.name, [None, None])[0] = auto
        for doc in client.read_block_documents():
            if doc.name and doc.name.startswith(PREFIX):
                try:
                    found.setdefault(doc.name, [None, None])[1] = Block._from_block_document(doc)
                except Exception:  # noqa: BLE001 - a block of a type this install lacks: still listed, removable
                    found.setdefault(doc.name, [None, None])[1] = doc
    return [(n.removeprefix(PREFIX), a, b) for n, (a, b) in sorted(found.items())]


def _remove(full: str) -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    gone = False
    with get_client(sync_client=True) as client:
        for auto in client.read_automations_by_name(full):
            client.delete_automation(auto.id)
            gone = True
        try:
            doc = client.read_block_document_by_name(full, block_type_slug=_slug_of(client, full))
            client.delete_block_document(doc.id)
            gone = True
        except (ObjectNotFound, LookupError):
            pass
    return gone


def _slug_of(client: Any, full: str) -> str:
    for doc in client.read_block_documents():
        if doc.name == full and doc.block_type:
            return doc.block_type.slug
    raise LookupError(full)


def list_main(args: argparse.Namespace) -> int:
    """One line per notification: its name, where it sends, and whether its automation is on."""
    _check_server()
    from blocks.notify import describe

    rows = [
        {
            "name": n,
            "target": describe(b) if b is not None else "(block missing)",
            "enabled": bool(a and a.enabled),
            "automation": str(a.id) if a else None,
        }
        for n, a, b in _ours()
    ]
    if args.json:
        from cli.common import print_json

        print_json(rows)
        return 0
    if not rows:
        print("No notifications: `salvo notify add --webhook URL` or `--email ADDRESS --smtp HOST:PORT` adds one.")
    for r in rows:
        state = "on" if r["enabled"] else "OFF (no automation)" if r["automation"] is None else "off"
        print(f"{r['name']:<16} {state:<4} {r['target']}")
    return 0


def remove_main(args: argparse.Namespace) -> int:
    """Delete the automation and the block; exit 1 if there was no such notification."""
    _check_server()
    from blocks.notify import PREFIX

    if not _remove(PREFIX + args.name):
        print(f"salvo: error: no notification named {args.name} (`salvo notify list`)", file=sys.stderr)
        return 1
    print(f"Removed notification {args.name}")
    return 0


def test_main(args: argparse.Namespace) -> int:
    """Send a test message through one notification (or all); exit 1 if one could not be sent."""
    _check_server()
    from blocks.notify import describe

    chosen = [(n, b) for n, _, b in _ours() if args.name in (None, n)]
    if not chosen:
        print(
            "salvo: error: "
            + (f"no notification named {args.name}" if args.name else "no notifications")
            + " (`salvo notify list`)",
            file=sys.stderr,
        )
        return 1
    code = 0
    for name, block in chosen:
        try:
            sent = block.notify(
                "This is a test of Salvo's failure notifications: nothing failed.",
                subject=f"Salvo: test of notification {name}",
            )
            if inspect.iscoroutine(sent):
                asyncio.run(sent)
            print(f"Sent a test message through {name}: {describe(block)}")
        except Exception as exc:  # noqa: BLE001 - one line per notification that failed
            print(
                f"salvo: error: notification {name} ({describe(block)}) failed: {' '.join(str(exc).split())}",
                file=sys.stderr,
            )
            code = 1
    return code
