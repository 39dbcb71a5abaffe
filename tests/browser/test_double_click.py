"""A double-clicked Confirm sends two submissions and is applied once."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from backoffice import refunds, subscriptions
from backoffice.extensions import db
from backoffice.models import AppliedOperation, Subscription, Transaction, TransactionKind
from tests import factories

pytestmark = [pytest.mark.browser,
              pytest.mark.clock(datetime(2026, 11, 22, 10, tzinfo=UTC), tick=True)]


def _count_confirms(page, path: str) -> list[str]:
    """Every Confirm POST the page sends to ``path``, as they leave the browser."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url)
            if r.method == "POST" and path in r.url and "step=confirm" in (r.post_data or "")
            else None)
    return sent


def _slow(monkeypatch, module, name: str, seconds: float = 1.0) -> None:
    """Make the server take a while over ``module.name``, as a loaded server would, so the
    second click comes while the first submission is still being applied."""
    real = getattr(module, name)

    def slow(*args, **kwargs):
        result = real(*args, **kwargs)
        time.sleep(seconds)
        return result

    monkeypatch.setattr(module, name, slow)


def test_double_clicking_confirm_on_a_new_subscription_charges_once(appctx, sign_in,
                                                                      monkeypatch):
    with appctx() as session:
        factories.catalog()
        customer_id = factories.customer("Double Click Ltd").id
        session.commit()
    page = sign_in("support")
    path = f"/admin/customer/subscribe/{customer_id}/"
    page.goto(path)
    page.get_by_label("Product").select_option(label="Business SSL")
    page.get_by_role("button", name="Choose").click()
    page.get_by_label("Term").select_option("12")
    page.get_by_label("Domain Validated (DV)").fill("2")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_test_id("quote-total")).to_have_text("$100.00")

    sent = _count_confirms(page, path)
    _slow(monkeypatch, subscriptions, "add_subscription")
    # A second click 150 ms after the first, while the first is still being applied.
    page.get_by_role("button", name="Confirm").evaluate(
        "button => { button.click(); setTimeout(() => button.click(), 150); }")
    # The browser shows the answer to the second submission: the first one's result.
    expect(page.locator(".alert").filter(has_text="already applied")).to_be_visible()
    # the customer's Subscriptions tab, with the one subscription
    expect(page.get_by_test_id("subscriptions").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("subscriptions")).to_contain_text("DV 2 / 2")
    assert len(sent) == 2, sent
    with appctx():
        assert db.session.scalar(select(func.count(Subscription.id))) == 1
        assert db.session.scalar(select(func.count(Transaction.id))) == 1
        assert db.session.scalar(select(func.count(AppliedOperation.id))) == 1


def test_double_clicking_process_refund_refunds_once(appctx, sign_in, monkeypatch):
    with appctx() as session:
        customer = factories.customer("Refund Twice Ltd")
        charge = factories.charge_of(factories.subscribe(
            customer, factories.catalog("billing"), {"DV": 3}))
        session.commit()
        customer_id, charge_id = customer.id, charge.id
    page = sign_in("finance")
    url = f"/admin/billing/customer/{customer_id}/transactions"
    page.goto(url)
    page.get_by_test_id(f"select-{charge_id}").check()
    page.get_by_test_id("process-refund").click()
    page.get_by_label(f"Refund DV from T{charge_id}").fill("1")
    page.get_by_role("button", name="Review refund").click()
    expect(page.get_by_test_id("refund-total")).to_have_text("$100.00")

    path = f"/admin/billing/customer/{customer_id}/refund"
    sent = _count_confirms(page, path)
    _slow(monkeypatch, refunds, "refund_transactions")
    page.get_by_role("button", name="Process Refund").evaluate(
        "button => { button.click(); setTimeout(() => button.click(), 150); }")
    expect(page.locator(".alert").filter(has_text="already applied")).to_be_visible()
    assert len(sent) == 2, sent
    with appctx():
        refunds_made = db.session.scalars(select(Transaction).where(
            Transaction.kind == TransactionKind.REFUND)).all()
        assert [r.amount for r in refunds_made] == [-10000]
        assert db.session.scalar(select(func.count(AppliedOperation.id))) == 1
