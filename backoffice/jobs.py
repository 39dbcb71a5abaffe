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

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from dateutil.relativedelta import relativedelta
from flask import Flask, current_app
from flask_mailman import EmailMessage
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import checks, idempotency, invoicing, outbox, renewals
from .clock import today, utcnow
from .extensions import db, mail
from .models import JobLock, JobRun, JobStatus, OutboxEmail

log = logging.getLogger(__name__)

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
# Each body is a thin wrapper: the work lives in its domain module (renewals, invoicing,
# outbox, checks, idempotency); a body gives it what the Flask side knows (mail settings,
# progress) and owns the unit of work where the domain leaves it to the caller.


def send_outbox(batch: int = 100) -> dict:
    """Send queued emails; each message commits on its own, failures retry with backoff."""
    return outbox.send_pending(_deliver, batch=batch)


def _deliver(message: OutboxEmail) -> None:
    """Hand one message to the SMTP server (Flask-Mailman), or to the log when no SMTP host
    is configured."""
    config = current_app.config
    if not config.get("SMTP_HOST"):
        log.info("email to %s: %s\n%s", message.to, message.subject, message.body)
        return
    security = config.get("SMTP_SECURITY", "none")
    connection = mail.get_connection(
        backend="smtp", host=config["SMTP_HOST"], port=config["SMTP_PORT"],
        username=config.get("SMTP_USERNAME", ""), password=config.get("SMTP_PASSWORD", ""),
        use_tls=security == "starttls", use_ssl=security == "ssl", timeout=30)
    email = EmailMessage(subject=message.subject, body=message.body,
                         from_email=config["MAIL_FROM"], to=[message.to],
                         connection=connection)
    try:
        email.send()
    except (OSError, smtplib.SMTPException) as exc:
        raise outbox.DeliveryError(str(exc) or exc.__class__.__name__) from exc


def ledger_check() -> dict:
    """Verify the books (see ``checks.ledger_check``)."""
    return checks.ledger_check()


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
    return renewals.queue_renewal_notices()


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
