"""Scheduled renewal: exactly on the end date, catch-up term by term, expiry, idempotency."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import partners, renewals, subscriptions
from backoffice.audit import verify_chain
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    Inventory,
    Subscription,
    SubscriptionStatus,
    SubscriptionTerm,
    Transaction,
    TransactionReason,
)
from backoffice.renewals import renew_due_subscriptions
from tests import factories

NOTHING = {"renewed": 0, "expired": 0, "skipped": 0, "failed": 0, "terms_created": 0}


def at(day: date, hour: int = 9):
    """Move the clock to ``day`` (UTC) for the block."""
    return time_machine.travel(datetime(day.year, day.month, day.day, hour, tzinfo=UTC),
                               tick=False)








def renewal_charges(subscription_id: int) -> list[Transaction]:
    return db.session.scalars(
        select(Transaction).where(Transaction.subscription_id == subscription_id,
                                  Transaction.reason == TransactionReason.RENEWAL)
        .order_by(Transaction.created_at)).all()


def terms_of(subscription_id: int) -> list[tuple[date, date]]:
    return [(t.start_date, t.end_date) for t in db.session.scalars(
        select(SubscriptionTerm).where(SubscriptionTerm.subscription_id == subscription_id)
        .order_by(SubscriptionTerm.start_date))]


def run_at(day: date) -> dict:
    with at(day):
        return renew_due_subscriptions()


@pytest.fixture
def catalog(ctx):
    factories.catalog("renewal")
    db.session.commit()


def test_renews_on_its_end_date_and_not_the_day_before(ctx, catalog):
    sub = factories.subscribed_on(factories.customer(), start=date(2025, 1, 15))
    sub_id = sub.id
    assert sub.end_date == date(2026, 1, 15)

    assert run_at(date(2026, 1, 14)) == NOTHING
    db.session.expire_all()
    assert db.session.get(Subscription, sub_id).end_date == date(2026, 1, 15)
    assert renewal_charges(sub_id) == []

    counts = run_at(date(2026, 1, 15))
    assert counts == {**NOTHING, "renewed": 1, "terms_created": 1}
    db.session.expire_all()
    sub = db.session.get(Subscription, sub_id)
    assert (sub.start_date, sub.end_date, sub.status) == (
        date(2026, 1, 15), date(2027, 1, 15), SubscriptionStatus.ACTIVE)
    assert terms_of(sub_id) == [(date(2025, 1, 15), date(2026, 1, 15)),
                                (date(2026, 1, 15), date(2027, 1, 15))]
    [charge] = renewal_charges(sub_id)
    assert charge.created_at == datetime(2026, 1, 15, tzinfo=UTC)
    assert charge.amount == 50000  # 10 x 50.00, the full term
    [line] = charge.lines
    assert (line.quantity, line.amount, line.full_amount) == (10, 50000, 50000)
    assert line.days_charged == line.days_in_term == 365
    assert charge.actor_id is None and charge.invoice_id is None


def test_catch_up_after_downtime_three_terms_three_charges_then_nothing(ctx, catalog):
    sub_id = factories.subscribed_on(factories.customer(), start=date(2022, 3, 1)).id

    counts = run_at(date(2025, 6, 10))
    assert counts == {**NOTHING, "renewed": 1, "terms_created": 3}
    db.session.expire_all()
    assert db.session.get(Subscription, sub_id).end_date == date(2026, 3, 1)
    assert terms_of(sub_id)[1:] == [(date(2023, 3, 1), date(2024, 3, 1)),
                                    (date(2024, 3, 1), date(2025, 3, 1)),
                                    (date(2025, 3, 1), date(2026, 3, 1))]
    charges = renewal_charges(sub_id)
    assert [c.created_at for c in charges] == [
        datetime(2023, 3, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC)]
    assert [c.amount for c in charges] == [50000, 50000, 50000]
    # 2023-03-01 -> 2024-03-01 holds Feb 29: charged whole, 366 of 366 days
    assert [(c.lines[0].days_charged, c.lines[0].days_in_term) for c in charges] == [
        (366, 366), (365, 365), (365, 365)]
    events = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "subscription.renew")).all()
    assert len(events) == 3 and {e.actor_label for e in events} == {renewals.ACTOR_LABEL}

    before = db.session.scalar(select(func.count(Transaction.id)))
    assert run_at(date(2025, 6, 10)) == NOTHING
    assert run_at(date(2026, 2, 28)) == NOTHING
    assert db.session.scalar(select(func.count(Transaction.id))) == before
    assert len(terms_of(sub_id)) == 4
    assert verify_chain() == []


def _suspend(sub):
    subscriptions.suspend_subscription(sub, actor=None)


def _disable_reseller(sub):
    partners.disable_reseller(sub.customer.reseller, reason="Contract ended", actor=None)


def _auto_renew_off(sub):
    sub.auto_renew = False


def _zero_renewal_inventory(sub):
    subscriptions.set_renewal_inventory(sub, {"DV": 0}, actor=None)


@pytest.mark.parametrize("stop, reason", [
    (_suspend, "suspended"),
    (_disable_reseller, "reseller disabled"),
    (_auto_renew_off, "auto-renew off"),
    (_zero_renewal_inventory, "renewal inventory is zero"),
])
def test_subscriptions_that_do_not_renew_expire_at_their_end_without_charge(
        ctx, catalog, stop, reason):
    reseller = partners.create_reseller(company_name="Resell Co", address1="2 Side St",
                                        city="Lyon", postal_code="69001", country="FR",
                                        actor=None)
    sub = factories.subscribed_on(factories.customer(reseller=reseller), start=date(2025, 5, 20))
    # A subscription beside it, renewing normally, shows the run did work.
    other_id = factories.subscribed_on(factories.customer(name="Other"), start=date(2025, 5, 20)).id
    sub_id = sub.id
    with at(date(2025, 9, 1)):
        stop(sub)
    db.session.commit()

    assert run_at(date(2026, 5, 19)) == NOTHING
    db.session.expire_all()
    assert db.session.get(Subscription, sub_id).status != SubscriptionStatus.EXPIRED

    assert run_at(date(2026, 5, 20)) == {**NOTHING, "renewed": 1, "expired": 1,
                                         "terms_created": 1}
    db.session.expire_all()
    sub = db.session.get(Subscription, sub_id)
    assert sub.status == SubscriptionStatus.EXPIRED
    assert sub.end_date == date(2026, 5, 20)
    assert renewal_charges(sub_id) == []
    assert len(terms_of(sub_id)) == 1
    assert len(renewal_charges(other_id)) == 1
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "subscription.expire"))
    assert event.details["reason"] == reason and event.target_id == str(sub_id)
    assert run_at(date(2027, 6, 1))["expired"] == 0


def test_renewal_uses_renewal_inventory_and_rounds_per_line(ctx, catalog):
    sub = factories.subscribed_on(factories.customer(), start=date(2026, 1, 31), term_months=1,
                            inventory={"DV": 10, "OV": 2})
    sub_id = sub.id
    assert sub.end_date == date(2026, 2, 28)  # month arithmetic clamps to the month's end
    with at(date(2026, 2, 10)):
        subscriptions.set_renewal_inventory(sub, {"DV": 4, "OV": 3}, actor=None)
    db.session.commit()

    assert run_at(date(2026, 2, 28))["renewed"] == 1
    db.session.expire_all()
    rows = {i.certificate_type.code: (i.quantity, i.renewal_quantity)
            for i in db.session.scalars(select(Inventory).where(
                Inventory.subscription_id == sub_id))}
    assert rows == {"DV": (4, 4), "OV": (3, 3)}
    [charge] = renewal_charges(sub_id)
    lines = {line.certificate_type.code: line for line in charge.lines}
    # DV: 4 x 50.00 / 12 = 16.666.. -> 16.67; OV: 3 x 49.99 / 12 = 12.4975 -> 12.50
    assert (lines["DV"].quantity, lines["DV"].amount) == (4, 1667)
    assert (lines["OV"].quantity, lines["OV"].amount) == (3, 1250)
    assert charge.amount == 2917
    assert lines["DV"].days_charged == lines["DV"].days_in_term == 28
    assert db.session.get(Subscription, sub_id).end_date == date(2026, 3, 28)


def test_a_type_with_zero_renewal_quantity_gets_no_line(ctx, catalog):
    sub = factories.subscribed_on(factories.customer(), start=date(2026, 1, 1), term_months=1,
                            inventory={"DV": 2, "OV": 5})
    sub_id = sub.id
    subscriptions.set_renewal_inventory(sub, {"OV": 0}, actor=None)
    db.session.commit()
    run_at(date(2026, 2, 1))
    [charge] = renewal_charges(sub_id)
    assert [(line.certificate_type.code, line.quantity) for line in charge.lines] == [("DV", 2)]
    db.session.expire_all()
    assert {i.certificate_type.code: i.quantity for i in db.session.get(
        Subscription, sub_id).inventory} == {"DV": 2, "OV": 0}


def test_one_failing_subscription_rolls_back_alone(ctx, catalog, monkeypatch):
    bad_id = factories.subscribed_on(factories.customer(), start=date(2025, 1, 1)).id
    good_id = factories.subscribed_on(factories.customer(name="Good"), start=date(2025, 1, 1)).id
    real = renewals._renew_one_term

    def flaky(subscription, rows):
        real(subscription, rows)  # writes everything, then fails before the commit
        if subscription.id == bad_id:
            raise RuntimeError("mail server on fire")

    monkeypatch.setattr(renewals, "_renew_one_term", flaky)
    assert run_at(date(2026, 1, 1)) == {**NOTHING, "renewed": 1, "failed": 1,
                                        "terms_created": 1}
    assert renewal_charges(bad_id) == [] and len(terms_of(bad_id)) == 1
    assert len(renewal_charges(good_id)) == 1
    db.session.expire_all()
    assert {i.quantity for i in db.session.get(Subscription, bad_id).inventory} == {10, 0}

    monkeypatch.setattr(renewals, "_renew_one_term", real)
    assert run_at(date(2026, 1, 2)) == {**NOTHING, "renewed": 1, "terms_created": 1}
    assert len(renewal_charges(bad_id)) == 1


def test_a_term_someone_else_created_is_skipped_not_charged_twice(ctx, catalog):
    sub = factories.subscribed_on(factories.customer(), start=date(2025, 1, 1))
    sub_id = sub.id
    # Another process inserted the next term but its subscription row still looks due.
    db.session.add(SubscriptionTerm(subscription_id=sub_id, start_date=date(2026, 1, 1),
                                    end_date=date(2027, 1, 1)))
    db.session.commit()

    assert run_at(date(2026, 1, 1)) == {**NOTHING, "skipped": 1}
    assert renewal_charges(sub_id) == []
    db.session.expire_all()
    assert db.session.get(Subscription, sub_id).end_date == date(2026, 1, 1)


def test_today_argument_overrides_the_clock(ctx, catalog):
    sub_id = factories.subscribed_on(factories.customer(), start=date(2025, 1, 1)).id
    with at(date(2025, 6, 1)):
        assert renew_due_subscriptions(today=date(2026, 1, 1))["renewed"] == 1
    assert renewal_charges(sub_id)[0].created_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_progress_reports_every_item(ctx, catalog):
    for name in ("A", "B", "C"):
        factories.subscribed_on(factories.customer(name=name), start=date(2025, 1, 1))
    seen = []
    with at(date(2026, 1, 1)):
        renew_due_subscriptions(progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
