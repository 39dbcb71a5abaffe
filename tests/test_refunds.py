"""Refunds: the 30-day window, counts, rounding with remainders, inventory and audit."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import renewals, subscriptions
from backoffice.errors import Conflict, InvalidInput
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    Transaction,
    TransactionKind,
    TransactionReason,
)
from backoffice.refunds import (
    quote_refund,
    quote_refunds,
    refund,
    refund_limits,
    refund_state,
    refund_transactions,
)
from tests import factories
from tests.conftest import review_then_confirm, review_token_from

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
    assert refund_state(charged, NOW).label == "refundable until Dec 22, 2026, 10:00:00\u202fAM UTC"


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
    assert "no role can refund it" in message
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


def test_one_review_covers_several_charges_and_holds_only_while_nothing_changes(charged):
    with time_machine.travel(NOW, tick=False):
        extra = subscriptions.add_inventory(charged.subscription, {"DV": 2}, actor=None)
        db.session.commit()
        requests = [(charged, {"DV": 1, "OV": 0}), (extra, {"DV": 2}), (charged, {"OV": 0})]
        review = quote_refunds(requests)
        assert [q.transaction_id for q in review.quotes] == [charged.id, extra.id]
        assert review.total == 9425 + factories.line_of(extra, "DV").amount
        assert review.currency == "USD" and review.customer_id == charged.customer_id
        with pytest.raises(InvalidInput, match="at least one line"):
            quote_refunds([(charged, {"DV": 0})])
        refund(charged, {"DV": 1}, actor=None)  # someone else, after the review
        assert quote_refunds(requests) != review  # what was refunded before is in the review
        with pytest.raises(Conflict, match="changed since the refund was reviewed"):
            refund_transactions(requests, actor=None, reviewed=review)
        db.session.rollback()
        with pytest.raises(Conflict, match="not the ones reviewed"):
            refund_transactions(requests[1:], actor=None, reviewed=quote_refunds(requests))
        db.session.rollback()
        charged = db.session.get(Transaction, charged.id)
        extra = db.session.get(Transaction, extra.id)
        requests = [(charged, {"DV": 1}), (extra, {"DV": 2})]
        done = refund_transactions(requests, actor=None, reviewed=quote_refunds(requests))
    assert [t.refunded_transaction_id for t in done] == [charged.id, extra.id]


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


def _refunds() -> list[Transaction]:
    return list(db.session.scalars(select(Transaction).where(
        Transaction.kind == TransactionKind.REFUND).order_by(Transaction.id)))


def _refund_form(charge_id: int, **counts) -> dict:
    """What the counts page posts: the selected charge and a count per certificate code."""
    return {"transaction": str(charge_id),
            **{f"count_{charge_id}_{code}": value for code, value in counts.items()}}


@pytest.mark.clock(NOW)
def test_finance_refunds_through_counts_review_and_confirm(customer_page, client_as, appctx):
    ids = customer_page
    client = client_as("finance")
    base = f"/admin/billing/customer/{ids['customer']}"
    page = client.get(f"{base}/transactions").get_data(as_text=True)
    assert "refundable until Dec 20, 2026" in page
    assert "window closed — older than 30 days" in page
    assert f'name="transaction" value="{ids["recent"]}"' in page
    assert f'name="transaction" value="{ids["old"]}"' not in page
    counts = client.get(f"{base}/refund?transaction={ids['recent']}")
    assert counts.status_code == 200
    html = counts.get_data(as_text=True)
    assert f'name="count_{ids["recent"]}_DV"' in html
    assert f'aria-label="Refund DV from T{ids["recent"]}"' in html
    assert f'name="transaction" type="hidden" value="{ids["recent"]}"' in html or \
        f'name="transaction" value="{ids["recent"]}"' in html
    review, done = review_then_confirm(client, f"{base}/refund",
                                       _refund_form(ids["recent"], DV="1", OV=""))
    html = review.get_data(as_text=True)
    # 3 DV charged on 11-20 for 346 of 365 days: 300.00 x 346/365 = 284.38; 1/3 = 94.79
    with appctx():
        assert factories.line_of(db.session.get(Transaction, ids["recent"]), "DV").amount == 28438
    assert "$94.79" in html and "Process Refund" in html
    assert done.status_code == 303
    assert done.headers["Location"].endswith(f"{base}/transactions")
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert f"Refunded T{ids['recent']}: $94.79 goes on the customer" in page
    assert f"refund of T{ids['recent']}" in page
    with appctx():
        (refund_row,) = _refunds()
        assert refund_row.amount == -9479
        assert refund_row.actor.email == "finance@staff.test"
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "transaction.refund")) == 1


def _refund_link(html: str, charge_id: int) -> str:
    """The address of a charge's Refund action on a page."""
    match = re.search(rf'href="([^"]+)"[^>]*data-testid="refund-{charge_id}"', html)
    assert match, f"no Refund action for T{charge_id}"
    return match.group(1).replace("&amp;", "&")


@pytest.mark.clock(NOW)
@pytest.mark.parametrize("page", ["customer", "subscription"])
def test_each_refundable_charge_on_the_record_page_has_a_refund_action(
        customer_page, client_as, appctx, page):
    ids = customer_page
    with appctx() as session:
        recent = session.get(Transaction, ids["recent"])
        address = (f"/admin/customer/{ids['customer']}/transactions"
                   if page == "customer" else
                   f"/admin/subscription/details/?id={recent.subscription_id}")
    html = client_as("finance").get(address).get_data(as_text=True)
    assert f"/admin/billing/customer/{ids['customer']}/refund?transaction={ids['recent']}" \
        == _refund_link(html, ids["recent"])
    if page == "customer":
        cell = re.search(rf'data-testid="refund-cell-{ids["old"]}">(.*?)</td>', html).group(1)
        assert "window closed" in cell and "Refund<" not in cell
    support = client_as("support", email="support2@staff.test").get(address)
    assert 'data-testid="refund-' not in support.get_data(as_text=True)


@pytest.mark.clock(NOW)
def test_the_refund_action_opens_the_counts_filled_with_everything_refundable(
        customer_page, client_as, appctx):
    """Refund, Review, Process Refund: three clicks refund the whole charge; lowering a
    count first still makes a partial refund."""
    ids = customer_page
    client = client_as("finance")
    record = client.get(f"/admin/customer/{ids['customer']}/transactions")
    counts = client.get(_refund_link(record.get_data(as_text=True), ids["recent"]))
    html = counts.get_data(as_text=True)
    for code, count in (("DV", 3), ("OV", 2)):
        field = re.search(rf'<input[^>]*name="count_{ids["recent"]}_{code}"[^>]*>', html).group(0)
        assert f'value="{count}"' in field and f'max="{count}"' in field
    review, done = review_then_confirm(
        client, f"/admin/billing/customer/{ids['customer']}/refund",
        _refund_form(ids["recent"], DV="3", OV="2"))
    assert done.status_code == 303
    with appctx() as session:
        charge = session.get(Transaction, ids["recent"])
        (refunded,) = _refunds()
        assert refunded.amount == -charge.amount
        assert all(line.refunded_quantity == line.quantity for line in charge.lines)
    again = client.get(f"/admin/customer/{ids['customer']}/transactions")
    assert f'data-testid="refund-{ids["recent"]}"' not in again.get_data(as_text=True)


@pytest.mark.clock(NOW)
@pytest.mark.parametrize(("started_from", "lands_on"), [
    ("/admin/customer/{customer}/transactions", "/admin/customer/{customer}/transactions"),
    ("/admin/billing/customer/{customer}/transactions",
     "/admin/billing/customer/{customer}/transactions"),
    ("//evil.example/admin/", "/admin/billing/customer/{customer}/transactions"),
])
def test_a_refund_lands_where_it_was_started(customer_page, client_as, started_from, lands_on):
    ids = customer_page
    client = client_as("finance")
    url = f"/admin/billing/customer/{ids['customer']}/refund"
    counts = client.get(f"{url}?transaction={ids['recent']}",
                        headers={"Referer": "http://localhost"
                                 + started_from.format(customer=ids["customer"])})
    carried = re.search(r'name="url" value="([^"]*)"', counts.get_data(as_text=True))
    form = {**_refund_form(ids["recent"], DV="1", OV="0"),
            **({"url": carried.group(1)} if carried else {})}
    review, done = review_then_confirm(client, url, form)
    assert done.status_code == 303
    assert done.headers["Location"].endswith(lands_on.format(customer=ids["customer"]))


@pytest.mark.clock(NOW)
def test_the_counts_start_at_what_the_subscription_still_holds(customer_page, appctx):
    ids = customer_page
    with appctx() as session:
        charge = session.get(Transaction, ids["recent"])
        refund(charge, {"DV": 1}, actor=None)
        held = {row.certificate_type.code: row for row in charge.subscription.inventory}
        held["OV"].quantity = 1  # as after a renewal at a lower quantity
        session.flush()
        assert refund_limits([charge]) == {charge.id: {"DV": 2, "OV": 1}}
        held["OV"].quantity = 0
        session.flush()
        assert refund_limits([charge]) == {charge.id: {"DV": 2, "OV": 0}}
        session.rollback()


@pytest.mark.clock(NOW)
def test_a_page_with_nothing_refundable_offers_no_refund(customer_page, client_as, appctx):
    ids = customer_page
    with appctx() as session:
        refund(session.get(Transaction, ids["recent"]), {"DV": 3, "OV": 2}, actor=None)
        session.commit()
    html = client_as("finance").get(
        f"/admin/billing/customer/{ids['customer']}/transactions").get_data(as_text=True)
    assert 'data-testid="process-refund"' not in html and 'name="transaction"' not in html
    assert 'data-testid="refund-' not in html
    assert "Nothing on this page can be refunded" in html


@pytest.mark.clock(NOW)
def test_the_review_alone_refunds_nothing(customer_page, client_as, appctx):
    ids = customer_page
    client = client_as("finance")
    review = client.post(f"/admin/billing/customer/{ids['customer']}/refund",
                         data={**_refund_form(ids["recent"], DV="2"), "step": "review"})
    assert review.status_code == 200 and 'name="review_token"' in review.get_data(as_text=True)
    with appctx():
        assert _refunds() == []
        assert factories.line_of(db.session.get(Transaction, ids["recent"]),
                                 "DV").refunded_quantity == 0


@pytest.mark.clock(NOW)
def test_one_review_covers_every_selected_charge(customer_page, client_as, appctx):
    ids = customer_page
    with appctx() as session:
        recent = session.get(Transaction, ids["recent"])
        extra = subscriptions.add_inventory(recent.subscription, {"OV": 1}, actor=None)
        session.commit()
        extra_id = extra.id
    client = client_as("finance")
    base = f"/admin/billing/customer/{ids['customer']}"
    counts = client.get(f"{base}/refund?transaction={ids['recent']}&transaction={extra_id}")
    assert f"count_{extra_id}_OV" in counts.get_data(as_text=True)
    form = {**_refund_form(ids["recent"], DV="1"), f"count_{extra_id}_OV": "1",
            "transaction": [str(ids["recent"]), str(extra_id)]}
    review, done = review_then_confirm(client, f"{base}/refund", form)
    html = review.get_data(as_text=True)
    assert f"Refund of T{ids['recent']}" in html and f"Refund of T{extra_id}" in html
    assert done.status_code == 303
    with appctx():
        assert [t.refunded_transaction_id for t in _refunds()] == [ids["recent"], extra_id]


@pytest.mark.clock(NOW)
def test_a_second_confirm_of_the_same_review_refunds_nothing_more(customer_page, client_as,
                                                                  appctx):
    ids = customer_page
    client = client_as("finance")
    url = f"/admin/billing/customer/{ids['customer']}/refund"
    form = _refund_form(ids["recent"], DV="1")
    review, first = review_then_confirm(client, url, form)
    assert first.status_code == 303
    token = review_token_from(review.get_data(as_text=True))
    again = client.post(url, data={**form, "step": "confirm", "review_token": token})
    assert again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already applied" in page and "nothing was changed" in page
    with appctx():
        assert len(_refunds()) == 1
        line = factories.line_of(db.session.get(Transaction, ids["recent"]), "DV")
        assert (line.refunded_quantity, line.refunded_amount) == (1, 9479)
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "transaction.refund")) == 1


@pytest.mark.clock(NOW)
def test_a_refund_made_meanwhile_makes_the_review_stale(customer_page, client_as, appctx):
    """Someone else refunds a certificate of the same line between review and Confirm: the
    review no longer holds, nothing is refunded, and the new review is shown."""
    ids = customer_page
    client = client_as("finance")
    url = f"/admin/billing/customer/{ids['customer']}/refund"
    form = _refund_form(ids["recent"], DV="2")
    review = client.post(url, data={**form, "step": "review"})
    assert "$189.59" in review.get_data(as_text=True)  # 284.38 x 2/3
    token = review_token_from(review.get_data(as_text=True))
    with appctx() as session:
        refund(session.get(Transaction, ids["recent"]), {"DV": 1}, actor=None)
        session.commit()
    stale = client.post(url, data={**form, "step": "confirm", "review_token": token})
    html = stale.get_data(as_text=True)
    assert stale.status_code == 200
    assert "changed since you reviewed it" in html
    assert "3 (1 refunded)" in html  # the new review: two of the two left, the rest
    assert "$189.59" in html and "(the rest of the line)" in html
    with appctx():
        assert [t.actor_id for t in _refunds()] == [None]  # only the one made meanwhile
    done = client.post(url, data={**form, "step": "confirm",
                                  "review_token": review_token_from(html)})
    assert done.status_code == 303
    with appctx():
        line = factories.line_of(db.session.get(Transaction, ids["recent"]), "DV")
        assert (line.refunded_quantity, line.refunded_amount) == (3, 28438)


@pytest.mark.clock(NOW + timedelta(days=28) - timedelta(minutes=5))
def test_the_window_closing_between_review_and_confirm_refunds_nothing(customer_page,
                                                                       client_as, appctx):
    """The recent charge was made on 11-20 10:00; its window closes on 12-20 10:00. Reviewed
    five minutes before, confirmed five minutes after: refused, with the reason."""
    ids = customer_page
    client = client_as("finance")
    url = f"/admin/billing/customer/{ids['customer']}/refund"
    form = _refund_form(ids["recent"], DV="1")
    review = client.post(url, data={**form, "step": "review"})
    assert "refundable until Dec 20, 2026" in review.get_data(as_text=True)
    token = review_token_from(review.get_data(as_text=True))
    with time_machine.travel(NOW + timedelta(days=28, minutes=5), tick=False):
        late = client.post(url, data={**form, "step": "confirm", "review_token": token})
    html = late.get_data(as_text=True)
    assert late.status_code == 200
    assert "more than 30 days ago" in html and "no role can refund it" in html
    assert 'name="review_token"' not in html
    with appctx():
        assert _refunds() == []
        assert factories.line_of(db.session.get(Transaction, ids["recent"]),
                                 "DV").refunded_quantity == 0


@pytest.mark.clock(NOW)
def test_refusals_are_shown_and_change_nothing(customer_page, client_as, appctx):
    ids = customer_page
    client = client_as("finance")
    url = f"/admin/billing/customer/{ids['customer']}/refund"
    too_many = client.post(url, data={**_refund_form(ids["recent"], DV="4"), "step": "review"})
    assert "Only 3 of the 3 DV certificates" in too_many.get_data(as_text=True)
    # a Confirm without a review is reviewed first, and refused the same way
    crafted = client.post(url, data={**_refund_form(ids["recent"], DV="4"), "step": "confirm"})
    assert "Only 3 of the 3 DV certificates" in crafted.get_data(as_text=True)
    old = client.post(url, data={**_refund_form(ids["old"], DV="1"), "step": "review"})
    assert "more than 30 days ago" in old.get_data(as_text=True)
    nothing = client.post(url, data={**_refund_form(ids["recent"], DV="0", OV=""),
                                     "step": "review"})
    assert "Enter how many certificates to refund for at least one line." in \
        nothing.get_data(as_text=True)
    foreign = client.post(url, data={**_refund_form(ids["recent"], EV="1"), "step": "review"})
    assert "at least one line" in foreign.get_data(as_text=True)  # no EV field: ignored
    with appctx():
        assert _refunds() == []


COUNT_MESSAGE = "Enter a whole number from 0 to 100,000."


@pytest.mark.clock(NOW)
@pytest.mark.parametrize(("count", "message"), [
    ("x", COUNT_MESSAGE), ("²", COUNT_MESSAGE), ("①", COUNT_MESSAGE), ("-1", COUNT_MESSAGE),
    ("1.5", COUNT_MESSAGE), ("905970020212414042476352", COUNT_MESSAGE),
    ("1" * 5000, COUNT_MESSAGE), ("100001", COUNT_MESSAGE),
    ("1\x00", "Remove the control characters"),
])
def test_bad_counts_are_a_message_on_the_field(customer_page, client_as, appctx, count,
                                               message):
    ids = customer_page
    client = client_as("finance")
    for step in ("review", "confirm"):
        response = client.post(f"/admin/billing/customer/{ids['customer']}/refund",
                               data={**_refund_form(ids["recent"], DV=count), "step": step})
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert message in html and f'data-testid="error-count_{ids["recent"]}_DV"' in html
        assert 'name="review_token"' not in html
    with appctx():
        assert _refunds() == []


@pytest.mark.clock(NOW)
@pytest.mark.parametrize("selected", ["²", "①", "1" * 5000, "905970020212414042476352",
                                      "-1", "0", "1 OR 1=1", "1\x00", ""])
def test_malformed_charge_selections_are_a_message(customer_page, client_as, appctx,
                                                   selected):
    ids = customer_page
    client = client_as("finance")
    base = f"/admin/billing/customer/{ids['customer']}"
    requests = (
        lambda: client.get(f"{base}/refund", query_string={"transaction": selected}),
        lambda: client.post(f"{base}/refund", data={"transaction": selected, "step": "review",
                                                    f"count_{ids['recent']}_DV": "1"}))
    for send in requests:
        response = send()
        assert response.status_code == 303
        assert response.headers["Location"].endswith(f"{base}/transactions")
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert ("Choose the rows from the list on the page." in page
                or "Select at least one charge to refund." in page
                or "Remove the control characters" in page)
    with appctx():
        assert _refunds() == []


@pytest.mark.clock(NOW)
def test_too_many_charges_at_once_are_a_message(customer_page, client_as):
    client = client_as("finance")
    base = f"/admin/billing/customer/{customer_page['customer']}"
    response = client.get(f"{base}/refund",
                          query_string={"transaction": [str(i) for i in range(1, 52)]})
    assert response.status_code == 303
    assert "Choose at most 50 rows at once." in client.get(
        response.headers["Location"]).get_data(as_text=True)


@pytest.mark.clock(NOW)
def test_charges_of_another_customer_refunds_and_unknown_ids_are_not_found(
        customer_page, client_as, appctx):
    ids = customer_page
    with appctx() as session:
        other = factories.customer("Globex")
        session.commit()
        other_id = other.id
    with appctx() as session, time_machine.travel(NOW, tick=False):
        refunded = refund(session.get(Transaction, ids["recent"]), {"DV": 1}, actor=None)
        session.commit()
        refund_id = refunded.id
    client = client_as("finance")
    base = f"/admin/billing/customer/{ids['customer']}"
    assert client.get(f"/admin/billing/customer/{other_id}/refund"
                      f"?transaction={ids['recent']}").status_code == 404
    assert client.post(f"/admin/billing/customer/{other_id}/refund",
                       data={**_refund_form(ids["recent"], DV="1"),
                             "step": "confirm"}).status_code == 404
    assert client.get(f"{base}/refund?transaction={refund_id}").status_code == 404
    assert client.get(f"{base}/refund?transaction=2147483647").status_code == 404
    assert client.get(f"{base}/refund?transaction={ids['recent']}"
                      "&transaction=999999").status_code == 404
    assert client.get(f"/admin/billing/customer/{'9' * 30}/refund").status_code == 404
    assert client.get(f"/admin/billing/customer/{'9' * 30}/transactions").status_code == 404
    with appctx():
        assert len(_refunds()) == 1


@pytest.mark.clock(NOW)
def test_support_sees_transactions_but_cannot_refund(customer_page, client_as, appctx):
    ids = customer_page
    client = client_as("support")
    base = f"/admin/billing/customer/{ids['customer']}"
    page = client.get(f"{base}/transactions")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "refundable until" in html
    assert "Refund selected" not in html and 'name="transaction"' not in html
    assert f'data-testid="refund-{ids["recent"]}"' not in html
    assert client.get(f"{base}/refund?transaction={ids['recent']}").status_code == 403
    for step in ("review", "confirm"):
        crafted = client.post(f"{base}/refund",
                              data={**_refund_form(ids["recent"], DV="1"), "step": step})
        assert crafted.status_code == 403
    with appctx():
        assert db.session.scalar(select(Transaction.id).where(
            Transaction.kind == TransactionKind.REFUND)) is None


def test_customer_transactions_url(app, customer_page):
    from backoffice.views.finance import customer_transactions_url

    with app.test_request_context():
        assert customer_transactions_url(customer_page["customer"]) == \
            f"/admin/billing/customer/{customer_page['customer']}/transactions"
