"""Scheduled jobs: the registry, the lease that keeps to one runner, and run history.

APScheduler is only the timer. What is due is read from the rows, so a missed, late,
repeated or concurrent run does no harm; the lease in ``JobLock`` keeps several web
or worker processes from running the same job at once.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import threading
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from dateutil.relativedelta import relativedelta
from flask import Flask, current_app
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased

from . import audit, idempotency, invoicing, renewals
from .clock import today, utcnow
from .extensions import db
from .models import (
    CreditEntry,
    JobLock,
    JobRun,
    JobStatus,
    OutboxEmail,
    Profile,
    Subscription,
    SubscriptionStatus,
    TransactionLine,
)

log = logging.getLogger(__name__)

#: how many times an outbox message is tried before it is left for staff to look at
OUTBOX_MAX_ATTEMPTS = 5

#: ``progress(done, total)`` for the job running in this context (``flask jobs run-once``)
_progress: ContextVar[Callable[[int, int], None] | None] = ContextVar("job_progress",
                                                                     default=None)


@dataclass(frozen=True)
class Job:
    """A job: its body (returns a dict of counts), when it runs, and its lease length."""

    name: str
    title: str
    body: Callable[[], dict]
    trigger: Callable[[], BaseTrigger]
    schedule: str
    lease: timedelta = timedelta(minutes=30)


# --------------------------------------------------------------------------- job bodies


def send_outbox(batch: int = 100) -> dict:
    """Send queued emails; each message commits on its own, failures retry with backoff."""
    now = utcnow()
    ids = db.session.scalars(
        select(OutboxEmail.id)
        .where(OutboxEmail.sent_at.is_(None), OutboxEmail.attempts < OUTBOX_MAX_ATTEMPTS,
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
        try:
            _deliver(message)
        except (OSError, smtplib.SMTPException) as exc:
            message.attempts += 1
            message.last_error = str(exc)[:2000]
            message.next_attempt_at = utcnow() + timedelta(minutes=5 * 2 ** message.attempts)
            counts["failed"] += 1
        else:
            message.attempts += 1
            message.sent_at = utcnow()
            counts["sent"] += 1
        db.session.commit()
    return counts


def _deliver(message: OutboxEmail) -> None:
    """Hand one message to SMTP, or to the log when no SMTP host is configured."""
    host = current_app.config.get("SMTP_HOST")
    if not host:
        log.info("email to %s: %s\n%s", message.to, message.subject, message.body)
        return
    email = EmailMessage()
    email["From"] = current_app.config["MAIL_FROM"]
    email["To"] = message.to
    email["Subject"] = message.subject
    email.set_content(message.body)
    with smtplib.SMTP(host, current_app.config["SMTP_PORT"], timeout=30) as smtp:
        smtp.send_message(email)


def ledger_check() -> dict:
    """Verify the books: every balance equals its ledger, and the audit chain is intact.

    Returns counts and a list of anomalies; writes nothing but its own run record.
    """
    ledger = (
        select(CreditEntry.profile_id, func.coalesce(func.sum(CreditEntry.amount), 0).label("sum"))
        .group_by(CreditEntry.profile_id)
        .subquery()
    )
    mismatches = db.session.execute(
        select(Profile.id, Profile.email, Profile.credit_balance, ledger.c.sum)
        .outerjoin(ledger, ledger.c.profile_id == Profile.id)
        .where(Profile.credit_balance != func.coalesce(ledger.c.sum, 0))
    ).all()
    anomalies = [
        f"profile {row.email}: balance {row.credit_balance} but ledger sums to {row.sum or 0}"
        for row in mismatches
    ]
    anomalies += _refund_anomalies()
    anomalies += [f"audit event {p.seq}: {p.problem}" for p in audit.verify_chain()]
    profiles = db.session.scalar(select(func.count(Profile.id)))
    lines = db.session.scalar(select(func.count(TransactionLine.id)))
    db.session.rollback()
    return {"profiles_checked": profiles, "lines_checked": lines, "anomalies": anomalies}


def _refund_anomalies() -> list[str]:
    """Charge lines refunded beyond their quantity or amount.

    Both the line's own counters and the refund lines that point at it are checked, so a
    counter that drifted from the refunds actually recorded is found too.
    """
    refund = aliased(TransactionLine)
    refunded = (
        select(refund.refunded_line_id.label("line_id"),
               func.sum(refund.quantity).label("quantity"),
               func.sum(-refund.amount).label("amount"))
        .where(refund.refunded_line_id.is_not(None))
        .group_by(refund.refunded_line_id)
        .subquery()
    )
    charge = TransactionLine
    rows = db.session.execute(
        select(charge.id, charge.transaction_id, charge.quantity, charge.amount,
               charge.refunded_quantity, charge.refunded_amount,
               refunded.c.quantity.label("refund_quantity"),
               refunded.c.amount.label("refund_amount"))
        .outerjoin(refunded, refunded.c.line_id == charge.id)
        .where(charge.refunded_line_id.is_(None), charge.amount >= 0)
        .where((charge.refunded_quantity > charge.quantity)
               | (charge.refunded_amount > charge.amount)
               | (func.coalesce(refunded.c.quantity, 0) > charge.quantity)
               | (func.coalesce(refunded.c.amount, 0) > charge.amount))
        .order_by(charge.id)
    ).all()
    return [
        f"transaction T{r.transaction_id} line {r.id}: {r.quantity} certificates for "
        f"{r.amount}, but refunded {max(r.refunded_quantity, r.refund_quantity or 0)} "
        f"certificates for {max(r.refunded_amount, r.refund_amount or 0)}"
        for r in rows
    ]


#: how long before an auto-renewal the customer is told about it
RENEWAL_NOTICE_DAYS = 30


def renewal_notice_subject(subscription: Subscription) -> str:
    """The notice's subject; it names the subscription and its term end, once per term.

    The subject is also the marker that the notice for this term was queued: a queued or
    sent outbox message with exactly this subject means the notice is not queued again.
    """
    return (f"Subscription #{subscription.id} renews automatically on "
            f"{subscription.end_date.isoformat()}")


def queue_renewal_notices(*, as_of: date | None = None) -> dict:
    """Queue an email to the customer admin 30 days before each auto-renewal, once per term.

    Each subscription is handled in its own transaction under its row lock, so two runs
    at once still queue one notice. Subscriptions that will not renew get no notice.
    """
    as_of = as_of or today()
    ids = db.session.scalars(
        select(Subscription.id)
        .where(Subscription.status == SubscriptionStatus.ACTIVE,
               Subscription.auto_renew.is_(True),
               Subscription.end_date > as_of,
               Subscription.end_date <= as_of + timedelta(days=RENEWAL_NOTICE_DAYS))
        .order_by(Subscription.id)
    ).all()
    db.session.rollback()
    counts = {"queued": 0, "already_queued": 0, "no_email": 0, "not_renewing": 0,
              "failed": 0}
    for subscription_id in ids:
        try:
            outcome = _queue_notice(subscription_id, as_of)
            db.session.commit()
        except Exception:  # one bad subscription must not stop the others
            db.session.rollback()
            log.exception("renewal notice for subscription %s failed", subscription_id)
            outcome = "failed"
        counts[outcome] += 1
    return counts


def _queue_notice(subscription_id: int, as_of: date) -> str:
    """Queue one subscription's notice in the current transaction; returns what happened."""
    subscription = db.session.get(Subscription, subscription_id, with_for_update=True,
                                  populate_existing=True)
    if (subscription is None or renewals.renewal_blocker(subscription) is not None
            or subscription.end_date <= as_of):
        return "not_renewing"
    subject = renewal_notice_subject(subscription)
    if db.session.scalar(select(OutboxEmail.id).where(OutboxEmail.subject == subject)):
        return "already_queued"
    customer = subscription.customer
    if not customer.customer_admin_email:
        return "no_email"
    holding = "\n".join(
        f"  {row.certificate_type.code}: {row.renewal_quantity}"
        for row in subscription.inventory if row.renewal_quantity > 0
    )
    body = (
        f"Hello,\n\nSubscription #{subscription.id} ({subscription.product.name}) of "
        f"{customer.company_name} renews automatically on "
        f"{subscription.end_date.isoformat()} for another {subscription.term_months} "
        f"months, with:\n{holding}\n\nThe full-term charge will appear on your next "
        f"invoice. To change the renewal inventory or stop the renewal, contact us before "
        f"that date.\n"
    )
    message = OutboxEmail(to=customer.customer_admin_email, subject=subject, body=body,
                          created_at=utcnow(), attempts=0)
    db.session.add(message)
    db.session.flush()
    audit.record(None, "subscription.renewal_notice", subscription,
                 {"term_end": subscription.end_date, "to": message.to,
                  "outbox_email_id": message.id}, actor_label="job:renewal_notices")
    return "queued"


def renew_subscriptions() -> dict:
    """The renewal job: renew or expire every subscription whose term has ended."""
    return renewals.renew_due_subscriptions(progress=_progress.get())


def previous_month(as_of: date) -> date:
    """The first day of the month before ``as_of``'s month."""
    return as_of.replace(day=1) - relativedelta(months=1)


def issue_invoices() -> dict:
    """The monthly invoicing job: one invoice per partner customer for the previous month."""
    month = previous_month(today())
    invoices = invoicing.issue_monthly_invoices(month=month)
    count = len(invoices or [])
    db.session.commit()  # the domain function flushes; the job owns the unit of work
    return {"invoices": count, "month": month.isoformat()}


def renewal_notices() -> dict:
    """The renewal-notice job: email customer admins 30 days before an auto-renewal."""
    return queue_renewal_notices()


def purge_review_keys() -> dict:
    """Forget the idempotency keys of reviews applied more than KEY_RETENTION ago."""
    removed = idempotency.purge()
    db.session.commit()
    return {"removed": removed}


def registry() -> dict[str, Job]:
    """Every job the scheduler runs, by its fixed id."""
    jobs = [
        Job("renewals", "Renew or expire ended subscriptions", renew_subscriptions,
            lambda: CronTrigger(hour=1, minute=0, timezone="UTC"), "daily at 01:00 UTC",
            timedelta(hours=2)),
        Job("ledger_check", "Ledger and audit self-check", ledger_check,
            lambda: CronTrigger(hour=2, minute=30, timezone="UTC"), "daily at 02:30 UTC"),
        Job("monthly_invoices", "Issue monthly customer invoices", issue_invoices,
            lambda: CronTrigger(day=1, hour=3, minute=0, timezone="UTC"),
            "1st of the month at 03:00 UTC", timedelta(hours=2)),
        Job("renewal_notices", "Queue renewal notices (30 days ahead)", renewal_notices,
            lambda: CronTrigger(hour=6, minute=0, timezone="UTC"), "daily at 06:00 UTC"),
        Job("review_keys", "Forget applied review keys after 7 days", purge_review_keys,
            lambda: CronTrigger(hour=4, minute=15, timezone="UTC"), "daily at 04:15 UTC"),
        Job("outbox", "Send queued email", send_outbox,
            lambda: IntervalTrigger(minutes=1), "every minute", timedelta(minutes=10)),
    ]
    return {job.name: job for job in jobs}


# --------------------------------------------------------------------------- lease and runs


def holder_id() -> str:
    """Who holds a lease: host, process and thread.

    The thread matters: in the web process the scheduler's thread and a "Run now" request
    must not both count as the holder of the same lease.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def acquire_lease(name: str, holder: str, duration: timedelta) -> bool:
    """Take or renew the job's lease; True when this holder may run the job now.

    Committed on its own, so other processes see it at once.
    """
    now = utcnow()
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(
        insert(JobLock).values(job=name, holder="", lease_until=now).on_conflict_do_nothing()
    )
    taken = db.session.execute(
        update(JobLock)
        .where(JobLock.job == name, (JobLock.lease_until <= now) | (JobLock.holder == holder))
        .values(holder=holder, lease_until=now + duration)
    ).rowcount  # type: ignore[attr-defined]  # an UPDATE's CursorResult
    db.session.commit()
    return taken == 1


def release_lease(name: str, holder: str) -> None:
    """Give the lease back early so the next run need not wait for it to expire."""
    db.session.execute(
        update(JobLock).where(JobLock.job == name, JobLock.holder == holder)
        .values(lease_until=utcnow())
    )
    db.session.commit()


def run_job(name: str, *, trigger: str = "schedule",
            progress: Callable[[int, int], None] | None = None) -> JobRun | None:
    """Run a job once under its lease and record the run; None when another holder runs it.

    ``progress(done, total)`` is called as a job that reports progress works through items.
    """
    job = registry()[name]
    holder = holder_id()
    if not acquire_lease(name, holder, job.lease):
        log.info("job %s is running elsewhere; skipped", name)
        return None
    # Holding the lease, any run still marked running was abandoned by a crashed holder.
    db.session.execute(
        update(JobRun).where(JobRun.job == name, JobRun.status == JobStatus.RUNNING)
        .values(status=JobStatus.FAILED, finished_at=utcnow(),
                error="Abandoned: its process stopped before the run finished.")
    )
    run = JobRun(job=name, trigger=trigger, started_at=utcnow(), status=JobStatus.RUNNING,
                 holder=holder)
    db.session.add(run)
    db.session.flush()
    # Read the id before committing: reading it after would begin a new transaction (on
    # SQLite, a write lock) that stayed open through the whole job body.
    run_id = run.id
    db.session.commit()
    token = _progress.set(progress)
    try:
        details = job.body() or {}
    except Exception as exc:  # the run must be recorded as failed whatever went wrong
        db.session.rollback()
        log.exception("job %s failed", name)
        run = db.session.get_one(JobRun, run_id)
        run.status = JobStatus.FAILED
        run.error = f"{exc.__class__.__name__}: {exc}\n{traceback.format_exc()}"[:10000]
    else:
        run = db.session.get_one(JobRun, run_id)
        run.status = JobStatus.SUCCEEDED
        run.details = details
        run.processed = sum(v for v in details.values() if isinstance(v, int))
    finally:
        _progress.reset(token)
    run.finished_at = utcnow()
    db.session.commit()
    release_lease(name, holder)
    return run


# --------------------------------------------------------------------------- the scheduler


def build_scheduler(app: Flask, scheduler_class=BackgroundScheduler):
    """An APScheduler with every job registered under its fixed id."""
    scheduler = scheduler_class(timezone="UTC")
    for job in registry().values():
        scheduler.add_job(
            _run_in_app, job.trigger(), args=(app, job.name), id=job.name, name=job.title,
            replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=3600,
        )
    return scheduler


def _run_in_app(app: Flask, name: str) -> None:
    with app.app_context():
        try:
            run_job(name)
        finally:
            db.session.remove()


def start_in_process(app: Flask) -> BackgroundScheduler | None:
    """Start the scheduler inside the web process, once (not in the reloader's watcher)."""
    if app.debug and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return None
    if app.extensions.get("backoffice_scheduler") is not None:
        return app.extensions["backoffice_scheduler"]
    scheduler = build_scheduler(app)
    scheduler.start()
    app.extensions["backoffice_scheduler"] = scheduler
    log.info("scheduler started in process %s", os.getpid())
    return scheduler
