"""Concurrent refunds of one charge never refund more certificates or money than it charged.

PostgreSQL only: real threads, each with its own app context, session and commit, started
together by a barrier.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backoffice.clock import today
from backoffice.errors import DomainError
from backoffice.extensions import db
from backoffice.models import Transaction, TransactionKind
from backoffice.refunds import refund
from tests import factories

pytestmark = pytest.mark.postgres


@pytest.fixture
def ten_certificates(appctx, is_postgres):
    """A charge of 10 DV for a backdated term, so its amount is not a multiple of 10."""
    if not is_postgres:
        pytest.skip("concurrency is tested on PostgreSQL (set TEST_DATABASE_URL)")
    with appctx() as session:
        sub = factories.subscribe(factories.customer(), factories.catalog("billing"), {"DV": 10},
                        start_date=today() - timedelta(days=97))
        charge = factories.charge_of(sub)
        session.commit()
        return charge.id, factories.line_of(charge, "DV").amount


def _race(app, charge_id: int, count: int, threads: int) -> list[str]:
    """``threads`` threads each refund ``count`` DV of the charge at once; their outcomes."""
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []

    def worker():
        with app.app_context():
            barrier.wait()
            try:
                charge = db.session.get(Transaction, charge_id)
                refund(charge, {"DV": count}, actor=None)
                db.session.commit()
                outcomes.append("ok")
            except DomainError as exc:
                db.session.rollback()
                outcomes.append(str(exc))
            finally:
                db.session.remove()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    assert len(outcomes) == threads, "a thread did not finish"
    return outcomes


def _refunds(charge_id: int) -> tuple[int, int]:
    """How many refunds the charge has, and their total (negative minor units)."""
    return db.session.execute(
        select(func.count(Transaction.id), func.coalesce(func.sum(Transaction.amount), 0))
        .where(Transaction.refunded_transaction_id == charge_id,
               Transaction.kind == TransactionKind.REFUND)
    ).one()


def test_twenty_threads_refunding_one_each_refund_exactly_ten(app, appctx, ten_certificates):
    charge_id, line_amount = ten_certificates
    assert line_amount % 10 != 0
    outcomes = _race(app, charge_id, 1, 20)
    assert outcomes.count("ok") == 10
    refused = [o for o in outcomes if o != "ok"]
    assert len(refused) == 10 and all("already been refunded" in o for o in refused)
    with appctx():
        charge = db.session.get(Transaction, charge_id)
        line = factories.line_of(charge, "DV")
        assert (line.refunded_quantity, line.refunded_amount) == (10, line_amount)
        assert _refunds(charge_id) == (10, -line_amount)
        assert factories.inventory_of(charge.subscription, "DV") == 0


def test_two_threads_refunding_six_of_ten_only_one_succeeds(app, appctx, ten_certificates):
    charge_id, line_amount = ten_certificates
    outcomes = _race(app, charge_id, 6, 2)
    assert outcomes.count("ok") == 1
    refused = next(o for o in outcomes if o != "ok")
    assert "Only 4 of the 10 DV certificates" in refused
    with appctx():
        charge = db.session.get(Transaction, charge_id)
        line = factories.line_of(charge, "DV")
        assert line.refunded_quantity == 6
        count, total = _refunds(charge_id)
        assert count == 1 and -total == line.refunded_amount < line_amount
        assert factories.inventory_of(charge.subscription, "DV") == 4
