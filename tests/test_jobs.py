"""Jobs: the registry and schedules, leases, run history, monthly invoicing dispatch,
renewal notices, the outbox, the ledger check, the Jobs page and ``flask jobs run-once``."""

from __future__ import annotations

import sys
import types
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import dashboard, jobs, outbox, renewals, subscriptions
from backoffice.clock import utcnow
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    JobLock,
    JobRun,
    JobStatus,
    MonthlyTotal,
    OutboxEmail,
    Subscription,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from tests import factories
from tests.test_renewals import at


def moment(*args) -> time_machine.travel:
    return time_machine.travel(datetime(*args, tzinfo=UTC), tick=False)


# --------------------------------------------------------------------------- registry


def test_registry_schedules():
    registry = jobs.registry()
    assert set(registry) == {"renewals", "monthly_invoices", "renewal_notices", "outbox",
                             "ledger_check", "review_keys"}
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

    def next_fire(name, after=now):
        return registry[name].trigger().get_next_fire_time(None, after)

    assert next_fire("renewals") == datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert next_fire("monthly_invoices") == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert next_fire("monthly_invoices", datetime(2026, 12, 1, 3, 0, 1, tzinfo=UTC)) == \
        datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
    assert next_fire("ledger_check") == datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
    assert next_fire("renewal_notices") == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert next_fire("review_keys") == datetime(2026, 11, 23, 4, 15, tzinfo=UTC)
    assert registry["outbox"].trigger().interval == timedelta(minutes=1)


def test_scheduler_registers_each_job_once_under_its_fixed_id(app):
    scheduler = jobs.build_scheduler(app)
    jobs_again = jobs.build_scheduler(app)  # building twice never duplicates
    runner = ["_run_queued_in_app", "_runner_tick"]  # the runner's own polling
    assert sorted(j.id for j in scheduler.get_jobs()) == sorted([*jobs.registry(), *runner])
    assert len(jobs_again.get_jobs()) == len(jobs.registry()) + len(runner)


def test_previous_month():
    assert jobs.previous_month(date(2026, 12, 1)) == date(2026, 11, 1)
    assert jobs.previous_month(date(2027, 1, 31)) == date(2026, 12, 1)


# --------------------------------------------------------------------------- lease and runs


def test_lease_keeps_to_one_holder_until_released_or_expired(ctx):
    with moment(2026, 11, 22, 8, 0):
        assert jobs.acquire_lease("outbox", "a", timedelta(minutes=10))
        assert not jobs.acquire_lease("outbox", "b", timedelta(minutes=10))
        assert jobs.acquire_lease("outbox", "a", timedelta(minutes=10))  # renewing its own
    with moment(2026, 11, 22, 8, 9, 59):
        assert not jobs.acquire_lease("outbox", "b", timedelta(minutes=10))
    with moment(2026, 11, 22, 8, 10):  # a crashed holder blocks no longer than its lease
        assert jobs.acquire_lease("outbox", "b", timedelta(minutes=10))
        jobs.release_lease("outbox", "b")
        assert jobs.acquire_lease("outbox", "c", timedelta(minutes=10))


def test_run_job_skips_while_another_holder_runs_it(ctx):
    jobs.acquire_lease("ledger_check", "elsewhere:1:1", timedelta(minutes=5))
    assert jobs.run_job("ledger_check") is None
    assert db.session.scalar(select(func.count(JobRun.id))) == 0


def test_holders_differ_per_thread():
    import threading

    seen = []
    thread = threading.Thread(target=lambda: seen.append(jobs.holder_id()))
    thread.start()
    thread.join()
    assert seen[0] != jobs.holder_id()


def test_run_job_records_success_and_failure(ctx, monkeypatch):
    def boom():
        raise ValueError("disk full")

    registry = {
        "ok": jobs.Job("ok", "OK", lambda: {"done": 3, "late": 2}, lambda: None, "never"),
        "bad": jobs.Job("bad", "Bad", boom, lambda: None, "never"),
    }
    monkeypatch.setattr(jobs, "registry", lambda: registry)
    run = jobs.run_job("ok", trigger="cli")
    assert (run.status, run.processed, run.details, run.trigger) == (
        JobStatus.SUCCEEDED, 5, {"done": 3, "late": 2}, "cli")
    assert run.finished_at is not None
    run = jobs.run_job("bad")
    assert run.status == JobStatus.FAILED and run.error.startswith("ValueError: disk full")
    # both leases were given back
    assert all(lock.lease_until <= utcnow() for lock in db.session.scalars(select(JobLock)))


def test_a_run_abandoned_by_a_crashed_process_is_marked_abandoned(ctx, monkeypatch):
    registry = {"ok": jobs.Job("ok", "OK", lambda: {}, lambda: None, "never")}
    monkeypatch.setattr(jobs, "registry", lambda: registry)
    with moment(2026, 11, 22, 8, 0):
        db.session.add(JobRun(job="ok", started_at=utcnow(), status=JobStatus.RUNNING,
                              holder="gone:1:1"))
        db.session.add(JobLock(job="ok", holder="gone:1:1", lease_until=utcnow()))
        db.session.commit()
    with moment(2026, 11, 22, 9, 0):
        taker = jobs.run_job("ok")
    runs = db.session.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert [r.status for r in runs] == [JobStatus.ABANDONED, JobStatus.SUCCEEDED]
    assert runs[0].taken_over_by == taker.holder == jobs.holder_id()
    assert "gone:1:1 stopped before the run finished" in runs[0].error


# --------------------------------------------------------------------------- monthly invoices


@pytest.fixture
def fake_invoicing(monkeypatch):
    """Stand in for backoffice.invoicing.issue_in_chunks and record its calls."""
    calls = []

    def issue_in_chunks(*, month, chunk_size):
        calls.append(month)
        yield 1  # two chunks of one invoice each
        yield 1

    module = sys.modules.get("backoffice.invoicing")
    if module is None:
        module = types.ModuleType("backoffice.invoicing")
        monkeypatch.setitem(sys.modules, "backoffice.invoicing", module)
    monkeypatch.setattr(module, "issue_in_chunks", issue_in_chunks, raising=False)
    return calls


def test_monthly_invoices_job_issues_the_previous_month(ctx, fake_invoicing):
    with moment(2027, 1, 1, 3, 0):
        run = jobs.run_job("monthly_invoices")
    assert fake_invoicing == [date(2026, 12, 1)]
    assert run.status == JobStatus.SUCCEEDED
    assert run.details == {"invoices": 2, "month": "2026-12-01"}


def test_monthly_invoices_job_invoices_last_months_renewal_charges(ctx):
    from backoffice.models import Invoice

    factories.catalog("renewal")
    db.session.commit()
    sub_id = factories.subscribed_on(factories.customer(), start=date(2025, 11, 10)).id
    with at(date(2026, 11, 10)):
        renewals.renew_due_subscriptions()
    with moment(2026, 12, 1, 3, 0):
        run = jobs.run_job("monthly_invoices")
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.details == {"invoices": 1, "month": "2026-11-01"}
    db.session.expire_all()
    charges = db.session.scalars(select(Transaction).where(
        Transaction.subscription_id == sub_id).order_by(Transaction.created_at)).all()
    assert all(t.invoice_id is not None for t in charges)
    assert db.session.scalar(select(func.count(Invoice.id))) == 1
    with moment(2026, 12, 1, 3, 5):  # running again issues nothing
        assert jobs.run_job("monthly_invoices").details["invoices"] == 0


# --------------------------------------------------------------------------- renewals job


@pytest.fixture
def catalog(ctx):
    factories.catalog("renewal")
    db.session.commit()


def test_renewals_job_runs_the_renewal_and_records_counts(ctx, catalog):
    factories.subscribed_on(factories.customer(), start=date(2025, 1, 1))
    factories.subscribed_on(factories.customer("Off"), start=date(2025, 1, 1),
                            auto_renew=False)
    with moment(2026, 1, 1, 1, 0):
        run = jobs.run_job("renewals")
    assert run.details == {"renewed": 1, "expired": 1, "skipped": 0, "failed": 0,
                           "terms_created": 1}
    assert run.processed == 3


# --------------------------------------------------------------------------- renewal notices


def test_renewal_notice_is_queued_30_days_ahead_once_per_term(ctx, catalog):
    customer = factories.customer(admin_email="Admin@Acme.example.com")
    sub = factories.subscribed_on(customer, start=date(2026, 1, 15))  # renews 2027-01-15
    sub_id = sub.id

    with at(date(2026, 12, 15)):  # 31 days ahead: too early
        assert renewals.queue_renewal_notices()["queued"] == 0
    with at(date(2026, 12, 16)):  # 30 days ahead
        assert renewals.queue_renewal_notices()["queued"] == 1
    with at(date(2026, 12, 17)):
        counts = renewals.queue_renewal_notices()
    assert (counts["queued"], counts["already_queued"]) == (0, 1)
    [message] = db.session.scalars(select(OutboxEmail)).all()
    assert message.to == "admin@acme.example.com"
    assert message.subject == f"Subscription #{sub_id} renews automatically on 2027-01-15"
    assert "DV: 10" in message.body
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "subscription.renewal_notice")) == 1

    with at(date(2027, 1, 15)):
        renewals.renew_due_subscriptions()
    with at(date(2027, 12, 16)):  # the next term gets its own notice
        assert renewals.queue_renewal_notices()["queued"] == 1
    assert db.session.scalar(select(func.count(OutboxEmail.id))) == 2


def test_no_renewal_notice_without_an_email_or_a_renewal(ctx, catalog):
    factories.subscribed_on(factories.customer(), start=date(2026, 1, 15))  # partner-administered
    factories.subscribed_on(factories.customer("Off", admin_email="a@off.example.com"),
                            start=date(2026, 1, 15), auto_renew=False)
    suspended = factories.subscribed_on(
        factories.customer("Susp", admin_email="a@susp.example.com"), start=date(2026, 1, 15))
    subscriptions.suspend_subscription(suspended, actor=None)
    db.session.commit()
    with at(date(2026, 12, 20)):
        counts = renewals.queue_renewal_notices()
    assert counts == {"queued": 0, "already_queued": 0, "no_email": 1, "not_renewing": 0,
                      "failed": 0}
    assert db.session.scalar(select(func.count(OutboxEmail.id))) == 0


# --------------------------------------------------------------------------- outbox


def test_outbox_without_smtp_logs_and_marks_sent(ctx):
    db.session.add(OutboxEmail(to="x@example.test", subject="Hi", body="Body"))
    db.session.commit()
    assert jobs.send_outbox() == {"sent": 1, "failed": 0}
    message = db.session.scalar(select(OutboxEmail))
    assert message.sent_at is not None and message.attempts == 1
    assert jobs.send_outbox() == {"sent": 0, "failed": 0}


def test_outbox_retries_with_backoff_and_a_limit(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "SMTP_PORT", 9)  # nothing listens: connection refused
    db.session.add(OutboxEmail(to="x@example.test", subject="Hi", body="Body"))
    db.session.commit()
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        assert jobs.send_outbox() == {"sent": 0, "failed": 1}
        assert jobs.send_outbox() == {"sent": 0, "failed": 0}  # waiting for its next attempt
    for minutes in (11, 40, 100, 300):
        with time_machine.travel(start + timedelta(minutes=minutes * 2), tick=False):
            jobs.send_outbox()
    message = db.session.scalar(select(OutboxEmail))
    assert message.attempts == outbox.MAX_ATTEMPTS and message.sent_at is None
    assert message.last_error
    with time_machine.travel(start + timedelta(days=30), tick=False):
        assert jobs.send_outbox() == {"sent": 0, "failed": 0}  # given up


# --------------------------------------------------------------------------- ledger check


def _over_refund(sub_id: int, *, quantity: int, amount: int) -> None:
    charge = db.session.scalar(select(Transaction).where(Transaction.subscription_id == sub_id))
    line = charge.lines[0]
    refund = Transaction(customer_id=charge.customer_id, subscription_id=sub_id,
                         kind=TransactionKind.REFUND, reason=TransactionReason.REFUND,
                         refunded_transaction_id=charge.id, amount=-amount,
                         currency=charge.currency)
    db.session.add(refund)
    db.session.add(TransactionLine(transaction=refund, certificate_type_id=line.certificate_type_id,
                                   quantity=quantity, amount=-amount, full_amount=-amount,
                                   days_charged=1, days_in_term=1, refunded_line_id=line.id))
    db.session.commit()


def test_ledger_check_run_sums_the_finished_months_once(ctx, catalog):
    with moment(2026, 9, 15, 10, 0):
        factories.subscribed_on(factories.customer(), start=date(2026, 9, 15))
        db.session.commit()
    with moment(2026, 11, 22, 2, 30):
        run = jobs.run_job("ledger_check")
        assert run.details["monthly_totals"] == 1  # September's charges; October had none
        assert run.details["customer_month_totals"] == 1  # the one customer's September
        assert [(t.month, t.kind.value) for t in db.session.scalars(select(MonthlyTotal))] \
            == [(date(2026, 9, 1), "charge")]
        again = jobs.run_job("ledger_check").details
        assert again["monthly_totals"] == again["customer_month_totals"] == 0
        assert dashboard.monthly_series() == dashboard.monthly_series(summaries=False)


def test_ledger_check_finds_lines_refunded_beyond_quantity_or_amount(app, ctx, catalog,
                                                                      client_as):
    # 10 DV, 500.00
    sub_id = factories.subscribed_on(factories.customer(), start=date(2026, 11, 1)).id
    run = jobs.run_job("ledger_check")
    assert run.details["anomalies"] == [] and run.details["lines_checked"] == 1

    _over_refund(sub_id, quantity=10, amount=50000)  # everything, exactly: fine
    assert jobs.run_job("ledger_check").details["anomalies"] == []

    _over_refund(sub_id, quantity=1, amount=1)  # one more certificate and one more cent
    run = jobs.run_job("ledger_check")
    [anomaly] = run.details["anomalies"]
    assert "10 certificates for 50000, but refunded 11 certificates for 50001" in anomaly
    db.session.remove()

    page = client_as("admin").get("/admin/").get_data(as_text=True)
    assert 'data-testid="anomalies"' in page and "refunded 11 certificates" in page


# --------------------------------------------------------------------------- Jobs page


@pytest.mark.parametrize("role", ["support", "finance"])
def test_jobs_page_and_run_now_are_for_admins_only(client_as, role, appctx):
    client = client_as(role)
    assert client.get("/admin/jobs/").status_code == 403
    assert client.post("/admin/jobs/run/outbox").status_code == 403
    with appctx():
        assert db.session.scalar(select(func.count(JobRun.id))) == 0


def test_jobs_page_lists_schedules_next_runs_and_recent_runs(client_as, appctx):
    with moment(2026, 11, 22, 8, 0):
        client = client_as("admin")
        page = client.get("/admin/jobs/").get_data(as_text=True)
    for job in jobs.registry().values():
        assert job.title in page and job.schedule in page
    assert "Dec 1, 2026, 3:00:00\u202fAM UTC" in page  # monthly invoices, next (babel: NNBSP)
    assert "Nov 23, 2026, 1:00:00\u202fAM UTC" in page  # renewals, next
    assert page.count("Never run.") == len(jobs.registry())


def test_dashboard_shows_failed_runs_and_failed_items(client_as, appctx):
    with appctx():
        db.session.add(JobRun(job="outbox", status=JobStatus.FAILED, error="OSError: no route\n"))
        db.session.add(JobRun(job="renewals", status=JobStatus.SUCCEEDED,
                              details={"renewed": 4, "failed": 2}))
        db.session.commit()
    page = client_as("admin").get("/admin/").get_data(as_text=True)
    assert "OSError: no route" in page
    assert "2 item(s) failed" in page


# --------------------------------------------------------------------------- CLI


def test_cli_run_once_shows_progress_and_counts(app, appctx):
    with appctx():
        factories.catalog("renewal")
        for name in ("A", "B"):
            factories.subscribed_on(factories.customer(name=name), start=date(2025, 1, 1))
    with moment(2026, 1, 1, 10, 0):
        result = app.test_cli_runner().invoke(args=["jobs", "run-once", "renewals"])
    assert result.exit_code == 0, result.output
    assert "renewals: 1/2\nrenewals: 2/2\n" in result.output
    assert "renewals: succeeded; {'renewed': 2" in result.output
    with appctx():
        assert db.session.scalar(select(JobRun.trigger)) == "cli"


def test_cli_run_once_unknown_job_fails(app):
    result = app.test_cli_runner().invoke(args=["jobs", "run-once", "nope"])
    assert result.exit_code == 1 and "No job named nope" in result.output


def test_run_now_queues_the_run_returns_at_once_and_the_runner_runs_it(client_as, appctx):
    with appctx():
        factories.catalog("renewal")
        factories.subscribed_on(factories.customer(), start=date(2025, 1, 1))
        factories.subscribed_on(factories.customer("B"), start=date(2025, 1, 1),
                                auto_renew=False)
    with moment(2026, 1, 1, 10, 0):
        client = client_as("admin")  # signed in at the moved time: sessions are timestamped
        with appctx():
            jobs.runner_seen()
        response = client.post("/admin/jobs/run/renewals")
        assert response.status_code == 303
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "is queued; the job runner starts it within seconds" in page
        assert "waiting for the job runner" in page and 'http-equiv="refresh"' in page
        with appctx():
            run = db.session.scalar(select(JobRun))
            assert (run.status, run.trigger, run.started_at) == (JobStatus.QUEUED, "manual",
                                                                 None)
            assert run.requested_by.email == "admin@staff.test"
            event = db.session.scalar(select(AuditEvent).where(
                AuditEvent.action == "job.run_now"))
            assert event.actor_label == "admin@staff.test" and event.details["job"] == "renewals"
            assert db.session.scalar(select(func.count(Subscription.id)).where(
                Subscription.end_date == date(2027, 1, 1))) == 0  # nothing ran in the request
            assert jobs.run_queued() == 1
        page = client.get("/admin/jobs/").get_data(as_text=True)
    assert "renewed 1, expired 1, skipped 0, failed 0, terms created 1" in page
    assert 'http-equiv="refresh"' not in page
    with appctx():
        run = db.session.scalar(select(JobRun))
        assert (run.status, run.details["renewed"]) == (JobStatus.SUCCEEDED, 1)
        assert db.session.scalar(select(Subscription.end_date).where(
            Subscription.auto_renew.is_(True))) == date(2027, 1, 1)


def test_run_now_twice_queues_one_run_and_unknown_jobs_are_404(client_as, appctx):
    client = client_as("admin")
    assert client.post("/admin/jobs/run/nope").status_code == 404
    client.post("/admin/jobs/run/outbox")
    again = client.post("/admin/jobs/run/outbox", follow_redirects=True).get_data(as_text=True)
    assert "is already queued" in again
    with appctx():
        assert db.session.scalar(select(func.count(JobRun.id))) == 1
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "job.run_now")) == 1


def test_run_now_with_no_runner_alive_says_so(client_as, appctx):
    client = client_as("admin")
    page = client.post("/admin/jobs/run/outbox", follow_redirects=True).get_data(as_text=True)
    assert "no job runner has been seen for 30 seconds" in page
    assert 'data-testid="no-runner"' in page


def test_a_queued_ledger_check_runs_and_a_queued_failing_job_says_why(client_as, appctx,
                                                                     monkeypatch):
    def broken():
        db.session.expunge_all()  # what the ledger check's chain walk does, then it fails
        raise ValueError("disk full")

    real = jobs.registry()
    registry = {**real, "outbox": jobs.Job("outbox", real["outbox"].title, broken,
                                           real["outbox"].trigger, "every minute")}
    monkeypatch.setattr(jobs, "registry", lambda: registry)
    monkeypatch.setattr("backoffice.views.system.registry", lambda: registry)
    with appctx():
        factories.catalog("renewal")
        factories.subscribed_on(factories.customer(), start=date(2026, 1, 1))
    client = client_as("admin")
    for name in ("ledger_check", "outbox"):
        assert client.post(f"/admin/jobs/run/{name}").status_code == 303
    with appctx():
        assert jobs.run_queued() == 2
    page = client.get("/admin/jobs/").get_data(as_text=True)
    assert "anomalies 0" in page
    assert "ValueError: disk full" in page
    with appctx():
        statuses = dict(db.session.execute(select(JobRun.job, JobRun.status)).all())
        assert statuses == {"ledger_check": JobStatus.SUCCEEDED, "outbox": JobStatus.FAILED}
