"""The console under its Content-Security-Policy, in Chromium.

The ``page`` fixture fails a test on any violation the browser reports; these tests open
every console page with demo data and use what the policy could break: Flask-Admin's
menus, filters (select2, date pickers) and "With selected" actions, the console's own
script (Go back, Print).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from backoffice.demo import seed
from backoffice.extensions import db
from backoffice.models import Customer, Invoice, StaffUser
from tests.browser.conftest import watch_csp_violations
from tests.pages import console_pages, more_demo_data

DOWNLOADS = (".pdf", ".csv", "/csv/")


@pytest.fixture
def demo_data(appctx):
    with appctx():
        seed(profiles=20)
        db.session.commit()
        more_demo_data()


def _add_every_filter(page) -> int:
    """On a list page: add each filter of "Add Filter" and open its value's widget."""
    menu = page.locator("a.nav-link", has_text="Add Filter")
    if not menu.count():
        return 0
    options = page.locator(".field-filters a.filter")
    for i in range(options.count()):
        menu.click()
        options.nth(i).click()
        value = page.locator("table.filters .filter-val").last
        if value.is_visible():
            value.click()  # a date picker opens, a select2 list drops down
        page.keyboard.press("Escape")
    return options.count()


@pytest.mark.browser
def test_every_console_page_works_under_the_policy(app, appctx, demo_data, sign_in, live_server):
    page = sign_in("admin")
    with appctx():
        pages = [url for url in console_pages(app) if not url.endswith(DOWNLOADS)]
    assert len(pages) > 80
    elsewhere: list[str] = []
    origin = urlsplit(live_server).netloc
    page.on(
        "request",
        lambda r: (
            elsewhere.append(r.url)
            if urlsplit(r.url).scheme in ("http", "https") and urlsplit(r.url).netloc != origin
            else None
        ),
    )
    filters = 0
    for url in pages:
        response = page.goto(url)
        assert response is not None and response.status < 400, (url, response and response.status)
        page.wait_for_load_state("load")
        if urlsplit(url).path.endswith("/") and url.count("/") == 3 and "?" not in url:
            filters += _add_every_filter(page)  # a list: /admin/<view>/
    assert filters > 40
    assert elsewhere == []  # everything the console loads is served by the console


@pytest.mark.browser
def test_styles_load_under_the_policy(sign_in):
    page = sign_in("admin")
    # Bootstrap (Flask-Admin's copy) and the console's own style sheet both apply.
    navbar = page.locator("nav.navbar")
    assert navbar.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(52, 58, 64)"
    brand = page.locator(".navbar-brand")
    assert brand.evaluate("e => getComputedStyle(e).fontWeight") == "600"
    page.get_by_role("button", name="Sign out").click()
    box = page.locator("main.signin-box")
    assert box.evaluate("e => getComputedStyle(e).maxWidth") == "420px"


@pytest.mark.browser
def test_an_admin_deactivates_a_colleague_from_the_with_selected_menu(appctx, staff, sign_in):
    colleague = staff("support", "colleague@staff.test")
    page = sign_in("admin")
    page.goto("/admin/staffuser/")
    page.locator("tr", has_text="colleague@staff.test").locator("input.action-checkbox").check()
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.get_by_role("button", name="With selected").click()
    page.get_by_role("link", name="Deactivate", exact=True).click()
    page.wait_for_load_state("load")
    expect(page.locator(".alert").first).to_be_visible()
    assert dialogs == ["Deactivate the selected staff accounts? They are signed out at once."]
    with appctx():
        assert db.session.get(StaffUser, colleague).active is False


@pytest.mark.browser
def test_go_back_on_an_error_page_goes_back_in_the_history(sign_in):
    page = sign_in("admin")
    page.goto("/admin/profile/")
    page.goto("/admin/no-such-page/")  # typed: the browser sends no referrer
    back = page.get_by_test_id("go-back")
    assert back.get_attribute("href") == "#"
    back.click()
    expect(page).to_have_url(re.compile(r"/admin/profile/$"))


@pytest.mark.browser
def test_print_and_tabs(appctx, demo_data, sign_in):
    with appctx():
        invoice_id = db.session.scalar(select(Invoice.id).limit(1))
        customer_id = db.session.scalar(select(Customer.id).limit(1))
    page = sign_in("finance")
    page.goto(f"/admin/billing/invoice/{invoice_id}")
    page.evaluate("() => { window.__printed = 0; window.print = () => window.__printed++; }")
    page.get_by_role("button", name="Print").click()
    assert page.evaluate("window.__printed") == 1

    # a customer's tabs are plain links to addresses of their own: no script needed
    page.goto(f"/admin/customer/details/?id={customer_id}")
    expect(page).to_have_url(re.compile(rf"/admin/customer/{customer_id}/$"))
    page.get_by_role("link", name="Transactions & Refunds", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/admin/customer/{customer_id}/transactions$"))
    page.reload()
    expect(page.get_by_test_id("tab-transactions")).to_be_visible()
    expect(page.get_by_test_id("tab-details")).to_have_count(0)


@pytest.mark.browser
def test_a_violation_is_caught(browser, live_server):
    """What the ``page`` fixture fails on: an inline handler and a file from elsewhere."""
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    violations = watch_csp_violations(context, page)
    page.goto("/login")
    page.evaluate("""() => {
        const img = document.createElement('img');
        img.src = 'https://elsewhere.example/pixel.png';
        document.body.appendChild(img);
        const div = document.createElement('div');
        div.innerHTML = '<b onclick="alert(1)">x</b><i style="color: red">y</i>';
        document.body.appendChild(div);
    }""")
    page.wait_for_timeout(200)
    context.close()
    text = "\n".join(violations)
    assert "img-src" in text and "elsewhere.example" in text
    assert "script-src-attr" in text and "style-src-attr" in text
