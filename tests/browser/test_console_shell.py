"""An admin signs in and opens each menu area of the console."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from backoffice.demo import seed
from backoffice.extensions import db

MENU = {
    "Accounts": ["Profiles", "Organizations", "Corporate requests", "Legacy accounts",
                 "Orders", "Licenses", "Credit ledger"],
    "Partners": ["Resellers", "Customers", "Subscriptions"],
    "Finance": ["Transactions", "Invoices"],
    "Catalog": ["Certificate types", "Subscription products"],
    "System": ["Staff", "Audit log", "Job runs"],
}


@pytest.mark.browser
def test_admin_signs_in_and_opens_every_menu_area(appctx, sign_in):
    with appctx():
        seed(profiles=25)
        db.session.commit()
    page = sign_in("admin")
    expect(page.get_by_test_id("whoami")).to_contain_text("admin@staff.test")
    for category, items in MENU.items():
        for item in items:
            # The menu is a Bootstrap dropdown: its script must have run before it opens.
            page.wait_for_load_state("load")
            page.get_by_role("link", name=category, exact=True).click()
            page.get_by_role("link", name=item, exact=True).click()
            expect(page.locator("h4").first).to_contain_text(item)
            # Every list shows its table (seeded data) or Flask-Admin's empty message.
            expect(page.locator("table.model-list, .model-list, p")).not_to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.goto("/admin/profile/")
    expect(page).to_have_url(re.compile(r"/login\?next=/admin/profile/$"))
