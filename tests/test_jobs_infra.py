"""Job infrastructure: the lease, run records, the email outbox and the ledger self-check."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from backoffice import accounts, checks, jobs, outbox
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    JobLock,
    JobRun,
    JobStatus,
    OutboxEmail,
    Profile,
)
from tests.conftest import audit_guard_lifted, make_staff

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def _runs(session) -> list[JobRun]:
    return list(session.scalars(sa.select(JobRun).order_by(JobRun.id)))


# --------------------------------------------------------------------------- the lease


def test_live_lease_keeps_other_holders_out_until_it_expires(ctx):
    with time_machine.travel(T0, tick=False):
        assert jobs.acquire_lease("outbox", "host-a:1", LEASE) is True
        assert jobs.acquire_lease("outbox", "host-b:2", LEASE) is False
    with time_machine.travel(T0 + LEASE - timedelta(seconds=1), tick=False):
        assert jobs.acquire_lease("outbox", "host-b:2", LEASE) is False
    with time_machine.travel(T0 + LEASE, tick=False):
        assert jobs.acquire_lease("outbox", "host-b:2", LEASE) is True
        lock = ctx.get(JobLock, "outbox")
        assert lock.holder == "host-b:2" and lock.lease_until == T0 + 2 * LEASE
        assert jobs.acquire_lease("outbox", "host-a:1", LEASE) is False


def test_the_same_holder_renews_its_lease(ctx):
    with time_machine.travel(T0, tick=False):
        assert jobs.acquire_lease("outbox", "host-a:1", LEASE) is True
    with time_machine.travel(T0 + timedelta(minutes=4), tick=False):
        assert jobs.acquire_lease("outbox", "host-a:1", LEASE) is True
        assert ctx.get(JobLock, "outbox").lease_until == T0 + timedelta(minutes=14)
    with time_machine.travel(T0 + timedelta(minutes=12), tick=False):
        assert jobs.acquire_lease("outbox", "host-b:2", LEASE) is False


def test_leases_are_per_job(ctx):
    assert jobs.acquire_lease("outbox", "host-a:1", LEASE) is True
    assert jobs.acquire_lease("ledger_check", "host-b:2", LEASE) is True


def test_release_lets_the_next_holder_in_at_once(ctx):
    assert jobs.acquire_lease("outbox", "host-a:1", LEASE) is True
    jobs.release_lease("outbox", "host-b:2")  # not the holder: nothing happens
    assert jobs.acquire_lease("outbox", "host-b:2", LEASE) is False
    jobs.release_lease("outbox", "host-a:1")
    assert jobs.acquire_lease("outbox", "host-b:2", LEASE) is True


@pytest.mark.postgres
def test_only_one_of_many_simultaneous_holders_gets_the_lease(app, is_postgres):
    if not is_postgres:
        pytest.skip("PostgreSQL only")
    holders = [f"host-{n}:1" for n in range(4)]
    barrier = threading.Barrier(len(holders))
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def contend(holder: str) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                results[holder] = jobs.acquire_lease("race", holder, LEASE)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=contend, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(results.values()) == [False, False, False, True]
    winner = next(h for h, won in results.items() if won)
    with app.app_context():
        assert db.session.get(JobLock, "race").holder == winner
        db.session.remove()


# --------------------------------------------------------------------------- run_job


def test_run_job_records_the_run_and_releases_the_lease(appctx):
    with appctx(), time_machine.travel(T0, tick=False):
        run = jobs.run_job("ledger_check", trigger="manual")
        assert run.status == JobStatus.SUCCEEDED
        assert run.trigger == "manual" and run.holder == jobs.holder_id()
        assert run.started_at == T0 and run.finished_at == T0
        assert run.details["profiles_checked"] == 0 and run.details["anomalies"] == []
        assert run.error == ""
        # released: another process may run it straight away
        assert jobs.acquire_lease("ledger_check", "elsewhere:9", LEASE) is True
    with appctx() as session:
        (stored,) = _runs(session)
        assert stored.status == JobStatus.SUCCEEDED and stored.job == "ledger_check"


def test_run_job_records_a_failure(appctx, monkeypatch):
    real = jobs.registry()

    def broken_body():
        db.session.add(OutboxEmail(to="x@example.com", subject="half", body="written"))
        db.session.flush()
        raise ValueError("the ledger exploded")

    monkeypatch.setattr(jobs, "registry", lambda: {
        **real, "outbox": dataclasses.replace(real["outbox"], body=broken_body)})
    with appctx():
        run = jobs.run_job("outbox")
        assert run.status == JobStatus.FAILED
        assert run.error.startswith("ValueError: the ledger exploded")
        assert "Traceback" in run.error
        assert run.finished_at is not None
        assert jobs.acquire_lease("outbox", "elsewhere:9", LEASE) is True
    with appctx() as session:
        (stored,) = _runs(session)
        assert stored.status == JobStatus.FAILED
        # what the body wrote before failing was rolled back
        assert session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 0


def test_run_job_skips_when_another_holder_runs_it(appctx):
    with appctx():
        assert jobs.acquire_lease("ledger_check", "other-host:1", LEASE) is True
        assert jobs.run_job("ledger_check") is None
    with appctx() as session:
        assert _runs(session) == []
        assert session.get(JobLock, "ledger_check").holder == "other-host:1"


def test_every_registered_job_has_a_trigger():
    registry = jobs.registry()
    assert {"outbox", "ledger_check"} <= set(registry)
    for name, job in registry.items():
        assert job.name == name and job.trigger() is not None
        assert job.lease is None  # every job keeps LEASE alive with its heartbeat


# --------------------------------------------------------------------------- outbox


def _queue(session, count: int = 2) -> list[int]:
    messages = [OutboxEmail(to=f"user{n}@example.com", subject=f"Hello {n}", body="Body")
                for n in range(count)]
    session.add_all(messages)
    session.commit()
    return [m.id for m in messages]


def test_outbox_without_smtp_host_logs_and_marks_sent(app, appctx, monkeypatch, caplog):
    monkeypatch.setitem(app.config, "SMTP_HOST", "")
    # Alembic's logging setup (run by the migrations) switches existing loggers off
    monkeypatch.setattr(jobs.log, "disabled", False)
    with appctx() as session:
        ids = _queue(session)
    with appctx() as session, time_machine.travel(T0, tick=False):
        caplog.set_level("INFO", logger="backoffice.jobs")
        assert jobs.send_outbox() == {"sent": 2, "failed": 0}
        assert "email to user0@example.com: Hello 0" in caplog.text
    with appctx() as session:
        for message_id in ids:
            message = session.get(OutboxEmail, message_id)
            assert message.sent_at == T0 and message.attempts == 1
        # nothing is sent twice
        assert jobs.send_outbox() == {"sent": 0, "failed": 0}


def test_outbox_backs_off_and_gives_up_when_smtp_refuses(app, appctx, monkeypatch):
    # nothing listens on port 1: the connection is refused at once
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "SMTP_PORT", 1)
    with appctx() as session:
        (message_id,) = _queue(session, 1)
    now = T0
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        with appctx() as session, time_machine.travel(now, tick=False):
            assert jobs.send_outbox() == {"sent": 0, "failed": 1}
            message = session.get(OutboxEmail, message_id)
            assert message.attempts == attempt
            assert message.sent_at is None
            assert message.last_error  # e.g. "[Errno 111] Connection refused"
            assert message.next_attempt_at == now + timedelta(minutes=5 * 2 ** attempt)
            next_try = message.next_attempt_at
        # not due again before its time
        with appctx(), time_machine.travel(next_try - timedelta(seconds=1), tick=False):
            assert jobs.send_outbox() == {"sent": 0, "failed": 0}
        now = next_try
    # given up: even much later it is not tried again
    with appctx() as session, time_machine.travel(now + timedelta(days=30), tick=False):
        assert jobs.send_outbox() == {"sent": 0, "failed": 0}
        assert session.get(OutboxEmail, message_id).attempts == outbox.MAX_ATTEMPTS


# --------------------------------------------------------------------------- ledger check


@pytest.fixture
def profiles(appctx):
    """Two profiles with credit, committed; returns their ids."""
    with appctx() as session:
        finance = make_staff("finance")
        rich = accounts.create_profile(email="rich@example.com", name="Rich")
        poor = accounts.create_profile(email="poor@example.com", name="Poor")
        accounts.add_credit(rich, 5000, memo="top-up", actor=finance)
        accounts.add_credit(rich, -1200, memo="correction", actor=finance)
        session.commit()
        return {"rich": rich.id, "poor": poor.id}


def test_ledger_check_finds_nothing_on_consistent_data(appctx, profiles):
    with appctx() as session:
        assert session.get(Profile, profiles["rich"]).credit_balance == 3800
        result = checks.ledger_check()
        assert result["profiles_checked"] == 2 and result["anomalies"] == []


def test_ledger_check_reports_a_balance_changed_behind_the_ledger(appctx, profiles):
    with appctx() as session:
        session.execute(sa.update(Profile.__table__)
                        .where(Profile.__table__.c.id == profiles["poor"])
                        .values(credit_balance=700))
        session.commit()
        result = checks.ledger_check()
    assert result["anomalies"] == ["profile poor@example.com: balance 700 but ledger sums to 0"]


def test_ledger_check_reports_a_broken_audit_chain(appctx, profiles):
    with appctx() as session:
        with audit_guard_lifted(session.connection()):
            session.execute(sa.update(AuditEvent.__table__)
                            .where(AuditEvent.__table__.c.seq == 2).values(action="forged"))
        session.commit()
        anomalies = checks.ledger_check()["anomalies"]
    assert anomalies == ["audit event 2: content does not match its hash"]


def test_ledger_check_run_records_anomalies(appctx, profiles):
    with appctx() as session:
        session.execute(sa.update(Profile.__table__)
                        .where(Profile.__table__.c.id == profiles["rich"])
                        .values(credit_balance=1))
        session.commit()
        run = jobs.run_job("ledger_check")
        assert run.details["anomalies"] == [
            "profile rich@example.com: balance 1 but ledger sums to 3800"]


# --------------------------------------------------------------------------- CLI


def test_jobs_run_once_outbox_command(app, appctx, monkeypatch):
    monkeypatch.setitem(app.config, "SMTP_HOST", "")
    with appctx() as session:
        (message_id,) = _queue(session, 1)
    result = app.test_cli_runner().invoke(args=["jobs", "run-once", "outbox"])
    assert result.exit_code == 0, result.output
    assert "outbox: succeeded" in result.output
    with appctx() as session:
        assert session.get(OutboxEmail, message_id).sent_at is not None
        (run,) = _runs(session)
        assert run.trigger == "cli" and run.details == {"sent": 1, "failed": 0}


def test_jobs_run_once_unknown_job_exits_1(app, appctx):
    result = app.test_cli_runner().invoke(args=["jobs", "run-once", "nope"])
    assert result.exit_code == 1
    assert "No job named nope" in result.output
    with appctx() as session:
        assert _runs(session) == []


def test_jobs_run_once_refuses_while_another_process_runs_it(app, appctx):
    with appctx():
        jobs.acquire_lease("outbox", "other-host:1", LEASE)
    result = app.test_cli_runner().invoke(args=["jobs", "run-once", "outbox"])
    assert result.exit_code == 1
    assert "running in another process" in result.output


def test_jobs_list_command(app):
    result = app.test_cli_runner().invoke(args=["jobs", "list"])
    assert result.exit_code == 0
    assert "outbox" in result.output and "ledger_check" in result.output
