"""Refresh the README screenshots from a console seeded with demo data.

Usage (a server from `make run` on 127.0.0.1:5000, and its admin login):
    BASE_URL=http://127.0.0.1:5000 ADMIN_EMAIL=admin@example.com ADMIN_PASSWORD=... \
        .venv/bin/python docs/screenshots/take.py
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).parent
BASE = os.environ.get("BASE_URL", "http://127.0.0.1:5000")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main() -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM_PATH",
                                                                    "/usr/bin/chromium"),
                                     args=FLAGS)
        page = browser.new_page(base_url=BASE, viewport={"width": 1360, "height": 800})
        page.goto("/login")
        page.get_by_label("Email").fill(os.environ["ADMIN_EMAIL"])
        page.get_by_label("Password").fill(os.environ["ADMIN_PASSWORD"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/admin/")
        page.wait_for_selector("canvas")  # the monthly charts
        page.wait_for_timeout(800)  # their first animation
        page.screenshot(path=HERE / "dashboard.png", full_page=True)

        # The top bar's search: a fragment of a company name, grouped results.
        page.goto("/admin/customer/")
        page.locator("#global-search").fill(os.environ.get("SEARCH", "juniper"))
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid^=results-]")
        page.screenshot(path=HERE / "search.png")

        # A refund from the customer page: Refund on a charge, the counts filled in, Review.
        page.goto("/admin/transaction/?flt0_kind_equals=charge")
        page.locator("table.model-list tbody tr td.col-customer a").first.click()
        page.get_by_role("link", name="Transactions & Refunds", exact=True).click()
        page.locator("[data-testid^=refund-]:is(a)").first.click()
        page.get_by_role("button", name="Review refund").click()
        page.screenshot(path=HERE / "refund-review.png")

        page.goto("/admin/customer/")
        page.locator("table.model-list a[title='View Record']").first.click()
        page.get_by_role("link", name="Add subscription").click()
        page.get_by_label("Product").select_option(index=1)
        page.get_by_role("button", name="Choose").click()
        page.get_by_label("Start date").fill((date.today() - timedelta(days=120)).isoformat())
        page.locator("input[name^=qty_]").first.fill("10")
        page.get_by_role("button", name="Review").click()
        page.screenshot(path=HERE / "subscription-review.png")

        page.goto("/admin/corporaterequest/")
        page.screenshot(path=HERE / "corporate-requests.png")
        page.goto("/admin/transaction/")
        page.screenshot(path=HERE / "transactions.png")
        browser.close()


if __name__ == "__main__":
    main()
