"""Partner subscriptions: term dates, backdating, proration, inventory, suspend/enable."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import partners, pricing, subscriptions
from backoffice.errors import Conflict, DomainError, InvalidInput
from backoffice.models import (
    AuditEvent,
    Subscription,
    SubscriptionStatus,
    SubscriptionTerm,
    Transaction,
    TransactionLine,
    TransactionReason,
)
from backoffice.validation import MAX_QUANTITY
from tests import factories


def at(day: date):
    """Freeze the clock at noon UTC of ``day``."""
    return time_machine.travel(datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
                               tick=False)


@pytest.fixture
def product(ctx):
    return factories.catalog()


@pytest.fixture
def customer(ctx):
    return factories.customer()


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- term dates


@pytest.mark.parametrize(("today", "term", "earliest"), [
    (date(2026, 11, 22), 12, date(2025, 11, 23)),
    (date(2026, 11, 22), 24, date(2024, 11, 23)),
    (date(2026, 11, 22), 36, date(2023, 11, 23)),
    # month end: 2025-02-28 + 12 months ends on 2026-02-28 (today), so it is refused
    (date(2026, 2, 28), 12, date(2025, 3, 1)),
    # a leap-day start ends on Feb 28 two years later: on that day it is refused
    (date(2026, 2, 28), 24, date(2024, 3, 1)),
    (date(2026, 2, 27), 24, date(2024, 2, 28)),
    # today is a leap day
    (date(2028, 2, 29), 12, date(2027, 3, 1)),
    (date(2028, 2, 29), 36, date(2025, 3, 1)),
])
def test_earliest_start_leaves_exactly_one_day(ctx, product, customer, today, term, earliest):
    with at(today):
        assert pricing.earliest_start(term) == earliest
        quote = subscriptions.quote_subscription(customer, product, term_months=term,
                                                 inventory={"DV": 1}, start_date=earliest)
        assert quote.end_date > today
        assert quote.lines[0].days_charged == (quote.end_date - today).days >= 1
        one_day_before = date.fromordinal(earliest.toordinal() - 1)
        with pytest.raises(InvalidInput, match=f"earliest start date allowed today is "
                                               f"{earliest.isoformat()}"):
            subscriptions.quote_subscription(customer, product, term_months=term,
                                             inventory={"DV": 1}, start_date=one_day_before)


def test_leap_day_start_runs_to_february_28(ctx, product, customer):
    with at(date(2026, 2, 27)):
        sub = subscriptions.add_subscription(customer, product, term_months=24,
                                             inventory={"DV": 1}, start_date=date(2024, 2, 29),
                                             actor=None)
    assert (sub.start_date, sub.end_date) == (date(2024, 2, 29), date(2026, 2, 28))


def test_month_end_start_keeps_month_end(ctx, product, customer):
    with at(date(2026, 8, 30)):
        sub = subscriptions.add_subscription(customer, product, term_months=12,
                                             inventory={"DV": 1}, start_date=date(2025, 8, 31),
                                             actor=None)
        assert sub.end_date == date(2026, 8, 31)
        line = ctx.scalar(select(TransactionLine))
        assert (line.days_charged, line.days_in_term) == (1, 365)
        assert line.amount == 14  # 50.00 x 1/365 = 0.137 -> 0.14


def test_start_in_the_future_is_refused(ctx, product, customer):
    with at(date(2026, 11, 22)), pytest.raises(InvalidInput, match="in the future"):
        subscriptions.quote_subscription(customer, product, term_months=12,
                                         inventory={"DV": 1}, start_date=date(2026, 11, 23))


def test_start_defaults_to_today_and_is_not_prorated(ctx, product, customer):
    with at(date(2026, 11, 22)):
        sub = subscriptions.add_subscription(customer, product, term_months=24,
                                             inventory={"DV": 2, "OV": 1}, actor=None)
    assert (sub.start_date, sub.end_date) == (date(2026, 11, 22), date(2028, 11, 22))
    charge = ctx.scalar(select(Transaction))
    # 2 DV x 50.00 x 2 years + 1 OV x 120.00 x 2 years
    assert charge.amount == 2 * 5000 * 2 + 12000 * 2
    assert {(line.days_charged == line.days_in_term) for line in charge.lines} == {True}


# --------------------------------------------------------------------------- the worked examples


def test_backdated_subscription_is_prorated_by_days_left(ctx, product, customer):
    """DESIGN.md: 12 months from 2026-06-01, added 2026-11-22, 10 DV at 50.00 -> 261.64."""
    with at(date(2026, 11, 22)):
        quote = subscriptions.quote_subscription(customer, product, term_months=12,
                                                 inventory={"DV": 10},
                                                 start_date=date(2026, 6, 1))
        assert [(ln.code, ln.full_amount, ln.days_charged, ln.days_in_term, ln.amount)
                for ln in quote.lines] == [("DV", 50000, 191, 365, 26164)]
        assert count(ctx, Transaction) == 0  # quoting writes nothing
        sub = subscriptions.add_subscription(customer, product, term_months=12,
                                             inventory={"DV": 10}, start_date=date(2026, 6, 1),
                                             auto_renew=True, actor=None)
    charge = ctx.scalar(select(Transaction))
    assert (charge.reason, charge.amount, charge.currency) == (
        TransactionReason.NEW_SUBSCRIPTION, 26164, "USD")
    assert [(t.start_date, t.end_date) for t in sub.terms] == [(date(2026, 6, 1),
                                                                 date(2027, 6, 1))]
    inventory = {i.certificate_type.code: (i.quantity, i.renewal_quantity)
                 for i in sub.inventory}
    assert inventory == {"DV": (10, 10), "OV": (0, 0), "EV": (0, 0)}


def test_inventory_added_mid_term_is_prorated(ctx, product, customer):
    """DESIGN.md: same subscription, 3 OV at 120.00 added 2027-01-15 -> 135.12."""
    with at(date(2026, 11, 22)):
        sub = subscriptions.add_subscription(customer, product, term_months=12,
                                             inventory={"DV": 10}, start_date=date(2026, 6, 1),
                                             actor=None)
    with at(date(2027, 1, 15)):
        quote = subscriptions.quote_inventory(sub, {"OV": 3})
        assert quote.total == 13512
        added = subscriptions.add_inventory(sub, {"OV": 3}, actor=None)
    assert (added.reason, added.amount) == (TransactionReason.INVENTORY_ADDED, 13512)
    assert (added.lines[0].days_charged, added.lines[0].days_in_term) == (137, 365)
    ov = next(i for i in sub.inventory if i.certificate_type.code == "OV")
    assert (ov.quantity, ov.renewal_quantity) == (3, 0)  # renewal inventory is separate


def test_half_cent_rounds_up(ctx, customer):
    """183 cents a year over a 366-day term with 1 day left is exactly half a cent."""
    subscriptions.create_certificate_type(code="HALF", name="Half", yearly_price=183)
    product = subscriptions.create_product(name="Half", certificate_types=["HALF"],
                                           terms_months=[12])
    with at(date(2028, 2, 29)):  # term 2027-03-01 .. 2028-03-01 has 366 days, 1 left
        quote = subscriptions.quote_subscription(customer, product, term_months=12,
                                                 inventory={"HALF": 1},
                                                 start_date=date(2027, 3, 1))
    assert (quote.lines[0].days_charged, quote.lines[0].days_in_term) == (1, 366)
    assert quote.total == 1  # 0.5 cent -> 1 cent; banker's rounding would give 0
    with at(date(2028, 2, 25)):  # 5 days left: 2.5 -> 3
        quote = subscriptions.quote_subscription(customer, product, term_months=12,
                                                 inventory={"HALF": 1},
                                                 start_date=date(2027, 3, 1))
    assert quote.total == 3


def test_large_amounts_stay_exact(ctx, customer):
    """The highest price and quantity, far beyond float precision, come out to the cent."""
    yearly = subscriptions.MAX_YEARLY_PRICE - 1  # 999,999.99 a year
    subscriptions.create_certificate_type(code="BIG", name="Big", yearly_price=yearly)
    product = subscriptions.create_product(name="Big", certificate_types=["BIG"],
                                           terms_months=[36])
    quantity = MAX_QUANTITY
    with at(date(2026, 11, 22)):
        quote = subscriptions.quote_subscription(customer, product, term_months=36,
                                                 inventory={"BIG": quantity},
                                                 start_date=date(2025, 1, 31))
    line = quote.lines[0]
    full = yearly * quantity * 3
    assert line.full_amount == full
    left, total = line.days_charged, line.days_in_term
    expected = (2 * full * left + total) // (2 * total)  # integer half-up
    assert line.amount == expected


def test_prices_and_quantities_above_their_bounds_are_refused(ctx, product, customer):
    with pytest.raises(InvalidInput, match="at most 1,000,000.00"):
        subscriptions.create_certificate_type(code="BIG", name="Big",
                                              yearly_price=subscriptions.MAX_YEARLY_PRICE + 1)
    with pytest.raises(InvalidInput, match="at most 100,000"):
        subscriptions.quote_subscription(customer, product, term_months=12,
                                         inventory={"DV": MAX_QUANTITY + 1})


# --------------------------------------------------------------------------- additions


def test_addition_on_the_last_day_charges_one_day(ctx, product, customer):
    with at(date(2026, 6, 1)):
        sub = subscriptions.add_subscription(customer, product, term_months=12,
                                             inventory={"DV": 1}, actor=None)
    with at(date(2027, 5, 31)):
        quote = subscriptions.quote_inventory(sub, {"EV": 2})
        assert (quote.lines[0].days_charged, quote.lines[0].days_in_term) == (1, 365)
        assert quote.total == 136  # 498.00 x 1/365 = 1.364 -> 1.36
    with at(date(2027, 6, 1)), pytest.raises(Conflict, match="term ended on 2027-06-01"):
        subscriptions.add_inventory(sub, {"EV": 2}, actor=None)


def test_addition_to_a_suspended_subscription_is_refused(ctx, product, customer):
    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 1}, actor=None)
    subscriptions.suspend_subscription(sub, actor=None)
    before = count(ctx, Transaction)
    with pytest.raises(Conflict, match="suspended"):
        subscriptions.add_inventory(sub, {"DV": 1}, actor=None)
    assert count(ctx, Transaction) == before
    subscriptions.enable_subscription(sub, actor=None)
    assert sub.status == SubscriptionStatus.ACTIVE
    subscriptions.add_inventory(sub, {"DV": 1}, actor=None)
    assert {i.certificate_type.code: i.quantity for i in sub.inventory}["DV"] == 2


def test_suspend_and_enable_restore_the_subscription_as_it_was(ctx, product, customer):
    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 4, "OV": 2}, auto_renew=True,
                                         actor=None)
    subscriptions.set_renewal_inventory(sub, {"DV": 6}, actor=None)
    snapshot = (sub.start_date, sub.end_date, sub.auto_renew,
                sorted((i.certificate_type.code, i.quantity, i.renewal_quantity)
                       for i in sub.inventory))
    subscriptions.suspend_subscription(sub, actor=None)
    with pytest.raises(Conflict):
        subscriptions.suspend_subscription(sub, actor=None)
    subscriptions.enable_subscription(sub, actor=None)
    assert (sub.start_date, sub.end_date, sub.auto_renew,
            sorted((i.certificate_type.code, i.quantity, i.renewal_quantity)
                   for i in sub.inventory)) == snapshot
    actions = ctx.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions[-2:] == ["subscription.suspend", "subscription.enable"]


def test_renewal_inventory_charges_nothing(ctx, product, customer):
    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 4}, actor=None)
    before = count(ctx, Transaction)
    subscriptions.set_renewal_inventory(sub, {"DV": 1, "EV": 3}, actor=None)
    assert count(ctx, Transaction) == before
    assert {i.certificate_type.code: (i.quantity, i.renewal_quantity)
            for i in sub.inventory} == {"DV": (4, 1), "OV": (0, 0), "EV": (0, 3)}
    with pytest.raises(InvalidInput, match="does not include"):
        subscriptions.set_renewal_inventory(sub, {"XX": 1}, actor=None)


@pytest.mark.parametrize("bad", [{"DV": -1}, {"DV": 1.5}, {"DV": "2"}, {"DV": True}, {},
                                 {"DV": 0}, {"NOPE": 1}])
def test_quantities_must_be_whole_non_negative_and_offered(ctx, product, customer, bad):
    with pytest.raises(InvalidInput):
        subscriptions.quote_subscription(customer, product, term_months=12, inventory=bad)


def test_term_not_offered_by_the_product_is_refused(ctx, product, customer):
    with pytest.raises(InvalidInput, match="sold for 12, 24, 36 months, not 18"):
        subscriptions.quote_subscription(customer, product, term_months=18,
                                         inventory={"DV": 1})


# --------------------------------------------------------------------------- resellers


def test_disabled_reseller_stops_new_subscriptions_and_additions(ctx, product):
    reseller = factories.reseller()
    customer = factories.customer(reseller=reseller)
    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 1}, actor=None)
    impact = partners.reseller_impact(reseller)
    assert (impact["customers"], impact["active_subscriptions"]) == (1, 1)
    partners.disable_reseller(reseller, reason="Unpaid invoices", actor=None)
    rows = (count(ctx, Subscription), count(ctx, Transaction), count(ctx, SubscriptionTerm))
    with pytest.raises(Conflict, match="CertHub Partners, which is disabled"):
        subscriptions.add_subscription(customer, product, term_months=12,
                                       inventory={"DV": 1}, actor=None)
    with pytest.raises(Conflict, match="disabled"):
        subscriptions.add_inventory(sub, {"DV": 1}, actor=None)
    assert (count(ctx, Subscription), count(ctx, Transaction),
            count(ctx, SubscriptionTerm)) == rows
    partners.enable_reseller(reseller, actor=None)
    subscriptions.add_inventory(sub, {"DV": 1}, actor=None)


def test_disabling_needs_a_reason_and_happens_once(ctx):
    reseller = factories.reseller()
    with pytest.raises(InvalidInput, match="reason"):
        partners.disable_reseller(reseller, reason="  ", actor=None)
    partners.disable_reseller(reseller, reason="Contract ended", actor=None)
    with pytest.raises(Conflict, match="already disabled"):
        partners.disable_reseller(reseller, reason="again", actor=None)


def test_every_verb_writes_its_audit_event(ctx, product):
    reseller = factories.reseller()
    customer = factories.customer(reseller=reseller)
    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 1}, actor=None)
    subscriptions.add_inventory(sub, {"OV": 1}, actor=None)
    subscriptions.set_renewal_inventory(sub, {"OV": 1}, actor=None)
    subscriptions.suspend_subscription(sub, actor=None)
    subscriptions.enable_subscription(sub, actor=None)
    partners.update_customer(customer, city="Munich", actor=None)
    partners.disable_reseller(reseller, reason="Audit", actor=None)
    partners.enable_reseller(reseller, actor=None)
    actions = set(ctx.scalars(select(AuditEvent.action)))
    assert {"reseller.create", "customer.create", "subscription.create",
            "subscription.inventory_add", "subscription.renewal_inventory",
            "subscription.suspend", "subscription.enable", "customer.update",
            "reseller.disable", "reseller.enable"} <= actions


def test_a_refused_operation_writes_nothing(ctx, product, customer):
    ctx.commit()
    before = (count(ctx, Subscription), count(ctx, AuditEvent), count(ctx, Transaction))
    with pytest.raises(DomainError):
        subscriptions.add_subscription(customer, product, term_months=12,
                                       inventory={"DV": 1, "XX": 2}, actor=None)
    ctx.rollback()
    assert (count(ctx, Subscription), count(ctx, AuditEvent),
            count(ctx, Transaction)) == before


# --------------------------------------------------------------------------- reviews


def test_renewal_inventory_review_states_before_after_and_the_next_term_price(
        ctx, product, customer):
    with at(date(2026, 6, 1)):
        sub = subscriptions.add_subscription(customer, product, term_months=12,
                                             inventory={"DV": 10}, auto_renew=True,
                                             actor=None)
    events = count(ctx, AuditEvent)
    with at(date(2026, 12, 1)):
        review = subscriptions.quote_renewal_inventory(sub, {"DV": 4, "OV": 2})
    assert (review.renews_on, review.next_end) == (date(2027, 6, 1), date(2028, 6, 1))
    assert [(line.code, line.current, line.renewal_before, line.renewal_after)
            for line in review.lines] == [("DV", 10, 10, 4), ("EV", 0, 0, 0), ("OV", 0, 0, 2)]
    assert (review.total_before, review.total_after) == (50000, 44000)
    assert review.blocker is None
    assert count(ctx, AuditEvent) == events  # the review wrote nothing
    assert [row.renewal_quantity for row in sub.inventory] == [10, 0, 0]
    assert subscriptions.quote_renewal_inventory(sub, {"DV": 0}).blocker == (
        "renewal inventory is zero")
    sub.auto_renew = False
    assert subscriptions.quote_renewal_inventory(sub, {"DV": 4}).blocker == "auto-renew off"
    # a 24-month term's next renewal charges two years
    with at(date(2026, 6, 1)):
        long = subscriptions.add_subscription(customer, product, term_months=24,
                                              inventory={"EV": 1}, actor=None)
    assert subscriptions.quote_renewal_inventory(long, {"EV": 3}).total_after == 3 * 24_900 * 2


def test_renewal_inventory_review_refuses_what_setting_it_refuses(ctx, product, customer):
    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 4}, actor=None)
    with pytest.raises(Conflict, match="already set to these quantities"):
        subscriptions.quote_renewal_inventory(sub, {"DV": 4})
    with pytest.raises(InvalidInput, match="does not include XX"):
        subscriptions.quote_renewal_inventory(sub, {"XX": 1})
    with pytest.raises(InvalidInput, match="at most 100,000"):
        subscriptions.quote_renewal_inventory(sub, {"DV": MAX_QUANTITY + 1})
    sub.status = SubscriptionStatus.EXPIRED
    for verb in (subscriptions.quote_renewal_inventory,
                 lambda s, q: subscriptions.set_renewal_inventory(s, q, actor=None)):
        with pytest.raises(Conflict, match="has expired; it has no next term"):
            verb(sub, {"DV": 1})


def test_status_reviews_state_the_change_and_refuse_what_the_verbs_refuse(
        ctx, product, customer):
    with at(date(2026, 6, 1)):
        sub = subscriptions.add_subscription(customer, product, term_months=12,
                                             inventory={"DV": 4}, auto_renew=True,
                                             actor=None)
    with at(date(2026, 12, 1)):
        review = subscriptions.review_suspend_subscription(sub)
        assert (review.status_before, review.status_after) == ("active", "suspended")
        assert ("Inventory now / at renewal", "DV 4 / 4, EV 0 / 0, OV 0 / 0") in review.facts
        with pytest.raises(Conflict, match="only suspended subscriptions can be enabled"):
            subscriptions.review_enable_subscription(sub)
        subscriptions.suspend_subscription(sub, actor=None)
        with pytest.raises(Conflict, match="only active subscriptions can be suspended"):
            subscriptions.review_suspend_subscription(sub)
        review = subscriptions.review_enable_subscription(sub)
        assert (review.status_before, review.status_after) == ("suspended", "active")
        assert any("renews automatically on 2027-06-01" in e for e in review.effects)
    with at(date(2027, 6, 1)):
        for verb in (subscriptions.review_enable_subscription,
                     lambda s: subscriptions.enable_subscription(s, actor=None)):
            with pytest.raises(Conflict, match="term ended on 2027-06-01; it cannot be "
                                               "enabled again"):
                verb(sub)


def test_a_status_review_changes_with_the_state_it_was_made_against(ctx, product, customer):
    from backoffice import idempotency

    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 4}, actor=None)
    before = idempotency.fingerprint(subscriptions.review_suspend_subscription(sub))
    assert idempotency.fingerprint(subscriptions.review_suspend_subscription(sub)) == before
    subscriptions.set_renewal_inventory(sub, {"DV": 2}, actor=None)
    assert idempotency.fingerprint(subscriptions.review_suspend_subscription(sub)) != before


def test_reseller_reviews_state_the_impact_and_refuse_what_the_verbs_refuse(ctx, product):
    reseller = factories.reseller()
    customer = factories.customer(reseller=reseller)
    sub = subscriptions.add_subscription(customer, product, term_months=12,
                                         inventory={"DV": 1}, auto_renew=True, actor=None)
    review = partners.review_disable_reseller(reseller, "  Unpaid invoices ")
    assert (review.status_before, review.status_after) == ("active", "disabled")
    assert dict(review.facts) == {"Reason": "Unpaid invoices", "Customers": 1,
                                  "Active subscriptions": 1, "Auto-renewals that will stop": 1}
    assert review.subscriptions == (sub,)
    for bad, message in (("", "needs a reason"), ("x" * 501, "at most 500 characters")):
        for verb in (partners.review_disable_reseller,
                     lambda r, reason: partners.disable_reseller(r, reason=reason, actor=None)):
            with pytest.raises(InvalidInput, match=message):
                verb(reseller, bad)
    with pytest.raises(Conflict, match="already active"):
        partners.review_enable_reseller(reseller)
    partners.disable_reseller(reseller, reason="x" * 500, actor=None)
    with pytest.raises(Conflict, match="already disabled"):
        partners.review_disable_reseller(reseller, "again")
    review = partners.review_enable_reseller(reseller)
    assert (review.status_before, review.status_after) == ("disabled", "active")
    assert ("Reason", "x" * 500) in review.facts


@pytest.mark.parametrize(("field", "limit"), [
    ("company_name", 200), ("address1", 200), ("address2", 200), ("address3", 200),
    ("city", 100), ("postal_code", 20), ("state", 100)])
def test_address_fields_are_refused_beyond_their_column_length(ctx, field, limit):
    customer = factories.customer(**{field: "x" * limit}) if field != "company_name" else (
        factories.customer("x" * limit))
    with pytest.raises(InvalidInput, match=f"to at most {limit} characters"):
        partners.update_customer(customer, **{field: "y" * (limit + 1)}, actor=None)
    with pytest.raises(InvalidInput, match=f"to at most {limit} characters"):
        factories.reseller(**{field: "y" * (limit + 1)}) if field != "company_name" else (
            factories.reseller("y" * (limit + 1)))
