"""Renewal under real concurrency (PostgreSQL): four processes at once, and a killed process.

The processes run ``renew_due_subscriptions`` directly, without the job lease, so that
nothing but the row locks and the UNIQUE term constraint keeps a term or charge single.
They renew in chunks of CHUNK subscriptions, so that a thousand make many chunks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import func, insert, select

from backoffice.extensions import db
from backoffice.models import (
    CertificateType,
    Customer,
    Inventory,
    Subscription,
    SubscriptionProduct,
    SubscriptionStatus,
    SubscriptionTerm,
    Transaction,
    TransactionReason,
)
from backoffice.money import prorate
from backoffice.renewals import renew_due_subscriptions
from tests import factories

pytestmark = pytest.mark.postgres

PROJECT = Path(__file__).resolve().parent.parent
COUNT = 1000
FIRST_END = date(2026, 2, 1)
#: subscriptions per chunk (per transaction) in these processes
CHUNK = 25

#: a worker: renews for each date read from stdin and prints its counts as JSON
WORKER = """
import json, sys, time
from datetime import date
from backoffice import create_app, renewals
from backoffice.extensions import db
from tests import factories

delay, chunk = float(sys.argv[2]), int(sys.argv[3])
if delay:
    real = renewals._process
    def slow(*args, **kwargs):
        result = real(*args, **kwargs)
        time.sleep(delay)  # inside the chunk's transaction, before its commit
        return result
    renewals._process = slow
app = create_app({"TESTING": True, "SECRET_KEY": "test", "SCHEDULER_ENABLED": False,
                  "SQLALCHEMY_DATABASE_URI": sys.argv[1]})
print("ready", flush=True)
for line in sys.stdin:
    with app.app_context():
        counts = renewals.renew_due_subscriptions(today=date.fromisoformat(line.strip()),
                                                  chunk_size=chunk)
        db.session.remove()
    print(json.dumps(counts), flush=True)
"""


@pytest.fixture(autouse=True)
def postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")


def _bulk_due_subscriptions(count: int) -> None:
    """``count`` monthly auto-renewing subscriptions ending on FIRST_END, by Core inserts."""
    factories.catalog("renewal")
    customer_id = factories.customer().id
    product = db.session.scalar(select(SubscriptionProduct))
    dv = db.session.scalar(select(CertificateType).where(CertificateType.code == "DV"))
    ov = db.session.scalar(select(CertificateType).where(CertificateType.code == "OV"))
    start = FIRST_END - relativedelta(months=1)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    ids = db.session.scalars(
        insert(Subscription).returning(Subscription.id, sort_by_parameter_order=True),
        [{"customer_id": customer_id, "product_id": product.id, "term_months": 1,
          "start_date": start, "end_date": FIRST_END, "auto_renew": True,
          "status": SubscriptionStatus.ACTIVE, "created_at": created}] * count,
    ).all()
    db.session.execute(insert(Inventory), [
        {"subscription_id": sid, "certificate_type_id": type_id, "quantity": quantity,
         "renewal_quantity": quantity}
        for sid in ids for type_id, quantity in ((dv.id, 1), (ov.id, 2))])
    db.session.execute(insert(SubscriptionTerm), [
        {"subscription_id": sid, "start_date": start, "end_date": FIRST_END,
         "created_at": created} for sid in ids])
    db.session.commit()
    assert db.session.get(Customer, customer_id).currency == "USD"


def _start_workers(database_url: str, count: int, delay: float = 0.0) -> list[subprocess.Popen]:
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, database_url, str(delay), str(CHUNK)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT,
                         env={**os.environ, "PYTHONPATH": str(PROJECT)})
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    return workers


def _renewal_stats() -> tuple[int, int, int, int]:
    """(renewal charges, terms, most charges on one subscription, most terms on one)."""
    db.session.rollback()
    charges = select(Transaction.subscription_id, func.count().label("n")).where(
        Transaction.reason == TransactionReason.RENEWAL).group_by(Transaction.subscription_id)
    terms = select(SubscriptionTerm.subscription_id, func.count().label("n")).group_by(
        SubscriptionTerm.subscription_id)
    charges, terms = charges.subquery(), terms.subquery()
    return (
        db.session.scalar(select(func.coalesce(func.sum(charges.c.n), 0))),
        db.session.scalar(select(func.coalesce(func.sum(terms.c.n), 0))),
        db.session.scalar(select(func.coalesce(func.max(charges.c.n), 0))),
        db.session.scalar(select(func.coalesce(func.max(terms.c.n), 0))),
    )


def test_four_processes_renew_each_subscription_exactly_once_per_round(ctx, database_url):
    _bulk_due_subscriptions(COUNT)
    workers = _start_workers(database_url, 4)
    try:
        for round_ in range(1, 4):  # three months: each round renews every one once
            today = FIRST_END + relativedelta(months=round_ - 1)
            for worker in workers:  # all four get the date at once
                worker.stdin.write(f"{today.isoformat()}\n")
                worker.stdin.flush()
            results = [json.loads(worker.stdout.readline()) for worker in workers]
            total = {k: sum(r[k] for r in results) for k in results[0]}
            assert total["renewed"] == COUNT, (round_, results)
            assert total["terms_created"] == COUNT and total["failed"] == 0
            assert total["expired"] == 0
            assert sum(1 for r in results if r["renewed"]) >= 2, "the processes did not overlap"
            charges, terms, most_charges, most_terms = _renewal_stats()
            assert (charges, terms) == (COUNT * round_, COUNT * (round_ + 1))
            assert (most_charges, most_terms) == (round_, round_ + 1)
            ends = db.session.scalars(select(Subscription.end_date).distinct()).all()
            assert ends == [today + relativedelta(months=1)]
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=30)
    # each charge is dated on its own renewal day, for the full term: 1 DV + 2 OV a month
    assert db.session.scalar(select(func.count(Transaction.id)).where(
        Transaction.reason == TransactionReason.RENEWAL,
        Transaction.created_at == datetime(2026, 4, 1, tzinfo=UTC))) == COUNT
    full = prorate(5000, 1, 12) + prorate(4999 * 2, 1, 12)
    assert set(db.session.scalars(select(Transaction.amount).where(
        Transaction.reason == TransactionReason.RENEWAL))) == {full}


def test_a_renewal_killed_midway_and_run_again_renews_each_exactly_once(ctx, database_url):
    _bulk_due_subscriptions(COUNT)
    [worker] = _start_workers(database_url, 1, delay=0.1)
    worker.stdin.write(f"{FIRST_END.isoformat()}\n")
    worker.stdin.flush()
    deadline = time.monotonic() + 30
    while _renewal_stats()[0] < 150:
        assert time.monotonic() < deadline, "the renewal never got going"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    charges_at_kill, terms_at_kill, _, _ = _renewal_stats()
    assert 150 <= charges_at_kill < COUNT, "killed too late to prove anything"
    assert terms_at_kill == COUNT + charges_at_kill  # nothing half-written
    assert charges_at_kill % CHUNK == 0  # whole chunks committed, the one in flight not

    counts = renew_due_subscriptions(today=FIRST_END)
    assert counts["renewed"] == COUNT - charges_at_kill and counts["failed"] == 0
    assert _renewal_stats() == (COUNT, 2 * COUNT, 1, 2)
    assert renew_due_subscriptions(today=FIRST_END)["renewed"] == 0
    assert _renewal_stats() == (COUNT, 2 * COUNT, 1, 2)
