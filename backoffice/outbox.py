"""The email outbox: messages are queued in the database and delivered by a job.

Queuing is part of the unit of work that decides to send (a completed corporate request,
a renewal notice), so an email goes out exactly when its change commits. Delivery is a
job item per message, under the message's row lock: a message is handed to the mail
server at most once per attempt, failures are retried with backoff, and after
MAX_ATTEMPTS it is left for staff to look at (System -> Email outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from .clock import utcnow
from .extensions import db
from .models import OutboxEmail

#: how many times a message is tried before it is left for staff to look at
MAX_ATTEMPTS = 5


class DeliveryError(Exception):
    """The mail server refused or could not be reached; the message is tried again later."""


def queue(*, to: str, subject: str, body: str) -> OutboxEmail:
    """Queue a message in the caller's transaction."""
    message = OutboxEmail(to=to, subject=subject, body=body, created_at=utcnow(), attempts=0)
    db.session.add(message)
    db.session.flush()
    return message


def send_pending(deliver: Callable[[OutboxEmail], None], *, batch: int = 100) -> dict:
    """Hand due messages to ``deliver``, each in its own transaction (a job body).

    ``deliver`` raises DeliveryError when the message should be tried again.
    """
    now = utcnow()
    ids = db.session.scalars(
        select(OutboxEmail.id)
        .where(OutboxEmail.sent_at.is_(None), OutboxEmail.attempts < MAX_ATTEMPTS,
               (OutboxEmail.next_attempt_at.is_(None)) | (OutboxEmail.next_attempt_at <= now))
        .order_by(OutboxEmail.id)
        .limit(batch)
    ).all()
    db.session.rollback()
    counts = {"sent": 0, "failed": 0}
    for message_id in ids:
        message = db.session.get(OutboxEmail, message_id, with_for_update=True)
        if message is None or message.sent_at is not None:
            db.session.rollback()
            continue
        message.attempts += 1
        try:
            deliver(message)
        except DeliveryError as exc:
            message.last_error = str(exc)[:2000]
            message.next_attempt_at = utcnow() + timedelta(minutes=5 * 2 ** message.attempts)
            counts["failed"] += 1
        else:
            message.sent_at = utcnow()
            counts["sent"] += 1
        db.session.commit()
    return counts
