"""Finance previews a customer's next invoice in Chromium, from Monthly invoices and from
the customer page, then issues the month once it is over and finds the same lines."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import time_machine
from playwright.sync_api import expect

from backoffice import subscriptions
from backoffice.clock import clock_at
from backoffice.refunds import refund
from tests import factories

pytestmark = pytest.mark.browser


def _november(appctx) -> int:
    """Initech: 3 DV and 1 OV on 11-10, 1 DV refunded on 11-12, 2 DV added on 11-18."""
    with appctx() as session:
        with clock_at(datetime(2026, 11, 10, 9, tzinfo=UTC)):
            product = factories.catalog("billing")
            customer = factories.customer("Initech")
            subscription = factories.subscribe(customer, product, {"DV": 3, "OV": 1})
            factories.subscribe(factories.customer("Globex"), product, {"DV": 1})
        with clock_at(datetime(2026, 11, 12, 9, tzinfo=UTC)):
            refund(factories.charge_of(subscription), {"DV": 1}, actor=None)
        with clock_at(datetime(2026, 11, 18, 9, tzinfo=UTC)):
            subscriptions.add_inventory(subscription, {"DV": 2}, actor=None)
        session.commit()
        return customer.id


def _open_monthly_invoices(page, month: str | None = None) -> None:
    page.locator("#admin-navbar-collapse").get_by_role("link", name="Finance", exact=True).click()
    page.locator("#admin-navbar-collapse").get_by_role("link", name="Monthly invoices").click()
    if month:
        page.get_by_test_id("month-form").get_by_label("Month").fill(month)
        page.get_by_test_id("month-form").get_by_role("button", name="Show").click()


def _lines(page) -> list[str]:
    return page.get_by_test_id("invoice-lines").locator("tbody tr").all_inner_texts()


@pytest.mark.clock(datetime(2026, 11, 30, 21, tzinfo=UTC), tick=True)
def test_finance_previews_the_next_invoice_and_issuing_writes_the_same(appctx, sign_in):
    customer_id = _november(appctx)
    page = sign_in("finance")

    _open_monthly_invoices(page, "2026-11")
    expect(page.get_by_test_id("not-over")).to_contain_text(
        "so far; charges until the end of the month will be added")
    expect(page.get_by_test_id("issue-form")).to_have_count(0)
    total = page.get_by_test_id(f"pending-total-of-{customer_id}").inner_text()
    assert re.fullmatch(r"\$[0-9,]+\.[0-9]{2}", total)
    page.get_by_test_id(f"pending-{customer_id}").click()

    expect(page.get_by_test_id("preview-mark")).to_have_text("Preview — not issued")
    expect(page.get_by_test_id("preview-banner")).to_contain_text("November 2026, so far")
    expect(page.get_by_test_id("invoice-total")).to_have_text(total)
    expect(page.get_by_test_id("invoice-pdf")).to_have_count(0)
    preview = _lines(page)
    assert len(preview) == 4
    assert "Refund of T" in preview[2] and "-$100.00" in preview[2]
    assert re.search(r"certificates added, subscription #\d+, \d+/365 days", preview[3])

    page.get_by_test_id("preview-customer").click()  # the customer page
    page.get_by_test_id("next-invoice").click()
    expect(page.get_by_test_id("invoice-total")).to_have_text(total)
    assert _lines(page) == preview

    # November ends; finance issues it through Review -> Confirm.
    with time_machine.travel(datetime(2026, 12, 1, 0, 30, tzinfo=UTC), tick=True):
        _open_monthly_invoices(page)  # the month just over, by default
        expect(page.get_by_test_id(f"pending-total-of-{customer_id}")).to_have_text(total)
        page.get_by_role("button", name="Issue 2 invoices").click()
        expect(page.get_by_role("heading", name="Review: issue 2 invoices for November 2026")
               ).to_be_visible()
        expect(page.get_by_test_id(f"review-total-{customer_id}")).to_have_text(total)
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator(".alert-success")).to_contain_text(
            "Issued 2 invoices for November 2026.")
        page.get_by_test_id("issued-invoices").get_by_role("link").first.click()
        expect(page.get_by_test_id("invoice-number")).to_have_text("INV-2026-000001")
        expect(page.get_by_test_id("bill-to")).to_contain_text("Initech")
        expect(page.get_by_test_id("invoice-total")).to_have_text(total)
        assert _lines(page) == preview

        # November's preview now points at its invoice; the next one has nothing yet.
        page.goto(f"/admin/billing/customer/{customer_id}/next-invoice?month=2026-11")
        expect(page.get_by_test_id("preview-issued")).to_contain_text("INV-2026-000001")
        page.goto(f"/admin/billing/customer/{customer_id}/next-invoice")
        expect(page.get_by_test_id("preview-nothing")).to_contain_text("Nothing to invoice yet")
