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
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import audit, checks, idempotency, invoicing, outbox, renewals, summaries
from .clock import today, utcnow
from .extensions import db, mail
from .models import JobLock, JobRun, JobRunner, JobStatus, OutboxEmail

log = logging.getLogger(__name__)

#: ``progress(done, total)`` for the job running in this context (``flask jobs run-once``)
_progress: ContextVar[Callable[[int, int], None] | None] = ContextVar("job_progress",
                                                                     default=None)


@dataclass(frozen=True)
class Job:
    """A job: its body (returns a dict of counts; a run's arguments, if any, are its keyword
    arguments), when it runs, and its lease length."""

    name: str
    title: str
    body: Callable[..., dict]
    trigger: Callable[[], BaseTrigger]
    schedule: str
    #: how long the lease lasts without a heartbeat (see LEASE)
    lease: timedelta | None = None


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
    """Verify the books and commit the audit checkpoint (see ``checks.ledger_check``), and
    sum the months that have finished into the dashboard's monthly totals.

    The checkpoint also goes to the log, a copy of the chain head outside the database.
    """
    result = checks.ledger_check()
    result.update(summaries.summarize_finished_days()._asdict())
    checkpoint = audit.last_checkpoint()
    head = (checkpoint.id, checkpoint.seq, checkpoint.hash) if checkpoint else None
    db.session.commit()
    if head is not None:
        log.info("audit checkpoint %s: event %s has hash %s", *head)
    return result


def renew_subscriptions() -> dict:
    """The renewal job: renew or expire every subscription whose term has ended, a chunk
    of RENEWAL_CHUNK_SIZE subscriptions per transaction."""
    return renewals.renew_due_subscriptions(
        progress=_progress.get(), chunk_size=int(current_app.config["RENEWAL_CHUNK_SIZE"]))


def previous_month(as_of: date) -> date:
    """The first day of the month before ``as_of``'s month."""
    return as_of.replace(day=1) - relativedelta(months=1)


def invoice_chunk_size() -> int:
    """How many customers the monthly invoicing issues in one transaction
    (INVOICE_CHUNK_SIZE); the Monthly invoices page hands a larger month to this job."""
    return int(current_app.config["INVOICE_CHUNK_SIZE"])


def issue_invoices(month: str | None = None) -> dict:
    """The monthly invoicing job: one invoice per partner customer for the previous month,
    or for ``month`` ("2026-11", a run the Monthly invoices page queued), committed a chunk
    of INVOICE_CHUNK_SIZE customers at a time."""
    chosen = (date.fromisoformat(f"{month}-01") if month is not None
              else previous_month(today()))
    count = 0
    for issued in invoicing.issue_in_chunks(
            month=chosen, chunk_size=invoice_chunk_size()):
        db.session.commit()  # the domain flushes; the job owns the unit of work
        count += issued
    db.session.commit()
    return {"invoices": count, "month": chosen.isoformat()}


def renewal_notices() -> dict:
    """The renewal-notice job: email customer admins 30 days before an auto-renewal."""
    return renewals.queue_renewal_notices()


def purge_review_keys() -> dict:
    """Forget the idempotency keys of reviews applied more than KEY_RETENTION ago."""
    removed = idempotency.purge()
    db.session.commit()
    return {"removed": removed}


#: the monthly invoicing job's id (the Monthly invoices page queues runs of it)
MONTHLY_INVOICES = "monthly_invoices"


def registry() -> dict[str, Job]:
    """Every job the scheduler runs, by its fixed id."""
    jobs = [
        Job("renewals", "Renew or expire ended subscriptions", renew_subscriptions,
            lambda: CronTrigger(hour=1, minute=0, timezone="UTC"), "daily at 01:00 UTC"),
        Job("ledger_check", "Ledger and audit self-check", ledger_check,
            lambda: CronTrigger(hour=2, minute=30, timezone="UTC"), "daily at 02:30 UTC"),
        Job(MONTHLY_INVOICES, "Issue monthly customer invoices", issue_invoices,
            lambda: CronTrigger(day=1, hour=3, minute=0, timezone="UTC"),
            "1st of the month at 03:00 UTC"),
        Job("renewal_notices", "Queue renewal notices (30 days ahead)", renewal_notices,
            lambda: CronTrigger(hour=6, minute=0, timezone="UTC"), "daily at 06:00 UTC"),
        Job("review_keys", "Forget applied review keys after 7 days", purge_review_keys,
            lambda: CronTrigger(hour=4, minute=15, timezone="UTC"), "daily at 04:15 UTC"),
        Job("outbox", "Send queued email", send_outbox,
            lambda: IntervalTrigger(minutes=1), "every minute"),
    ]
    return {job.name: job for job in jobs}


# --------------------------------------------------------------------------- lease and runs
#
# A run holds its job's lease (JobLock) for LEASE and renews it every HEARTBEAT while the
# body works, so a live run keeps it however long it takes, and a dead one loses it
# within LEASE; on the same host a holder whose process is gone loses it at once. The
# next runner takes the lease over and marks the dead run abandoned. The lease only
# decides who works: exactly-once lives in the rows (UNIQUE term starts, row locks).

#: how long a lease lasts without a heartbeat (JOB_LEASE_SECONDS)
LEASE = timedelta(seconds=60)
#: how often a running job renews its lease (JOB_HEARTBEAT_SECONDS)
HEARTBEAT = timedelta(seconds=15)
#: a runner not seen for this long is taken to be gone (for the Jobs page)
RUNNER_SILENCE = timedelta(seconds=30)


def _seconds(setting: str, default: timedelta) -> timedelta:
    return timedelta(seconds=float(current_app.config.get(setting, default.total_seconds())))


def holder_id() -> str:
    """Who holds a lease: host, process and thread.

    The thread matters: in the web process the scheduler's thread and a "Run now" request
    must not both count as the holder of the same lease.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def process_id() -> str:
    """This process, as a job runner: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_gone(holder: str) -> bool:
    """Whether ``holder`` (host:pid:thread) was a process on this host that no longer runs.

    A holder on another host is never judged here: its lease has to run out.
    """
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child its parent has not reaped yet is a zombie: gone all the same
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def acquire_lease(name: str, holder: str, duration: timedelta) -> bool:
    """Take or renew the job's lease; True when this holder may run the job now.

    It is free when it ran out, when ``holder`` already has it, or when its holder's
    process is gone from this host. The update is a compare-and-set on the row as read,
    so two takers never both win. Committed on its own, so other processes see it at once.
    """
    now = utcnow()
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(
        insert(JobLock).values(job=name, holder="", lease_until=now).on_conflict_do_nothing()
    )
    current = db.session.execute(
        select(JobLock.holder, JobLock.lease_until).where(JobLock.job == name)).one()
    free = (current.lease_until <= now or current.holder == holder
            or holder_is_gone(current.holder))
    taken = free and db.session.execute(
        update(JobLock)
        .where(JobLock.job == name, JobLock.holder == current.holder,
               JobLock.lease_until == current.lease_until)
        .values(holder=holder, lease_until=now + duration)
    ).rowcount == 1  # type: ignore[attr-defined]  # an UPDATE's CursorResult
    db.session.commit()
    return bool(taken)


def release_lease(name: str, holder: str) -> None:
    """Give the lease back early so the next run need not wait for it to expire."""
    db.session.execute(
        update(JobLock).where(JobLock.job == name, JobLock.holder == holder)
        .values(lease_until=utcnow())
    )
    db.session.commit()


class _Heartbeat(threading.Thread):
    """Renews a running job's lease and its run's heartbeat every HEARTBEAT, in its own
    app context and session, until stopped."""

    def __init__(self, app: Flask, name: str, holder: str, run_id: int, lease: timedelta,
                 every: timedelta):
        super().__init__(name=f"heartbeat-{name}", daemon=True)
        self.app, self.job, self.holder, self.run_id = app, name, holder, run_id
        self.lease, self.every = lease, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every.total_seconds()):
            with self.app.app_context():
                try:
                    if not acquire_lease(self.job, self.holder, self.lease):
                        log.warning("job %s lost its lease to another holder", self.job)
                    db.session.execute(update(JobRun).where(JobRun.id == self.run_id)
                                       .values(heartbeat_at=utcnow()))
                    db.session.commit()
                except Exception:  # a missed beat is retried at the next one
                    db.session.rollback()
                    log.exception("heartbeat of job %s failed", self.job)
                finally:
                    db.session.remove()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)


def _take_over(name: str, holder: str) -> None:
    """Mark the job's runs still marked running as abandoned by their (dead) holders."""
    now = utcnow()
    for run in db.session.scalars(select(JobRun).where(
            JobRun.job == name, JobRun.status == JobStatus.RUNNING)):
        run.status = JobStatus.ABANDONED
        run.finished_at = now
        run.taken_over_by = holder
        run.error = (f"Abandoned: {run.holder or 'its process'} stopped before the run "
                     f"finished; {holder} took the job over.")
        log.warning("job %s: run %s of %s abandoned; taken over by %s", name, run.id,
                    run.holder, holder)


def request_run(name: str, *, staff, trigger: str = "manual",
                arguments: dict | None = None) -> JobRun:
    """Queue a run for the job runner (Run now), with ``arguments`` for its body, unless
    one with the same arguments is queued already.

    The caller commits; the runner picks queued runs up within seconds.
    """
    registry()[name]  # an unknown job is a KeyError, before anything is written
    arguments = dict(arguments or {})
    for queued in db.session.scalars(select(JobRun).where(
            JobRun.job == name, JobRun.status == JobStatus.QUEUED).order_by(JobRun.id)):
        if (queued.arguments or {}) == arguments:
            return queued
    run = JobRun(job=name, trigger=trigger, status=JobStatus.QUEUED, requested_at=utcnow(),
                 requested_by_id=getattr(staff, "id", None), arguments=arguments)
    db.session.add(run)
    db.session.flush()
    audit.record(staff, "job.run_now" if trigger == "manual" else f"job.{trigger}", run,
                 {"job": name, **({"arguments": arguments} if arguments else {})},
                 actor_label=None if staff else f"job:{name}")
    return run


def run_job(name: str, *, trigger: str = "schedule",
            progress: Callable[[int, int], None] | None = None,
            queued_id: int | None = None) -> JobRun | None:
    """Run a job once under its lease and record the run; None when another holder runs it.

    ``queued_id`` is a run asked for earlier (Run now), which this run fulfils.
    ``progress(done, total)`` is called as a job that reports progress works through items.
    """
    job = registry()[name]
    holder = holder_id()
    lease = job.lease or _seconds("JOB_LEASE_SECONDS", LEASE)
    if not acquire_lease(name, holder, lease):
        log.info("job %s is running elsewhere; skipped", name)
        return None
    # Holding the lease, any run still marked running was abandoned by a dead holder.
    _take_over(name, holder)
    run = db.session.get(JobRun, queued_id) if queued_id is not None else None
    if queued_id is not None and (run is None or run.status != JobStatus.QUEUED):
        db.session.commit()
        release_lease(name, holder)  # another runner fulfilled it meanwhile
        return None
    if run is None:
        run = JobRun(job=name, trigger=trigger)
        db.session.add(run)
    run.status, run.started_at, run.heartbeat_at, run.holder = (
        JobStatus.RUNNING, utcnow(), utcnow(), holder)
    db.session.flush()
    # Read the id before committing: reading it after would begin a new transaction (on
    # SQLite, a write lock) that stayed open through the whole job body.
    run_id, arguments = run.id, dict(run.arguments or {})
    db.session.commit()
    heartbeat = _Heartbeat(current_app._get_current_object(),  # type: ignore[attr-defined]
                           name, holder, run_id, lease,
                           _seconds("JOB_HEARTBEAT_SECONDS", HEARTBEAT))
    heartbeat.start()
    token = _progress.set(progress)
    try:
        details = job.body(**arguments) or {}
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
        heartbeat.stop()
    run.finished_at = utcnow()
    db.session.commit()
    release_lease(name, holder)
    return run


# --------------------------------------------------------------------------- the runner
#
# A job runner is a process with the scheduler: ``flask jobs run`` in production, or the
# web process under ``make run``. Besides the timetable it records that it is alive,
# runs queued runs (Run now) within seconds, and queues a recovery run for every job
# whose run was left "running" by a process that died.

#: how often a runner looks for queued runs and says it is alive (seconds)
RUNNER_POLL = 2


def runner_alive(*, now=None) -> bool:
    """Whether some job runner was seen recently."""
    cutoff = (now or utcnow()) - RUNNER_SILENCE
    return db.session.scalar(select(JobRunner.holder).where(JobRunner.seen_at >= cutoff)
                             .limit(1)) is not None


def last_runner() -> JobRunner | None:
    """The job runner seen most recently, if any ever was."""
    return db.session.scalar(select(JobRunner).order_by(JobRunner.seen_at.desc()).limit(1))


def runner_seen() -> None:
    """Record that this process's runner is alive (committed)."""
    holder, now = process_id(), utcnow()
    row = db.session.get(JobRunner, holder)
    if row is None:
        db.session.add(JobRunner(holder=holder, started_at=now, seen_at=now))
    else:
        row.seen_at = now
    db.session.execute(delete(JobRunner).where(JobRunner.seen_at < now - timedelta(days=1)))
    db.session.commit()


def recover_abandoned() -> list[str]:
    """Queue a recovery run for each job whose running run lost its holder; their names."""
    now = utcnow()
    recovered = []
    for name, arguments in db.session.execute(select(JobRun.job, JobRun.arguments).where(
            JobRun.status == JobStatus.RUNNING).order_by(JobRun.id)).all():
        lock = db.session.get(JobLock, name)
        if lock is not None and lock.lease_until > now and not holder_is_gone(lock.holder):
            continue
        if name in registry():  # the recovery run carries on what the lost one was asked
            request_run(name, staff=None, trigger="recovery", arguments=arguments)
            if name not in recovered:
                recovered.append(name)
    db.session.commit()
    return recovered


def run_queued() -> int:
    """Run every queued run whose job is free, oldest first; how many ran."""
    done = 0
    queued = db.session.execute(select(JobRun.id, JobRun.job, JobRun.trigger).where(
        JobRun.status == JobStatus.QUEUED).order_by(JobRun.id)).all()
    db.session.commit()
    for run_id, name, trigger in queued:
        # A job body may roll back or clear the session: each queued run is read afresh.
        if name in registry() and run_job(name, trigger=trigger, queued_id=run_id) is not None:
            done += 1
    return done


def _runner_tick(app: Flask) -> None:
    with app.app_context():
        try:
            runner_seen()
            for name in recover_abandoned():
                log.warning("job %s: its run was abandoned; a recovery run is queued", name)
        finally:
            db.session.remove()


def _run_queued_in_app(app: Flask) -> None:
    with app.app_context():
        try:
            run_queued()
        finally:
            db.session.remove()


# --------------------------------------------------------------------------- the scheduler


def build_scheduler(app: Flask, scheduler_class=BackgroundScheduler):
    """An APScheduler with every job registered under its fixed id."""
    scheduler = scheduler_class(timezone="UTC")
    for job in registry().values():
        scheduler.add_job(
            _run_in_app, job.trigger(), args=(app, job.name), id=job.name, name=job.title,
            replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=3600,
        )
    for body, title in ((_runner_tick, "Runner: alive, recover abandoned runs"),
                        (_run_queued_in_app, "Runner: queued runs (Run now)")):
        scheduler.add_job(body, IntervalTrigger(seconds=RUNNER_POLL), args=(app,),
                          id=body.__name__, name=title, replace_existing=True, coalesce=True,
                          max_instances=1, next_run_time=utcnow())
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
