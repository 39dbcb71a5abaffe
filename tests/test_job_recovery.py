"""Jobs recover by themselves: dead holders lose their lease, live ones keep it, and Run
now is a queued run the job runner picks up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import jobs
from backoffice.clock import utcnow
from backoffice.extensions import db
from backoffice.models import AuditEvent, JobLock, JobRun, JobStatus
from tests.conftest import make_staff
from tests.test_renewals_concurrency import (
    CHUNK,
    COUNT,
    FIRST_END,
    _bulk_due_subscriptions,
    _renewal_stats,
)

PROJECT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def quick_job(monkeypatch):
    """A registry with one job, "quick", whose body counts its runs."""
    ran = []
    registry = {"quick": jobs.Job("quick", "Quick", lambda: ran.append(1) or {"done": 1},
                                  lambda: None, "never")}
    monkeypatch.setattr(jobs, "registry", lambda: registry)
    return ran


def _running_run_of(holder: str, lease_until: datetime) -> None:
    db.session.add(JobRun(job="quick", started_at=T0, status=JobStatus.RUNNING, holder=holder))
    db.session.add(JobLock(job="quick", holder=holder, lease_until=lease_until))
    db.session.commit()


def test_a_holder_on_another_host_keeps_its_lease_until_it_runs_out(ctx, quick_job):
    with time_machine.travel(T0, tick=False):
        _running_run_of("far-host:4242:1", T0 + jobs.LEASE)
        assert jobs.run_job("quick") is None
    with time_machine.travel(T0 + jobs.LEASE - timedelta(seconds=1), tick=False):
        assert jobs.run_job("quick") is None
    with time_machine.travel(T0 + jobs.LEASE + timedelta(seconds=1), tick=False):
        taker = jobs.run_job("quick")
    assert taker is not None and taker.status == JobStatus.SUCCEEDED and quick_job == [1]
    abandoned = ctx.scalar(select(JobRun).where(JobRun.status == JobStatus.ABANDONED))
    assert abandoned.holder == "far-host:4242:1" and abandoned.taken_over_by == taker.holder
    assert abandoned.finished_at == T0 + jobs.LEASE + timedelta(seconds=1)


def test_a_holder_on_this_host_whose_process_is_gone_loses_its_lease_at_once(
        ctx, quick_job):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    holder = f"{jobs.socket.gethostname()}:{gone.pid}:1"
    assert jobs.holder_is_gone(holder)
    assert not jobs.holder_is_gone(jobs.holder_id())
    with time_machine.travel(T0, tick=False):
        _running_run_of(holder, T0 + jobs.LEASE)
        taker = jobs.run_job("quick")
    assert taker is not None and quick_job == [1]
    assert ctx.scalar(select(JobRun.taken_over_by).where(
        JobRun.status == JobStatus.ABANDONED)) == taker.holder


def test_a_killed_child_not_yet_reaped_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = f"{jobs.socket.gethostname()}:{child.pid}:1"
    try:
        assert not jobs.holder_is_gone(holder)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not jobs.holder_is_gone(holder):  # a zombie until it is reaped
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        child.wait(timeout=10)


@pytest.mark.commits
def test_a_live_long_run_keeps_its_lease_past_several_lease_lengths(app, appctx,
                                                                      monkeypatch):
    """Lease 1 s, heartbeat every 0.2 s, a body of 3.5 s: others never get the job."""
    monkeypatch.setitem(app.config, "JOB_LEASE_SECONDS", 1)
    monkeypatch.setitem(app.config, "JOB_HEARTBEAT_SECONDS", 0.2)
    started = threading.Event()

    def body():
        started.set()
        time.sleep(3.5)
        return {"done": 1}

    registry = {"long": jobs.Job("long", "Long", body, lambda: None, "never")}
    monkeypatch.setattr(jobs, "registry", lambda: registry)
    finished = []

    def run_long():
        with appctx():
            finished.append(jobs.run_job("long").status)

    long = threading.Thread(target=run_long)
    long.start()
    assert started.wait(10)
    attempts = []
    with appctx():
        while long.is_alive():
            attempts.append(jobs.run_job("long"))  # another thread: another holder
            time.sleep(0.2)
    long.join()
    assert finished == [JobStatus.SUCCEEDED]
    assert len(attempts) >= 10 and set(attempts) == {None}
    with appctx():
        statuses = db.session.scalars(select(JobRun.status)).all()
        assert statuses == [JobStatus.SUCCEEDED]
        assert db.session.scalar(select(JobRun.heartbeat_at)) > db.session.scalar(
            select(JobRun.started_at)) + timedelta(seconds=2)


def test_run_now_queues_once_and_the_runner_runs_it(ctx, quick_job):
    admin = make_staff("admin")
    with time_machine.travel(T0, tick=False):
        queued = jobs.request_run("quick", staff=admin)
        assert jobs.request_run("quick", staff=admin).id == queued.id  # already queued
        ctx.commit()
    assert queued.status == JobStatus.QUEUED and queued.started_at is None and not quick_job
    assert ctx.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "job.run_now")) == 1
    with time_machine.travel(T0 + timedelta(seconds=2), tick=False):
        assert jobs.run_queued() == 1
        assert jobs.run_queued() == 0
    run = ctx.get(JobRun, queued.id)
    assert run.status == JobStatus.SUCCEEDED and run.requested_by.email == "admin@staff.test"
    assert (run.requested_at, run.started_at) == (T0, T0 + timedelta(seconds=2))
    assert quick_job == [1]


def test_a_run_left_running_by_a_dead_holder_is_recovered(ctx, quick_job):
    with time_machine.travel(T0, tick=False):
        _running_run_of("far-host:4242:1", T0 + jobs.LEASE)
        assert jobs.recover_abandoned() == []  # its lease still runs
    with time_machine.travel(T0 + jobs.LEASE + timedelta(seconds=1), tick=False):
        assert jobs.recover_abandoned() == ["quick"]
        assert jobs.run_queued() == 1
    runs = ctx.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert [(r.status, r.trigger) for r in runs] == [
        (JobStatus.ABANDONED, "schedule"), (JobStatus.SUCCEEDED, "recovery")]
    assert quick_job == [1]


def test_the_runner_says_it_is_alive(ctx):
    with time_machine.travel(T0, tick=False):
        assert not jobs.runner_alive()
        jobs.runner_seen()
        assert jobs.runner_alive()
    with time_machine.travel(T0 + jobs.RUNNER_SILENCE + timedelta(seconds=1), tick=False):
        assert not jobs.runner_alive()


#: a job runner's renewal in chunks of CHUNK, slowed down so that it can be killed midway
RENEWAL_RUNNER = """
import sys, time
from datetime import datetime, timezone
import time_machine
from backoffice import create_app, jobs, renewals

real = renewals._process
def slow(*args, **kwargs):
    result = real(*args, **kwargs)
    time.sleep(0.1)  # inside the chunk's transaction, before its commit
    return result
renewals._process = slow
app = create_app({"TESTING": True, "SECRET_KEY": "test", "SCHEDULER_ENABLED": False,
                  "SQLALCHEMY_DATABASE_URI": sys.argv[1], "RENEWAL_CHUNK_SIZE": int(sys.argv[3])})
with time_machine.travel(datetime.fromisoformat(sys.argv[2]), tick=True), app.app_context():
    jobs.run_job("renewals", trigger="cli")
"""


@pytest.mark.postgres
def test_a_renewal_whose_runner_is_killed_is_taken_over_and_renews_each_once(
        ctx, database_url, is_postgres):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    _bulk_due_subscriptions(COUNT)
    moment = datetime(FIRST_END.year, FIRST_END.month, FIRST_END.day, 10, tzinfo=UTC)
    runner = subprocess.Popen([sys.executable, "-c", RENEWAL_RUNNER, database_url,
                               moment.isoformat(), str(CHUNK)], cwd=PROJECT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT)})
    deadline = time.monotonic() + 60
    while _renewal_stats()[0] < 150:
        assert time.monotonic() < deadline, "the renewal never got going"
        time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    charges_at_kill = _renewal_stats()[0]
    assert 150 <= charges_at_kill < COUNT, "killed too late to prove anything"
    assert charges_at_kill % CHUNK == 0  # whole chunks committed, the one in flight not
    db.session.rollback()
    with time_machine.travel(moment + timedelta(minutes=1), tick=True):
        taken_over = utcnow()
        run = jobs.run_job("renewals")  # at once: the lease's holder is gone from this host
    assert run is not None and run.status == JobStatus.SUCCEEDED
    assert run.details["renewed"] == COUNT - charges_at_kill and run.details["failed"] == 0
    assert _renewal_stats() == (COUNT, 2 * COUNT, 1, 2)
    dead = db.session.scalar(select(JobRun).where(JobRun.status == JobStatus.ABANDONED))
    assert dead.holder.split(":")[1] == str(runner.pid)
    assert dead.taken_over_by == run.holder and dead.finished_at >= taken_over


@pytest.fixture
def echo_job(monkeypatch):
    """A registry with one job, "echo", whose body records the arguments of each run."""
    seen: list[dict] = []

    def body(**arguments):
        seen.append(arguments)
        return {"done": 1}

    registry = {"echo": jobs.Job("echo", "Echo", body, lambda: None, "never")}
    monkeypatch.setattr(jobs, "registry", lambda: registry)
    return seen


def test_a_run_queued_with_arguments_passes_them_to_the_body(ctx, echo_job):
    admin = make_staff("admin")
    with time_machine.travel(T0, tick=False):
        november = jobs.request_run("echo", staff=admin, arguments={"month": "2026-11"})
        assert jobs.request_run("echo", staff=admin,
                                arguments={"month": "2026-11"}).id == november.id
        october = jobs.request_run("echo", staff=admin, arguments={"month": "2026-10"})
        plain = jobs.request_run("echo", staff=admin)
        assert len({november.id, october.id, plain.id}) == 3  # other arguments, other runs
        ctx.commit()
        assert jobs.run_queued() == 3
    assert echo_job == [{"month": "2026-11"}, {"month": "2026-10"}, {}]
    details = ctx.scalars(select(AuditEvent.details).where(
        AuditEvent.action == "job.run_now").order_by(AuditEvent.seq)).all()
    assert [d.get("arguments") for d in details] == [{"month": "2026-11"},
                                                     {"month": "2026-10"}, None]


def test_the_recovery_of_a_run_with_arguments_carries_them_on(ctx, echo_job):
    with time_machine.travel(T0, tick=False):
        db.session.add(JobRun(job="echo", started_at=T0, status=JobStatus.RUNNING,
                              holder="far-host:4242:1", arguments={"month": "2026-11"}))
        db.session.add(JobLock(job="echo", holder="far-host:4242:1",
                               lease_until=T0 + jobs.LEASE))
        db.session.commit()
    with time_machine.travel(T0 + jobs.LEASE + timedelta(seconds=1), tick=False):
        assert jobs.recover_abandoned() == ["echo"]
        assert jobs.run_queued() == 1
    runs = ctx.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert [(r.status, r.trigger, r.arguments) for r in runs] == [
        (JobStatus.ABANDONED, "schedule", {"month": "2026-11"}),
        (JobStatus.SUCCEEDED, "recovery", {"month": "2026-11"})]
    assert echo_job == [{"month": "2026-11"}]
