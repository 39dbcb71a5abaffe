"""Accounts journeys in real Chromium: a corporate request, a legacy credit transfer, an
upgrade to corporate and a credit adjustment, each through its review and Confirm."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from backoffice import accounts
from backoffice.extensions import db
from tests.conftest import PASSWORD
from tests.queries import ledger_sum, profile_by_email
from tests.test_accounts import billing, catalog, legacy


@pytest.mark.browser
def test_support_completes_a_request_and_sees_the_secondary_users_old_orders(appctx, sign_in):
    with appctx() as session:
        catalog()
        ann = accounts.create_profile(email="ann@acme.example.com", name="Ann Main")
        bob = accounts.create_profile(email="bob@acme.example.com", name="Bob Second")
        old = accounts.place_order(bob, items={"DV": 2}, billing=billing(bob))
        accounts.pay_order(old, payer=bob, method="card")
        accounts.place_order(ann, items={"DV": 1}, billing=billing(ann))
        old_number = old.number
        session.commit()
    page = sign_in("support")
    page.get_by_role("link", name="Accounts", exact=True).click()
    page.get_by_role("link", name="Corporate requests", exact=True).click()
    page.get_by_role("link", name="Enter request").click()
    page.get_by_label("Organization name").fill("ACME Corp")
    page.get_by_label("Main contact email").fill("ann@acme.example.com")
    page.get_by_label("Secondary emails (one per line)").fill(
        "bob@acme.example.com\nnew.hire@acme.example.com")
    page.get_by_role("button", name="Save request").click()
    expect(page.locator(".alert")).to_contain_text("The request is in the queue.")
    matches = page.get_by_test_id("matches")
    expect(matches.locator("tr", has_text="new.hire@acme.example.com")).to_contain_text(
        "no profile")
    expect(matches.locator("tr", has_text="bob@acme.example.com")).to_contain_text("Bob Second")

    page.get_by_role("link", name="Complete…").click()
    expect(page.get_by_test_id("unknown-emails")).to_contain_text("new.hire@acme.example.com")
    page.get_by_role("button", name="Confirm").click()
    alerts = page.locator(".alert")
    expect(alerts.filter(has_text="is completed")).to_contain_text(
        "confirmation email to ann@acme.example.com is queued")
    expect(alerts.filter(has_text="No profile")).to_contain_text("new.hire@acme.example.com")

    page.get_by_role("link", name="ACME Corp", exact=True).click()
    expect(page.get_by_test_id("main-contact")).to_contain_text("ann@acme.example.com")
    expect(page.get_by_test_id("secondary-users")).to_contain_text("bob@acme.example.com")
    orders = page.get_by_test_id("orders")
    expect(orders.locator("tr", has_text=old_number)).to_contain_text("bob@acme.example.com")
    expect(orders.locator("tbody tr")).to_have_count(2)


@pytest.mark.browser
def test_support_moves_a_legacy_balance_once_through_review_and_confirm(appctx, sign_in):
    with appctx() as session:
        accounts.create_profile(email="ann@acme.example.com", name="Ann Main")
        accounts.create_profile(email="ann@other.example.com", name="Ann Euro", currency="EUR")
        account_id = legacy("ann@legacy.example.com", 4800).id
        session.commit()
    page = sign_in("support")
    page.goto(f"/admin/legacyaccount/details/?id={account_id}")
    page.get_by_role("link", name="Transfer credit").click()
    page.get_by_label("Profile email").fill("ann@")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("profiles").locator("tr", has_text="ann@other.example.com")
           ).to_contain_text("other currency")
    # A colleague reviews the same transfer in another tab, before it is confirmed.
    other_tab = page.context.new_page()
    other_tab.goto(page.url)
    other_tab.get_by_role("button", name="Review transfer to ann@acme.example.com").click()
    expect(other_tab.get_by_role("button", name="Confirm")).to_be_visible()

    page.get_by_role("button", name="Review transfer to ann@acme.example.com").click()
    review = page.get_by_test_id("review")
    expect(review).to_contain_text("$48.00")
    expect(review).to_contain_text("USD")
    expect(review).to_contain_text("L-100001")
    expect(review).to_contain_text("ann@acme.example.com")
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".alert")).to_contain_text(
        "Moved $48.00 from legacy account L-100001 to ann@acme.example.com")
    expect(page.get_by_role("link", name="Transfer credit")).to_have_count(0)

    # The colleague's review is older than the transfer: the balance does not move again.
    other_tab.get_by_role("button", name="Confirm").click()
    expect(other_tab.locator(".alert")).to_contain_text(
        "was already moved to ann@acme.example.com")
    expect(other_tab.locator(".alert")).to_contain_text("it moves only once")

    with appctx():
        profile = profile_by_email("ann@acme.example.com")
        assert profile.credit_balance == 4800 == ledger_sum(profile)
        assert len(profile.credit_entries) == 1
        db.session.rollback()


@pytest.mark.browser
def test_support_upgrades_and_finance_adjusts_credit_through_reviews(appctx, sign_in, staff,
                                                                     browser, live_server):
    with appctx() as session:
        profile_id = accounts.create_profile(email="ann@acme.example.com", name="Ann Main").id
        session.commit()
    page = sign_in("support")
    page.goto(f"/admin/profile/details/?id={profile_id}")
    card = page.get_by_test_id("upgrade-card")
    card.get_by_placeholder("Organization name").fill("ACME Corp")
    card.get_by_role("button", name="Review upgrade").click()
    expect(page.get_by_test_id("review")).to_contain_text("A new organization ACME Corp")
    page.get_by_role("button", name="Confirm upgrade").click()
    expect(page.locator(".alert")).to_contain_text(
        "ann@acme.example.com is now the main contact of ACME Corp")

    staff("finance")
    finance = browser.new_context(base_url=live_server).new_page()
    finance.goto("/login")
    finance.get_by_label("Email").fill("finance@staff.test")
    finance.get_by_label("Password").fill(PASSWORD)
    finance.get_by_role("button", name="Sign in").click()
    finance.wait_for_url("**/admin/")
    finance.goto(f"/admin/profile/credit/{profile_id}/")
    finance.get_by_label("Amount in USD").fill("1,234.567")
    finance.get_by_label("Memo (why)").fill("Goodwill for the outage")
    finance.get_by_role("button", name="Review").click()
    expect(finance.get_by_test_id("error-amount")).to_contain_text("at most 2 decimals")
    finance.get_by_label("Amount in USD").fill("1,234.50")
    finance.get_by_role("button", name="Review").click()
    expect(finance.get_by_test_id("balance-after")).to_have_text("$1,234.50")
    finance.get_by_role("button", name="Confirm adjustment").click()
    expect(finance.locator(".alert")).to_contain_text(
        "Added $1,234.50 to the credit of ann@acme.example.com")
    expect(finance.get_by_test_id("credit-balance")).to_contain_text("$1,234.50")
    finance.context.close()

    with appctx():
        profile = profile_by_email("ann@acme.example.com")
        assert profile.credit_balance == 123450 == ledger_sum(profile)
        assert profile.organization.name == "ACME Corp"
        db.session.rollback()


@pytest.mark.browser
def test_a_request_whose_main_contact_has_no_profile_cannot_be_confirmed(appctx, sign_in):
    with appctx():
        accounts.submit_corporate_request(organization_name="Nobody Ltd",
                                          main_contact_email="ghost@nobody.example.com",
                                          secondary_emails=[])
        db.session.commit()
    page = sign_in("support")
    page.get_by_test_id("oldest-requests").get_by_role("link", name="Nobody Ltd").click()
    card = page.get_by_test_id("complete-card")
    expect(card.get_by_test_id("complete-blocker")).to_contain_text("ghost@nobody.example.com")
    expect(card.get_by_role("button", name="Complete…")).to_be_disabled()
    expect(card).not_to_contain_text("email is queued")
    expect(page.get_by_test_id("reject-card")).to_be_visible()
