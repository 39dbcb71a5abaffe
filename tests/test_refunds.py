"""Refunds: the 30-day window, counts, rounding with remainders, inventory and audit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from backoffice import renewals, subscriptions
from backoffice.errors import Conflict, InvalidInput
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    Transaction,
    TransactionKind,
    TransactionReason,
)
from backoffice.refunds import quote_refund, refund, refund_state, refund_transactions
from tests import factories

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.fixture
def charged(ctx):
    """On 2026-11-22, a subscription from 2026-11-01 (344 of 365 days left) with 3 DV, 2 OV."""
    with time_machine.travel(NOW, tick=False):
        product = factories.catalog("billing")
        customer = factories.customer()
        sub = factories.subscribe(customer, product, {"DV": 3, "OV": 2},
                                  start_date=date(2026, 11, 1))
        ctx.commit()
        yield factories.charge_of(sub)


def test_charge_amounts_do_not_divide_by_quantity(charged):
    # 3 DV at 100.00 for 344/365 days: 300.00 x 344/365 = 282.7397 -> 282.74
    assert factories.line_of(charged, "DV").amount == 28274
    assert 28274 % 3 != 0


def test_partial_refunds_then_the_last_certificate_sum_exactly_to_the_line(charged):
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        first = refund(charged, {"DV": 1}, actor=None)
        second = refund(charged, {"DV": 1}, actor=None)
        assert quote_refund(charged, {"DV": 1}).lines[0].takes_last
        last = refund(charged, {"DV": 1}, actor=None)
    # 282.74 x 1/3 = 94.2467 -> 94.25 twice; the last takes exactly what is left: 94.24
    assert [first.amount, second.amount, last.amount] == [-9425, -9425, -9424]
    line = factories.line_of(charged, "DV")
    assert line.refunded_quantity == 3
    assert line.refunded_amount == line.amount == 28274
    assert -(first.amount + second.amount + last.amount) == line.amount
    assert refund_state(charged, NOW).label == "refundable until 2026-12-22 10:00 UTC"


def test_two_then_the_remainder(charged):
    with time_machine.travel(NOW, tick=False):
        two = refund(charged, {"DV": 2}, actor=None)
        rest = refund(charged, {"DV": 1}, actor=None)
    # 282.74 x 2/3 = 188.4933 -> 188.49, then exactly 282.74 - 188.49 = 94.25
    assert two.amount == -18849
    assert rest.amount == -(28274 - 18849)


def test_refund_is_its_own_transaction_reduces_inventory_and_is_audited(charged):
    with time_machine.travel(NOW, tick=False):
        quote = quote_refund(charged, {"DV": 1, "OV": 2})
        result = refund(charged, {"DV": 1, "OV": 2}, actor=None)
    ov = factories.line_of(charged, "OV")
    assert result.kind == TransactionKind.REFUND
    assert result.reason == TransactionReason.REFUND
    assert result.refunded_transaction_id == charged.id
    assert result.amount == -quote.total == -(9425 + ov.amount)
    assert result.created_at == NOW
    assert {(line.certificate_type.code, line.quantity, line.amount, line.refunded_line_id)
            for line in result.lines} == {("DV", 1, -9425, factories.line_of(charged, "DV").id),
                                          ("OV", 2, -ov.amount, ov.id)}
    assert ov.refunded_quantity == 2 and ov.refunded_amount == ov.amount
    sub = charged.subscription
    assert factories.inventory_of(sub, "DV") == 2
    assert factories.inventory_of(sub, "OV") == 0
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "transaction.refund")).one()
    assert event.target_id == str(result.id)
    assert event.details["refunded_transaction_id"] == charged.id
    assert event.details["total"] == result.amount


def test_quote_writes_nothing(charged):
    with time_machine.travel(NOW, tick=False):
        quote = quote_refund(charged, {"DV": 2})
    assert quote.total == 18849
    assert db.session.scalar(
        select(Transaction.id).where(Transaction.kind == TransactionKind.REFUND)) is None
    assert factories.line_of(charged, "DV").refunded_quantity == 0


def test_window_is_open_at_exactly_thirty_days(charged):
    with time_machine.travel(charged.created_at + timedelta(days=30), tick=False):
        assert refund_state(charged).refundable
        result = refund(charged, {"DV": 1}, actor=None)
    assert result.amount == -9425


def test_window_is_closed_one_second_after_thirty_days(charged):
    with time_machine.travel(charged.created_at + timedelta(days=30, seconds=1), tick=False):
        state = refund_state(charged)
        assert not state.refundable and state.code == "window_closed"
        assert "older than 30 days" in state.label
        with pytest.raises(Conflict) as refused:
            quote_refund(charged, {"DV": 1})
        with pytest.raises(Conflict):
            refund(charged, {"DV": 1}, actor=None)
    message = str(refused.value)
    assert "more than 30 days ago" in message
    assert "admin or the finance lead" in message
    assert factories.line_of(charged, "DV").refunded_quantity == 0


def test_over_refund_is_refused_and_changes_nothing(charged):
    with time_machine.travel(NOW, tick=False):
        with pytest.raises(Conflict, match="Only 3 of the 3 DV"):
            refund(charged, {"DV": 4}, actor=None)
        refund(charged, {"DV": 2}, actor=None)
        with pytest.raises(Conflict, match="Only 1 of the 3 DV certificates .* asked for 2"):
            refund(charged, {"DV": 2}, actor=None)
        refund(charged, {"DV": 1}, actor=None)
        with pytest.raises(Conflict, match="already been refunded"):
            refund(charged, {"DV": 1}, actor=None)
    line = factories.line_of(charged, "DV")
    assert (line.refunded_quantity, line.refunded_amount) == (3, line.amount)
    assert refund_state(charged).code != "fully_refunded"  # OV is still there
    with time_machine.travel(NOW, tick=False):
        refund(charged, {"OV": 2}, actor=None)
    assert refund_state(charged).label == "fully refunded"


def test_nothing_to_refund_and_unknown_types_are_refused(charged):
    with time_machine.travel(NOW, tick=False):
        with pytest.raises(InvalidInput, match="at least one line"):
            quote_refund(charged, {"DV": 0})
        with pytest.raises(InvalidInput, match="no EV certificates"):
            quote_refund(charged, {"EV": 1})
        with pytest.raises(InvalidInput, match="whole number"):
            quote_refund(charged, {"DV": -1})
        with pytest.raises(InvalidInput, match="at least one line"):
            refund_transactions([(charged, {"DV": 0})], actor=None)
        result = refund(charged, {"DV": 1}, actor=None)
        with pytest.raises(InvalidInput, match="only charges can be refunded"):
            quote_refund(result, {"DV": 1})


def test_refund_is_refused_when_inventory_was_reduced_since_the_charge(ctx):
    """A renewal to a smaller renewal inventory leaves fewer certificates than were charged."""
    with time_machine.travel(datetime(2026, 10, 25, 9, 0, tzinfo=UTC), tick=False):
        product = factories.catalog("billing")
        sub = factories.subscribe(factories.customer(), product, {"DV": 5}, term_months=1,
                        start_date=date(2026, 10, 1), auto_renew=True)
        subscriptions.set_renewal_inventory(sub, {"DV": 2}, actor=None)
        ctx.commit()
        charge = factories.charge_of(sub)
        sub_id = sub.id
    with time_machine.travel(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), tick=False):
        renewals.renew_due_subscriptions()
        charge = db.session.get(Transaction, charge.id)
        assert factories.inventory_of(charge.subscription, "DV") == 2
        with pytest.raises(Conflict, match=r"holds 2 DV certificates now.*not 3"):
            refund(charge, {"DV": 3}, actor=None)
        db.session.rollback()
        charge = db.session.get(Transaction, charge.id)
        assert factories.line_of(charge, "DV").refunded_quantity == 0
        refund(charge, {"DV": 2}, actor=None)
        assert factories.inventory_of(charge.subscription, "DV") == 0
        assert charge.subscription_id == sub_id


def test_several_transactions_refund_together_or_not_at_all(charged):
    with time_machine.travel(NOW, tick=False):
        extra = subscriptions.add_inventory(charged.subscription, {"DV": 2}, actor=None)
        db.session.commit()
        with pytest.raises(Conflict):
            refund_transactions([(charged, {"DV": 1}), (extra, {"DV": 3})], actor=None)
        db.session.rollback()
        charged = db.session.get(Transaction, charged.id)
        extra = db.session.get(Transaction, extra.id)
        assert factories.line_of(charged, "DV").refunded_quantity == 0
        done = refund_transactions([(charged, {"DV": 1}), (extra, {"DV": 2, "OV": 0})],
                                   actor=None)
    assert [t.refunded_transaction_id for t in done] == [charged.id, extra.id]
    assert factories.inventory_of(charged.subscription, "DV") == 2


# --------------------------------------------------------------------------- pages


@pytest.fixture
def customer_page(appctx):
    """A committed customer with a recent charge (3 DV, 2 OV) and one 40 days old."""
    with appctx() as session:
        with time_machine.travel(NOW - timedelta(days=40), tick=False):
            product = factories.catalog("billing")
            customer = factories.customer()
            old = factories.charge_of(factories.subscribe(customer, product, {"DV": 1}))
        with time_machine.travel(NOW - timedelta(days=2), tick=False):
            recent = factories.charge_of(factories.subscribe(customer, product, {"DV": 3, "OV": 2},
                                         start_date=date(2026, 11, 1)))
        session.commit()
        return {"customer": customer.id, "old": old.id, "recent": recent.id}


@pytest.mark.clock(NOW)
def test_finance_refunds_through_counts_review_and_confirm(customer_page, client_as, appctx):
    ids = customer_page
    client = client_as("finance")
    base = f"/admin/billing/customer/{ids['customer']}"
    page = client.get(f"{base}/transactions").get_data(as_text=True)
    assert "refundable until 2026-12-20" in page
    assert "window closed — older than 30 days" in page
    assert f'name="transaction" value="{ids["recent"]}"' in page
    assert f'name="transaction" value="{ids["old"]}"' not in page
    counts = client.get(f"{base}/refund?transaction={ids['recent']}")
    assert counts.status_code == 200
    assert f"count-{ids['recent']}-DV" in counts.get_data(as_text=True)
    form = {"transaction": ids["recent"], f"count-{ids['recent']}-DV": "1",
            f"count-{ids['recent']}-OV": "0"}
    review = client.post(f"{base}/refund", data={**form, "step": "review"})
    assert review.status_code == 200
    html = review.get_data(as_text=True)
    # 3 DV charged on 11-20 for 346 of 365 days: 300.00 x 346/365 = 284.38; 1/3 = 94.79
    with appctx():
        assert factories.line_of(db.session.get(Transaction, ids["recent"]), "DV").amount == 28438
    one = 9479
    assert f"${one / 100:,.2f}" in html and "Process Refund" in html
    with appctx():
        assert db.session.scalar(select(Transaction.id).where(
            Transaction.kind == TransactionKind.REFUND)) is None
    done = client.post(f"{base}/refund", data={**form, "step": "confirm"})
    assert done.status_code == 303
    assert done.headers["Location"].endswith(f"{base}/transactions")
    page = client.get(f"{base}/transactions").get_data(as_text=True)
    assert f"refund of T{ids['recent']}" in page
    with appctx():
        refund_row = db.session.scalars(select(Transaction).where(
            Transaction.kind == TransactionKind.REFUND)).one()
        assert refund_row.amount == -one
        assert refund_row.actor.email == "finance@staff.test"


@pytest.mark.clock(NOW)
def test_refusals_are_flashed_and_change_nothing(customer_page, client_as, appctx):
    ids = customer_page
    client = client_as("finance")
    base = f"/admin/billing/customer/{ids['customer']}"
    too_many = client.post(f"{base}/refund", data={
        "transaction": ids["recent"], f"count-{ids['recent']}-DV": "4", "step": "confirm"})
    assert too_many.status_code == 303
    followed = client.get(too_many.headers["Location"]).get_data(as_text=True)
    assert "Only 3 of the 3 DV certificates" in followed
    old = client.post(f"{base}/refund", data={
        "transaction": ids["old"], f"count-{ids['old']}-DV": "1", "step": "review"})
    assert "more than 30 days ago" in old.get_data(as_text=True)
    bad = client.post(f"{base}/refund", data={
        "transaction": ids["recent"], f"count-{ids['recent']}-DV": "x", "step": "review"})
    assert bad.status_code == 400
    other = client.get(f"/admin/billing/customer/{ids['customer'] + 99}/refund"
                       f"?transaction={ids['recent']}")
    assert other.status_code == 404
    with appctx():
        assert db.session.scalar(select(Transaction.id).where(
            Transaction.kind == TransactionKind.REFUND)) is None


@pytest.mark.clock(NOW)
def test_support_sees_transactions_but_cannot_refund(customer_page, client_as, appctx):
    ids = customer_page
    client = client_as("support")
    base = f"/admin/billing/customer/{ids['customer']}"
    page = client.get(f"{base}/transactions")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "refundable until" in html
    assert "Process refund" not in html and 'name="transaction"' not in html
    assert client.get(f"{base}/refund?transaction={ids['recent']}").status_code == 403
    crafted = client.post(f"{base}/refund", data={
        "transaction": ids["recent"], f"count-{ids['recent']}-DV": "1", "step": "confirm"})
    assert crafted.status_code == 403
    with appctx():
        assert db.session.scalar(select(Transaction.id).where(
            Transaction.kind == TransactionKind.REFUND)) is None


def test_customer_transactions_url(app, customer_page):
    from backoffice.views.finance import customer_transactions_url

    with app.test_request_context():
        assert customer_transactions_url(customer_page["customer"]) == \
            f"/admin/billing/customer/{customer_page['customer']}/transactions"
