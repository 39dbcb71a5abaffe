"""The outbox delivers through a real SMTP server on loopback (aiosmtpd), with a login."""

from __future__ import annotations

import socket
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from backoffice import jobs, outbox
from backoffice.models import OutboxEmail


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self):
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


def _authenticator(_server, _session, _envelope, mechanism, auth_data):
    ok = mechanism in ("LOGIN", "PLAIN") and auth_data.login == b"mailer" \
        and auth_data.password == b"s3cret-pass"
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(),
                            authenticator=_authenticator, auth_require_tls=False)
    controller.start()
    try:
        yield controller.hostname, controller.port, inbox
    finally:
        controller.stop()


def _configure(app, monkeypatch, host, port, username="", password=""):
    for key, value in {"SMTP_HOST": host, "SMTP_PORT": port, "SMTP_USERNAME": username,
                       "SMTP_PASSWORD": password, "SMTP_SECURITY": "none",
                       "MAIL_FROM": "backoffice@example.com"}.items():
        monkeypatch.setitem(app.config, key, value)


def test_a_queued_message_arrives_once_with_its_sender_subject_and_body(
        app, ctx, monkeypatch, smtp_server):
    host, port, inbox = smtp_server
    _configure(app, monkeypatch, host, port, "mailer", "s3cret-pass")
    outbox.queue(to="it@northwind.example", subject="Renewal on 2027-01-01",
                 body="Hello,\nyour subscription renews.\n")
    ctx.commit()
    assert jobs.send_outbox() == {"sent": 1, "failed": 0}
    assert jobs.send_outbox() == {"sent": 0, "failed": 0}
    (mail_from, to, content), = inbox.received
    assert mail_from == "backoffice@example.com" and to == ["it@northwind.example"]
    email = message_from_bytes(content)
    assert email["Subject"] == "Renewal on 2027-01-01"
    assert email["From"] == "backoffice@example.com"
    body = email.get_payload(decode=True).decode().replace("\r\n", "\n")
    assert body == "Hello,\nyour subscription renews.\n"
    message = ctx.scalar(select(OutboxEmail))
    assert message.sent_at is not None and message.attempts == 1


def test_a_refused_message_is_tried_again_later_not_lost(app, ctx, monkeypatch, smtp_server):
    host, port, inbox = smtp_server
    _configure(app, monkeypatch, host, port, "mailer", "s3cret-pass")
    inbox.refuse.add("gone@northwind.example")
    outbox.queue(to="gone@northwind.example", subject="Hi", body="Body")
    ctx.commit()
    assert jobs.send_outbox() == {"sent": 0, "failed": 1}
    assert inbox.received == []
    message = ctx.scalar(select(OutboxEmail))
    assert message.sent_at is None and message.attempts == 1
    assert "No such mailbox" in message.last_error
    assert message.next_attempt_at is not None
