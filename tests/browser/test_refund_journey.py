"""Finance refunds part of a recent charge in Chromium and finds it on the next invoice;
an old charge says why it cannot be refunded; support cannot refund at all."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from dateutil.relativedelta import relativedelta
from playwright.sync_api import expect

from backoffice.clock import clock_at, utcnow
from backoffice.extensions import db
from backoffice.invoicing import issue_monthly_invoices
from tests import factories
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def _customer_with_charges(appctx) -> dict:
    """A customer with a 2-day-old charge (3 DV, 2 OV) and a 40-day-old one (1 DV)."""
    now = utcnow()
    with appctx() as session:
        with clock_at(now - timedelta(days=40)):
            product = factories.catalog("billing")
            customer = factories.customer("Initech")
            old = factories.charge_of(factories.subscribe(customer, product, {"DV": 1}))
        with clock_at(now - timedelta(days=2)):
            recent = factories.charge_of(factories.subscribe(customer, product, {"DV": 3, "OV": 2}))
        session.commit()
        return {"customer": customer.id, "old": old.id, "recent": recent.id,
                "url": f"/admin/billing/customer/{customer.id}/transactions"}


def _sign_in_again(page, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.clock(datetime(2026, 11, 20, 10, tzinfo=UTC), tick=True)
def test_finance_refunds_part_of_a_recent_charge_and_finds_it_on_the_next_invoice(
        appctx, sign_in):
    ids = _customer_with_charges(appctx)
    page = sign_in("finance")
    page.goto(ids["url"])
    expect(page.get_by_test_id(f"state-{ids['old']}")).to_contain_text(
        "window closed — older than 30 days")
    expect(page.get_by_test_id(f"state-{ids['old']}")).to_contain_text("no role can refund it")
    expect(page.get_by_test_id(f"select-{ids['old']}")).to_have_count(0)
    expect(page.get_by_test_id(f"state-{ids['recent']}")).to_contain_text("refundable until")

    page.get_by_test_id(f"select-{ids['recent']}").check()
    page.get_by_test_id("process-refund").click()
    # The counts start at everything refundable; a partial refund lowers them.
    expect(page.get_by_label(f"Refund OV from T{ids['recent']}")).to_have_value("2")
    page.get_by_label(f"Refund DV from T{ids['recent']}").fill("1")
    page.get_by_label(f"Refund OV from T{ids['recent']}").fill("0")
    page.get_by_role("button", name="Review refund").click()
    # 3 DV for a full 12-month term: 300.00; one certificate: 100.00
    expect(page.get_by_test_id(f"refund-line-{ids['recent']}-DV")).to_contain_text("$100.00")
    expect(page.get_by_test_id("refund-total")).to_have_text("$100.00")
    page.get_by_role("button", name="Process Refund").click()

    expect(page).to_have_url(re.compile(re.escape(ids["url"]) + "$"))
    expect(page.locator(".alert-success")).to_contain_text(f"Refunded T{ids['recent']}")
    rows = page.get_by_test_id("transactions").locator("tbody tr")
    expect(rows.first).to_contain_text(f"refund of T{ids['recent']}")
    expect(rows.first).to_contain_text("-$100.00")
    expect(rows.first).to_contain_text("finance@staff.test")
    expect(page.get_by_test_id(f"transaction-{ids['recent']}")).to_contain_text(
        "DV × 3 (1 refunded)")

    # The month ends; its invoice carries the charge and the refund as a negative line.
    month = utcnow().date().replace(day=1)
    next_month = datetime.combine(month + relativedelta(months=1), datetime.min.time(),
                                  tzinfo=UTC)
    with time_machine.travel(next_month + timedelta(hours=1), tick=True):
        with appctx() as session:
            invoices = issue_monthly_invoices(month=month)
            session.commit()
            assert len(invoices) == 1
        page.goto(ids["url"])
        expect(page).to_have_url(re.compile("/login"))  # the sign-in of 11 days ago expired
        _sign_in_again(page, "finance@staff.test")
        page.goto(ids["url"])
        page.get_by_test_id(f"transaction-{ids['recent']}").get_by_role(
            "link", name=re.compile(r"^INV-")).click()
        expect(page.get_by_test_id("invoice")).to_contain_text(f"Refund of T{ids['recent']}")
        lines = page.get_by_test_id("invoice-lines")
        expect(lines.locator("tbody tr").filter(has_text="Refund of")).to_contain_text(
            "-$100.00")
        # 100.00 (old DV) + 300.00 DV + 240.00 OV - 100.00 refund
        expect(page.get_by_test_id("invoice-total")).to_have_text("$540.00")


@pytest.mark.clock(datetime(2026, 11, 20, 10, tzinfo=UTC), tick=True)
def test_finance_refunds_a_whole_charge_in_three_clicks_from_the_customer_page(appctx, sign_in):
    ids = _customer_with_charges(appctx)
    page = sign_in("finance")
    page.goto(f"/admin/customer/{ids['customer']}/")
    page.get_by_role("link", name="Transactions & Refunds", exact=True).click()
    expect(page.get_by_test_id(f"refund-cell-{ids['old']}")).to_have_text("window closed")
    expect(page.get_by_test_id(f"refund-{ids['old']}")).to_have_count(0)

    page.get_by_test_id(f"refund-{ids['recent']}").click()  # 1
    expect(page.get_by_label(f"Refund DV from T{ids['recent']}")).to_have_value("3")
    expect(page.get_by_label(f"Refund OV from T{ids['recent']}")).to_have_value("2")
    page.get_by_role("button", name="Review refund").click()  # 2
    # the whole charge: 3 DV at 100.00 and 2 OV at 120.00 for a full 12-month term
    expect(page.get_by_test_id("refund-total")).to_have_text("$540.00")
    page.get_by_role("button", name="Process Refund").click()  # 3

    expect(page.locator(".alert-success")).to_contain_text(
        f"Refunded T{ids['recent']}: $540.00 goes on the customer's next invoice.")
    # back on the customer's tab, where the charge now reads fully refunded
    expect(page).to_have_url(re.compile(rf"/admin/customer/{ids['customer']}/transactions$"))
    expect(page.get_by_test_id(f"refund-cell-{ids['recent']}")).to_have_text("fully refunded")
    expect(page.get_by_test_id(f"refund-{ids['recent']}")).to_have_count(0)
    page.goto(ids["url"])
    expect(page.get_by_test_id("process-refund")).to_have_count(0)
    expect(page.get_by_test_id("nothing-refundable")).to_be_visible()
    with appctx():
        from backoffice.models import Transaction, TransactionKind

        (refund,) = db.session.query(Transaction).filter_by(kind=TransactionKind.REFUND).all()
        assert (refund.refunded_transaction_id, refund.amount) == (ids["recent"], -54000)


def test_support_sees_transactions_without_a_refund_button_and_cannot_post(appctx, sign_in):
    ids = _customer_with_charges(appctx)
    page = sign_in("support")
    page.goto(ids["url"])
    expect(page.get_by_test_id(f"state-{ids['recent']}")).to_contain_text("refundable until")
    expect(page.get_by_test_id("process-refund")).to_have_count(0)
    expect(page.locator('input[name="transaction"]')).to_have_count(0)
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    crafted = page.request.post(
        f"/admin/billing/customer/{ids['customer']}/refund",
        form={"csrf_token": token, "transaction": str(ids["recent"]),
              f"count_{ids['recent']}_DV": "1", "step": "confirm"})
    assert crafted.status == 403
    with appctx():
        from backoffice.models import Transaction, TransactionKind

        assert db.session.query(Transaction).filter_by(kind=TransactionKind.REFUND).count() == 0
