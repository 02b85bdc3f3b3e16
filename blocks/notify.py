"""Notification blocks for failed and crashed runs: e-mail over plain SMTP (ours), and the webhook
Prefect ships (`CustomWebhookNotificationBlock`, with a Slack/Mattermost-style ``{"text": ...}`` body).

Prefect 3.8 ships no SMTP block in `prefect.blocks.notifications` (its e-mail block, `SendgridEmail`,
needs SendGrid's API; `prefect-email` is another package), so `SalvoSmtpEmail` is a small one of our
own. An automation's notification is sent by the *server* (its actions service), which finds the
block's class through the ``prefect.collections`` entry point this package declares
(pyproject.toml): the server needs Salvo installed, as `make venv` does.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any

from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from pydantic import Field, SecretStr

#: Name prefix of the blocks and automations `salvo notify` creates.
PREFIX = "salvo-notify-"


class SalvoSmtpEmail(NotificationBlock):
    """Send a notification as an e-mail through an SMTP server (optionally STARTTLS or SSL, and a login)."""

    _block_type_name = "Salvo SMTP e-mail"
    _block_type_slug = "salvo-smtp-email"
    _description = "E-mail over SMTP, for Salvo's failure notifications."

    to: list[str] = Field(description="recipients")
    smtp_host: str = Field(description="SMTP server host")
    smtp_port: int = Field(25, description="SMTP server port")
    sender: str = Field("salvo@localhost", description="From: address")
    username: str | None = Field(None, description="SMTP login, if the server wants one")
    password: SecretStr | None = Field(None, description="SMTP password (stored masked)")
    security: str = Field("none", description="none, starttls or ssl")
    timeout_s: float = Field(20.0, description="seconds to wait for the SMTP server")

    def message(self, body: str, subject: str | None = None) -> EmailMessage:
        """The e-mail `notify` sends."""
        msg = EmailMessage()
        msg["From"], msg["To"] = self.sender, ", ".join(self.to)
        msg["Subject"] = subject or "Salvo notification"
        msg.set_content(body)
        return msg

    def _send(self, msg: EmailMessage) -> None:
        cls = smtplib.SMTP_SSL if self.security == "ssl" else smtplib.SMTP
        with cls(self.smtp_host, self.smtp_port, timeout=self.timeout_s) as smtp:
            if self.security == "starttls":
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password.get_secret_value() if self.password else "")
            smtp.send_message(msg)

    async def notify(self, body: str, subject: str | None = None) -> None:  # type: ignore[override]
        """Send ``body`` to every recipient (an SMTP error raises, so the automation shows it failed)."""
        await asyncio.to_thread(self._send, self.message(body, subject))


def webhook_block(url: str, name: str) -> CustomWebhookNotificationBlock:
    """Prefect's webhook block posting ``{"text": SUBJECT\\nBODY, "subject": ..., "body": ...}``: Slack,
    Mattermost and most chat webhooks read ``text``; any other receiver gets the parts too."""
    return CustomWebhookNotificationBlock(
        name=name, url=url, json_data={"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"}
    )


def describe(block: Any) -> str:
    """Where a notification block sends: ``webhook URL`` or ``e-mail to A, B via HOST:PORT``."""
    if isinstance(block, SalvoSmtpEmail):
        return f"e-mail to {', '.join(block.to)} via {block.smtp_host}:{block.smtp_port}"
    if isinstance(block, CustomWebhookNotificationBlock):
        from salvo.validate import redact

        return f"webhook {redact(block.url)}"
    return type(block).__name__


__all__ = ["PREFIX", "SalvoSmtpEmail", "describe", "webhook_block"]
