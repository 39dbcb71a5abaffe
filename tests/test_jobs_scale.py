"""Jobs at set speed: renewal and monthly invoicing in chunks (DESIGN.md, "Jobs").

- a chunk costs a fixed number of statements, whatever its size (counted, not timed);
- a crash in the middle of a chunk loses that chunk only, and the next run carries on;
- two renewals at once on overlapping chunks (PostgreSQL, real threads) renew each
  subscription once, and the audit chain stays whole;
- the monthly invoices page lists a sample and totals, with no list of ids.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest
import time_machine
from dateutil.relativedelta import relativedelta
from sqlalchemy import func, insert, select

from backoffice import audit, invoicing, jobs, renewals
from backoffice.audit import verify_chain
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    CertificateType,
    Counter,
    Customer,
    Invoice,
    InvoiceLine,
    Subscription,
    SubscriptionProduct,
    SubscriptionStatus,
    SubscriptionTerm,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from backoffice.renewals import renew_due_subscriptions
from tests import factories
from tests.conftest import audit_guard_lifted
from tests.queries import counted_statements
from tests.test_renewals_concurrency import FIRST_END, _bulk_due_subscriptions

NOVEMBER = date(2026, 11, 1)
DEC_1 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


class Crash(BaseException):
    """Stands for the process dying: no ``except Exception`` catches it."""


def _renewal_counts() -> tuple[int, int, int]:
    """(renewal charges, terms, subscriptions renewed more than once)."""
    charges = db.session.scalar(select(func.count(Transaction.id)).where(
        Transaction.reason == TransactionReason.RENEWAL))
    terms = db.session.scalar(select(func.count(SubscriptionTerm.id)))
    twice = db.session.scalar(select(func.count()).select_from(
        select(Transaction.subscription_id).where(Transaction.reason == TransactionReason.RENEWAL)
        .group_by(Transaction.subscription_id).having(func.count() > 1).subquery()))
    return charges, terms, twice


def _renewal_statements(count: int) -> int:
    _bulk_due_subscriptions(count)
    with counted_statements() as seen:
        counts = renew_due_subscriptions(today=FIRST_END, chunk_size=count)
    assert counts["renewed"] == count and counts["failed"] == 0
    assert verify_chain() == []
    return len(seen)


def _start_again() -> None:
    """Empty every table and zero the counters, as a fresh database (inside the test's
    rolled-back transaction)."""
    db.session.rollback()
    with audit_guard_lifted(db.session.connection()):
        for table in reversed(db.metadata.sorted_tables):
            if table.name != "counter":
                db.session.execute(table.delete())
    db.session.execute(Counter.__table__.update().values(value=0))


# --------------------------------------------------------------------------- renewal


def test_a_chunk_of_1000_renewals_costs_the_statements_of_a_chunk_of_10(ctx):
    small = _renewal_statements(10)
    _start_again()
    large = _renewal_statements(1000)
    # 1,000 subscriptions: 1,000 terms, charges and events and 2,000 lines, written in
    # multi-row INSERTs of up to 1,000 rows: one more statement for the lines at most.
    assert small <= 25
    assert large <= small + 2, (small, large)


def test_a_crash_mid_chunk_loses_that_chunk_only_and_the_next_run_carries_on(ctx,
                                                                             monkeypatch):
    _bulk_due_subscriptions(35)
    ids = db.session.scalars(select(Subscription.id).order_by(Subscription.id)).all()
    events_before = db.session.scalar(select(func.count(AuditEvent.id)))
    real = renewals._renew_one_term
    planned = []

    def dies_on_the_15th(subscription, rows):
        planned.append(subscription.id)
        if len(planned) == 15:
            raise Crash
        real(subscription, rows)

    monkeypatch.setattr(renewals, "_renew_one_term", dies_on_the_15th)
    with pytest.raises(Crash):
        renew_due_subscriptions(today=FIRST_END, chunk_size=10)
    db.session.rollback()  # what the database does when the connection drops
    # The first chunk committed; the second, in flight, left nothing behind.
    assert _renewal_counts() == (10, 35 + 10, 0)
    assert db.session.scalar(select(func.count(AuditEvent.id))) == events_before + 10
    renewed = db.session.scalars(select(Transaction.subscription_id).where(
        Transaction.reason == TransactionReason.RENEWAL)).all()
    assert sorted(renewed) == ids[:10]
    assert verify_chain() == []

    monkeypatch.setattr(renewals, "_renew_one_term", real)
    counts = renew_due_subscriptions(today=FIRST_END, chunk_size=10)
    assert counts == {"renewed": 25, "expired": 0, "skipped": 0, "failed": 0,
                      "terms_created": 25}
    assert _renewal_counts() == (35, 70, 0)
    assert verify_chain() == []
    seqs = db.session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
    assert seqs == list(range(1, len(seqs) + 1))


def test_an_exception_on_one_item_rolls_back_its_chunk_which_is_redone_one_by_one(
        ctx, monkeypatch):
    _bulk_due_subscriptions(30)
    ids = db.session.scalars(select(Subscription.id).order_by(Subscription.id)).all()
    bad = ids[14]  # in the second chunk of ten
    real = renewals._renew_one_term
    chunks = []
    real_process = renewals._process

    def watch(chunk, as_of):
        chunks.append([due.id for due in chunk])
        return real_process(chunk, as_of)

    def fails_for_one(subscription, rows):
        if subscription.id == bad:
            raise RuntimeError("bad data")
        real(subscription, rows)

    monkeypatch.setattr(renewals, "_renew_one_term", fails_for_one)
    monkeypatch.setattr(renewals, "_process", watch)
    counts = renew_due_subscriptions(today=FIRST_END, chunk_size=10)
    assert counts == {"renewed": 29, "expired": 0, "skipped": 0, "failed": 1,
                      "terms_created": 29}
    # chunk 1 whole; chunk 2 whole (rolled back), then its ten one by one; chunk 3 whole
    assert chunks == [ids[:10], ids[10:20], *([i] for i in ids[10:20]), ids[20:]]
    assert _renewal_counts() == (29, 30 + 29, 0)
    assert db.session.get(Subscription, bad).end_date == FIRST_END
    assert verify_chain() == []


def test_progress_is_reported_for_each_subscription_as_its_chunk_commits(ctx):
    _bulk_due_subscriptions(25)
    seen = []
    renew_due_subscriptions(today=FIRST_END, chunk_size=10,
                            progress=lambda done, total: seen.append((done, total)))
    assert seen == [(n, 25) for n in range(1, 26)]


@pytest.mark.postgres
def test_two_threads_on_overlapping_chunks_renew_each_subscription_once(
        appctx, is_postgres, monkeypatch):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    count = 400
    with appctx():
        _bulk_due_subscriptions(count)
    real = renewals._process

    def slow(chunk, as_of):
        result = real(chunk, as_of)
        time.sleep(0.02)  # hold the chunk's locks a moment, so the threads overlap
        return result

    monkeypatch.setattr(renewals, "_process", slow)
    start = threading.Barrier(2)
    results: list[dict] = []
    errors: list[BaseException] = []

    def runner():
        try:
            with appctx():
                start.wait(10)
                results.append(renew_due_subscriptions(today=FIRST_END, chunk_size=20))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sum(r["renewed"] for r in results) == count
    assert all(r["renewed"] > 0 for r in results), f"the threads did not overlap: {results}"
    assert sum(r["failed"] for r in results) == 0
    with appctx():
        assert _renewal_counts() == (count, 2 * count, 0)
        assert db.session.scalars(select(Subscription.end_date).distinct()).all() == [
            FIRST_END + relativedelta(months=1)]
        assert verify_chain() == []


@pytest.mark.postgres
def test_audit_batches_and_single_events_from_many_threads_chain_without_gaps(
        appctx, is_postgres):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    errors: list[BaseException] = []

    def writer(n: int):
        try:
            with appctx():
                for round_ in range(5):
                    if n % 2:
                        audit.record_many(None, [
                            audit.Entry("test.batch", "Thread", str(n), {"i": i, "r": round_})
                            for i in range(50)], actor_label="job:test")
                    else:
                        audit.record(None, "test.single", f"thread-{n}", {"r": round_})
                    time.sleep(0.005)
                    db.session.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with appctx():
        assert verify_chain() == []
        seqs = db.session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert seqs == list(range(1, 3 * 5 * 50 + 3 * 5 + 1))
        assert db.session.scalar(select(Counter.value).where(Counter.name == "audit")) == len(seqs)


# --------------------------------------------------------------------------- invoicing


def _november_customers(count: int, *, first: int = 0) -> list[int]:
    """``count`` customers (numbered from ``first``), each with one November charge of two
    lines, by Core inserts."""
    if db.session.scalar(select(SubscriptionProduct)) is None:
        factories.catalog("billing")
    product = db.session.scalar(select(SubscriptionProduct))
    dv, ov = (db.session.scalar(select(CertificateType.id).where(CertificateType.code == code))
              for code in ("DV", "OV"))
    created = datetime(2026, 11, 10, tzinfo=UTC)
    customers = db.session.scalars(
        insert(Customer).returning(Customer.id, sort_by_parameter_order=True),
        [{"company_name": f"Customer {n:05d}", "address1": "1 Main Street",
          "city": "Springfield", "postal_code": "12345", "country": "US",
          "administrative_responsibility": "partner", "currency": "USD",
          "created_at": created} for n in range(first, first + count)]).all()
    subscriptions = db.session.scalars(
        insert(Subscription).returning(Subscription.id, sort_by_parameter_order=True),
        [{"customer_id": c, "product_id": product.id, "term_months": 12,
          "start_date": date(2026, 11, 10), "end_date": date(2027, 11, 10),
          "auto_renew": False, "status": SubscriptionStatus.ACTIVE, "created_at": created}
         for c in customers]).all()
    charges = db.session.scalars(
        insert(Transaction).returning(Transaction.id, sort_by_parameter_order=True),
        [{"customer_id": c, "subscription_id": s, "kind": TransactionKind.CHARGE,
          "reason": TransactionReason.NEW_SUBSCRIPTION, "amount": 22000, "currency": "USD",
          "created_at": created} for c, s in zip(customers, subscriptions, strict=True)]).all()
    db.session.execute(insert(TransactionLine), [
        {"transaction_id": t, "certificate_type_id": type_id, "quantity": 1,
         "amount": amount, "full_amount": amount, "days_charged": 365, "days_in_term": 365,
         "refunded_quantity": 0, "refunded_amount": 0}
        for t in charges for type_id, amount in ((dv, 10000), (ov, 12000))])
    db.session.commit()
    return list(customers)


def _invoicing_statements(count: int) -> int:
    _november_customers(count)
    with time_machine.travel(DEC_1, tick=False), counted_statements() as seen:
        issued = sum(invoicing.issue_in_chunks(month=NOVEMBER, chunk_size=count))
    assert issued == count
    return len(seen)


def test_a_chunk_of_1000_invoices_costs_the_statements_of_a_chunk_of_10(ctx):
    small = _invoicing_statements(10)
    _start_again()
    large = _invoicing_statements(1000)
    assert small <= 25
    assert large <= small + 2, (small, large)


def test_the_invoicing_job_commits_per_chunk_and_resumes_after_a_crash(app, ctx, monkeypatch):
    customers = _november_customers(25)
    monkeypatch.setitem(app.config, "INVOICE_CHUNK_SIZE", 10)
    real = invoicing._issue_chunk
    calls = []

    def dies_in_the_third_chunk(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 3:
            raise Crash  # after writing, before the job's commit
        return result

    monkeypatch.setattr(invoicing, "_issue_chunk", dies_in_the_third_chunk)
    with time_machine.travel(DEC_1, tick=False):
        with pytest.raises(Crash):
            jobs.issue_invoices()
        db.session.rollback()
        invoiced = db.session.scalars(select(Invoice.customer_id).order_by(Invoice.id)).all()
        assert invoiced == customers[:20]  # two chunks committed, the third rolled back
        assert db.session.scalar(select(func.count(Transaction.id)).where(
            Transaction.invoice_id.is_not(None))) == 20
        monkeypatch.setattr(invoicing, "_issue_chunk", real)
        assert jobs.issue_invoices() == {"invoices": 5, "month": "2026-11-01"}
        assert jobs.issue_invoices() == {"invoices": 0, "month": "2026-11-01"}
    invoices = db.session.scalars(select(Invoice).order_by(Invoice.number)).all()
    assert [i.customer_id for i in invoices] == customers
    assert [i.number for i in invoices] == [f"INV-2026-{n:06d}" for n in range(1, 26)]
    assert {i.total for i in invoices} == {22000}
    assert db.session.scalar(select(func.count(InvoiceLine.id))) == 50
    assert db.session.scalar(select(func.count(Transaction.id)).where(
        Transaction.invoice_id.is_(None))) == 0
    [first_line, second_line] = invoices[0].lines
    assert first_line.description.startswith("Domain Validated (DV), new subscription")
    assert (second_line.position, second_line.amount) == (2, 12000)
    assert verify_chain() == []


@pytest.mark.clock(DEC_1)
def test_the_monthly_invoices_page_shows_a_sample_and_totals_without_a_list_of_ids(
        client_as, appctx):
    with appctx():
        _november_customers(150)
    client = client_as("finance")
    with appctx(), counted_statements() as seen:  # the requests share the test's connection
        page = client.get("/admin/billing/monthly-invoices/?month=2026-11")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Issue 150 invoices" in html
    assert "The first 100 of 150 customers" in html
    assert "Customer 00099" in html and "Customer 00100" not in html
    assert "$33,000.00" in html  # 150 x 220.00
    assert seen and max(sent.parameters for sent in seen) < 20, seen
    with appctx(), time_machine.travel(DEC_1, tick=False):
        assert len(invoicing.issue_monthly_invoices(month=NOVEMBER)) == 150
        db.session.commit()
    html = client.get("/admin/billing/monthly-invoices/?month=2026-11").get_data(as_text=True)
    assert "Nothing to invoice for this month." in html
    assert "The first 100 of 150 invoices" in html


@pytest.mark.clock(DEC_1)
def test_the_review_of_a_month_larger_than_a_chunk_reads_a_chunk_of_it(
        client_as, appctx, app, monkeypatch):
    """The review of a month the job will issue costs the same for 60 customers or 150:
    the summary and the first chunk's rows, in the same statements."""
    monkeypatch.setitem(app.config, "INVOICE_CHUNK_SIZE", 50)
    client = client_as("finance")
    seen_for: dict[int, list[tuple[str, int]]] = {}
    for first, count in ((0, 60), (60, 150)):
        with appctx():
            _november_customers(count - first, first=first)  # 60, then 90 more
        with appctx(), counted_statements() as seen:
            review = client.post("/admin/billing/monthly-invoices/", data={
                "month": "2026-11", "step": "review"})
        html = review.get_data(as_text=True)
        assert f"The first 50 of {count} invoices" in html and 'data-testid="review-job"' in html
        assert f"${count * 220:,}.00" in html  # every customer's 220.00 in the total
        seen_for[count] = [(str(sent), sent.parameters) for sent in seen]
    assert len(seen_for[60]) == len(seen_for[150])
    assert max(parameters for _sql, parameters in seen_for[150]) < 20


def test_a_charge_backdated_into_an_invoiced_month_waits_for_the_next_month(ctx):
    customers = _november_customers(3)
    with time_machine.travel(DEC_1, tick=False):
        assert sum(invoicing.issue_in_chunks(month=NOVEMBER, chunk_size=2)) == 3
        db.session.commit()
        # A renewal catching up writes a charge dated in November, after its invoice.
        subscription_id = db.session.scalar(select(Subscription.id).where(
            Subscription.customer_id == customers[1]))
        db.session.execute(insert(Transaction).values(
            customer_id=customers[1], subscription_id=subscription_id,
            kind=TransactionKind.CHARGE, reason=TransactionReason.RENEWAL, amount=500,
            currency="USD", created_at=datetime(2026, 11, 20, tzinfo=UTC)))
        db.session.commit()
        assert invoicing.pending_monthly_invoices(month=NOVEMBER) == []
        assert sum(invoicing.issue_in_chunks(month=NOVEMBER, chunk_size=2)) == 0
        assert invoicing.issue_monthly_invoices(month=NOVEMBER) == []
    with time_machine.travel(datetime(2027, 1, 1, 3, tzinfo=UTC), tick=False):
        [december] = invoicing.issue_monthly_invoices(month=date(2026, 12, 1))
    assert (december.customer_id, december.total) == (customers[1], 500)
