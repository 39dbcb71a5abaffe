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
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask, current_app
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import audit
from .extensions import db
from .models import CreditEntry, JobLock, JobRun, JobStatus, OutboxEmail, Profile, utcnow

log = logging.getLogger(__name__)

#: how long an outbox message waits before another try, by attempt number
OUTBOX_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Job:
    """A job: its body (returns a dict of counts), when it runs, and its lease length."""

    name: str
    title: str
    body: Callable[[], dict]
    trigger: Callable[[], object]
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
    anomalies += [f"audit event {p.seq}: {p.problem}" for p in audit.verify_chain()]
    profiles = db.session.scalar(select(func.count(Profile.id)))
    db.session.rollback()
    return {"profiles_checked": profiles, "anomalies": anomalies}


def registry() -> dict[str, Job]:
    """Every job the scheduler runs, by its fixed id."""
    jobs = [
        Job("outbox", "Send queued email", send_outbox,
            lambda: IntervalTrigger(minutes=1), "every minute", timedelta(minutes=10)),
        Job("ledger_check", "Ledger and audit self-check", ledger_check,
            lambda: CronTrigger(hour=2, minute=30, timezone="UTC"), "daily at 02:30 UTC"),
    ]
    return {job.name: job for job in jobs}


# --------------------------------------------------------------------------- lease and runs


def holder_id() -> str:
    """Who holds a lease: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
    ).rowcount
    db.session.commit()
    return taken == 1


def release_lease(name: str, holder: str) -> None:
    """Give the lease back early so the next run need not wait for it to expire."""
    db.session.execute(
        update(JobLock).where(JobLock.job == name, JobLock.holder == holder)
        .values(lease_until=utcnow())
    )
    db.session.commit()


def run_job(name: str, *, trigger: str = "schedule") -> JobRun | None:
    """Run a job once under its lease and record the run; None when another holder runs it."""
    job = registry()[name]
    holder = holder_id()
    if not acquire_lease(name, holder, job.lease):
        log.info("job %s is running elsewhere; skipped", name)
        return None
    run = JobRun(job=name, trigger=trigger, started_at=utcnow(), status=JobStatus.RUNNING,
                 holder=holder)
    db.session.add(run)
    db.session.commit()
    run_id = run.id
    try:
        details = job.body() or {}
    except Exception as exc:  # the run must be recorded as failed whatever went wrong
        db.session.rollback()
        log.exception("job %s failed", name)
        run = db.session.get(JobRun, run_id)
        run.status = JobStatus.FAILED
        run.error = f"{exc.__class__.__name__}: {exc}\n{traceback.format_exc()}"[:10000]
    else:
        run = db.session.get(JobRun, run_id)
        run.status = JobStatus.SUCCEEDED
        run.details = details
        run.processed = sum(v for v in details.values() if isinstance(v, int))
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
