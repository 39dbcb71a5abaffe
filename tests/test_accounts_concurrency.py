"""Prepaid credit under concurrency (PostgreSQL): real threads, each its own transaction."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from backoffice import accounts
from backoffice.audit import verify_chain
from backoffice.errors import DomainError
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    CreditEntry,
    CreditKind,
    LegacyAccount,
    Order,
    OrderStatus,
    Profile,
    StaffUser,
)
from tests.conftest import make_staff
from tests.queries import ledger_sum
from tests.test_accounts import DV_PRICE, billing, catalog, legacy

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip("row locks under concurrency are exercised on PostgreSQL")


def _race(app, count: int, work) -> list[str]:
    """Run ``work(i)`` in ``count`` threads started together; each commits or rolls back.

    Returns one outcome per thread: "ok", or the DomainError's message.
    """
    barrier = threading.Barrier(count)
    outcomes: list[str] = [""] * count

    def run(i: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                work(i)
                db.session.commit()
                outcomes[i] = "ok"
            except DomainError as exc:
                db.session.rollback()
                outcomes[i] = str(exc)
            except Exception as exc:  # a crash is a failure of the test, kept visible
                db.session.rollback()
                outcomes[i] = f"crash: {exc!r}"
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return outcomes


def test_sixteen_simultaneous_legacy_transfers_move_the_balance_once(app, appctx):
    with appctx() as session:
        support = make_staff("support")
        targets = [accounts.create_profile(email=f"user{i}@example.com", name=f"User {i}").id
                   for i in range(4)]
        account_id = legacy("old@legacy.example.com", 48000).id
        support_id = support.id
        session.commit()

    def transfer(i: int) -> None:
        actor = db.session.get(StaffUser, support_id)
        accounts.transfer_legacy_credit(db.session.get(LegacyAccount, account_id),
                                        db.session.get(Profile, targets[i % 4]), actor=actor)

    outcomes = _race(app, 16, transfer)
    assert outcomes.count("ok") == 1, outcomes
    assert all("only once" in o for o in outcomes if o != "ok"), outcomes
    with appctx():
        account = db.session.get(LegacyAccount, account_id)
        entries = db.session.scalars(
            select(CreditEntry).where(CreditEntry.kind == CreditKind.LEGACY_TRANSFER)).all()
        assert len(entries) == 1 and entries[0].amount == 48000
        assert account.credit_balance == 0 and account.transferred_to_id == entries[0].profile_id
        balances = {p.id: p.credit_balance for p in db.session.scalars(select(Profile))}
        assert sum(balances.values()) == 48000 and balances[entries[0].profile_id] == 48000
        transfers = db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "legacy_credit.transfer"))
        assert transfers == 1
        assert verify_chain() == []


def test_ten_credit_payments_against_a_balance_that_covers_three(app, appctx):
    with appctx() as session:
        catalog()
        payer = accounts.create_profile(email="payer@example.com", name="Payer")
        accounts.add_credit(payer, DV_PRICE * 3 + DV_PRICE // 2, memo="", actor=None)
        order_ids = [accounts.place_order(payer, items={"DV": 1}, billing=billing(payer)).id
                     for _ in range(10)]
        payer_id = payer.id
        session.commit()

    def pay(i: int) -> None:
        accounts.pay_order(db.session.get(Order, order_ids[i]),
                           payer=db.session.get(Profile, payer_id), method="prepaid_credit")

    outcomes = _race(app, 10, pay)
    assert outcomes.count("ok") == 3, outcomes
    assert all("below zero" in o for o in outcomes if o != "ok"), outcomes
    with appctx():
        payer = db.session.get(Profile, payer_id)
        assert payer.credit_balance == DV_PRICE // 2
        assert payer.credit_balance == ledger_sum(payer)
        paid = db.session.scalar(select(func.count(Order.id)).where(
            Order.status == OrderStatus.PAID))
        assert paid == 3
        payments = db.session.scalars(select(CreditEntry).where(
            CreditEntry.kind == CreditKind.ORDER_PAYMENT)).all()
        assert len(payments) == 3 and {e.order.status for e in payments} == {OrderStatus.PAID}
        assert verify_chain() == []
