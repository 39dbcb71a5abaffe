"""Each role signs in to its own dashboard; finance and admins see the monthly charts."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from backoffice import accounts
from backoffice.demo import seed
from backoffice.extensions import db

SECTIONS = {
    "support": {"support-queue"},
    "finance": {"finance-queue", "charts"},
    "admin": {"admin-queue", "support-queue", "finance-queue", "charts"},
}
ALL = {"admin-queue", "support-queue", "finance-queue", "charts"}


@pytest.mark.browser
@pytest.mark.parametrize("role", list(SECTIONS))
def test_each_role_lands_on_its_own_dashboard(appctx, sign_in, role):
    with appctx():
        seed(profiles=25)
        accounts.submit_corporate_request(organization_name="Queue Test Ltd",
                                          main_contact_email="main@queue.example",
                                          secondary_emails=[])
        db.session.commit()
    page = sign_in(role)
    for section in SECTIONS[role]:
        expect(page.get_by_test_id(section)).to_be_visible()
    for section in ALL - SECTIONS[role]:
        expect(page.get_by_test_id(section)).to_have_count(0)
    if "charts" in SECTIONS[role]:
        for name in ("revenue", "refunds", "renewals"):
            drawn = page.evaluate(
                "name => { const c = document.querySelector(`canvas[data-chart=${name}]`);"
                " const chart = window.Chart && Chart.getChart(c);"
                " return chart ? chart.data.labels.length : 0; }", name)
            assert drawn == 12, name
    if role == "support":
        page.get_by_test_id("oldest-requests").get_by_role("link", name="Queue Test Ltd").click()
        expect(page.get_by_test_id("matches")).to_contain_text("main@queue.example")
