"""Pages by position in a real browser: the transactions list forward and back, and the
report's type-ahead customer box (Flask-Admin's select2 widget, no script of ours)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests import factories, volume


def _ids(page) -> list[str]:
    return [text.strip() for text in page.locator("td.col-id").all_inner_texts()]


@pytest.mark.browser
def test_paging_through_the_transactions_list(appctx, sign_in):
    with appctx() as session:
        customer = factories.customer("Acme Ltd")
        subscription = factories.subscribe(customer, factories.catalog("billing"), {"DV": 1})
        volume.transactions(subscription, 120, ties=3)
        session.commit()
    page = sign_in("admin")
    page.goto("/admin/transaction/?page_size=50")
    expect(page.get_by_test_id("row-count")).to_have_text("121 rows")
    first = _ids(page)
    assert len(first) == 50
    page.get_by_test_id("page-next").click()
    expect(page).to_have_url(re.compile(r"after="))
    second = _ids(page)
    page.get_by_test_id("page-next").click()
    third = _ids(page)
    assert (len(second), len(third)) == (50, 21)
    assert len(set(first + second + third)) == 121  # none skipped, none repeated
    expect(page.get_by_test_id("page-next")).to_have_count(0)  # the last page
    page.get_by_test_id("page-prev").click()
    expect(page).to_have_url(re.compile(r"before="))
    assert _ids(page) == second
    page.get_by_test_id("page-prev").click()
    assert _ids(page) == first
    expect(page.get_by_test_id("page-prev")).to_have_count(0)  # back at the start
    page.get_by_test_id("page-next").click()
    page.get_by_test_id("page-first").click()
    assert _ids(page) == first


@pytest.mark.browser
@pytest.mark.clock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC), tick=True)
def test_the_report_chooses_a_customer_by_typing(appctx, sign_in):
    with appctx() as session:
        product = factories.catalog("billing")
        for name in ("Acme Ltd", "Zenith Co"):
            factories.subscribe(factories.customer(name), product, {"DV": 1})
        session.commit()
    page = sign_in("finance")
    page.goto("/admin/billing/report/")
    page.wait_for_load_state("load")
    page.locator("#s2id_customer_id a.select2-choice").click()
    page.locator("#select2-drop input.select2-input").fill("acm")
    page.locator("#select2-drop .select2-result-label", has_text="Acme Ltd").click()
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"customer_id=\d+"))
    expect(page.get_by_test_id("report-rows")).to_contain_text("Acme Ltd")
    expect(page.get_by_test_id("report-rows")).not_to_contain_text("Zenith Co")
    expect(page.locator("#s2id_customer_id")).to_contain_text("Acme Ltd")
