"""Partner journeys clicked through in Chromium as staff would."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from dateutil.relativedelta import relativedelta
from playwright.sync_api import expect
from sqlalchemy import select

from backoffice.clock import today
from backoffice.models import (
    Customer,
    CustomerAdmin,
    Inventory,
    Subscription,
    SubscriptionStatus,
    Transaction,
)
from tests import factories

pytestmark = pytest.mark.browser


def test_support_adds_customer_and_backdated_subscription(appctx, sign_in):
    with appctx() as session:
        factories.catalog()
        session.commit()
    page = sign_in("support")

    page.get_by_role("link", name="Partners", exact=True).click()
    page.get_by_role("link", name="Customers", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("Company name").fill("Copperleaf Analytics")
    page.get_by_label("Address 1").fill("44 Canal Street")
    page.get_by_label("City").fill("Amsterdam")
    page.get_by_label("Postal code").fill("1012 JS")
    page.get_by_label("Country").select_option("NL")
    # the administrator's email is asked for only once the customer administers itself
    admin_email = page.get_by_label("Customer administrator's email")
    expect(admin_email).to_be_hidden()
    page.get_by_label("Customer administered").check()
    expect(admin_email).to_be_visible()
    admin_email.fill("it@copperleaf.example")
    page.get_by_label("Currency").select_option("EUR")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".alert-success, .alert-info").first).to_be_visible()

    with appctx() as session:
        customer = session.scalar(select(Customer).where(
            Customer.company_name == "Copperleaf Analytics"))
        assert [a.email for a in session.scalars(select(CustomerAdmin))] == [
            "it@copperleaf.example"]
        customer_id = customer.id

    # Save lands on the new customer, where the next step is
    expect(page).to_have_url(re.compile(rf"/admin/customer/{customer_id}/$"))
    breadcrumb = page.get_by_role("navigation", name="breadcrumb")
    expect(breadcrumb).to_have_text(re.compile(r"Customers\s*Copperleaf Analytics"))
    # up to the list by the breadcrumb, and back down by the customer's name
    breadcrumb.get_by_role("link", name="Customers").click()
    expect(page).to_have_url(re.compile(r"/admin/customer/$"))
    page.get_by_role("link", name="Copperleaf Analytics", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/admin/customer/{customer_id}/\?url="))
    # each tab is an address: a plain link, and a reload keeps it
    page.get_by_role("link", name="Subscriptions (0)").click()
    expect(page).to_have_url(re.compile(rf"/admin/customer/{customer_id}/subscriptions\?url="))
    page.reload()
    expect(page.get_by_role("link", name="Add subscription")).to_be_visible()
    page.get_by_test_id("back").click()
    expect(page).to_have_url(re.compile(r"/admin/customer/$"))
    page.goto(f"/admin/customer/{customer_id}/subscriptions")
    page.get_by_role("link", name="Add subscription").click()
    expect(page.get_by_role("navigation", name="breadcrumb")).to_have_text(
        re.compile(r"Customers\s*Copperleaf Analytics\s*Add subscription"))
    page.get_by_label("Product").select_option(label="Business SSL")
    page.get_by_role("button", name="Choose").click()

    start = today() - timedelta(days=100)
    page.get_by_label("Term").select_option("12")
    page.get_by_label("Start date").fill(start.isoformat())
    page.get_by_label("Auto-renew").check()
    page.get_by_label("Domain Validated (DV)").fill("10")
    page.get_by_role("button", name="Review").click()

    end = start + relativedelta(months=12)
    left, total = (end - today()).days, (end - start).days
    expected = (2 * 50000 * left + total) // (2 * total)  # 10 DV x 50.00, half-up
    shown = f"€{expected // 100:,}.{expected % 100:02d}"
    expect(page.get_by_test_id("quote")).to_contain_text(f"{left} of {total}")
    expect(page.get_by_test_id("quote-total")).to_have_text(shown)
    page.get_by_role("button", name="Confirm").click()

    # back on the customer's Subscriptions tab, the new subscription listed
    with appctx() as session:
        subscription_id = session.scalar(select(Subscription.id))
    expect(page).to_have_url(re.compile(rf"/admin/customer/{customer_id}/subscriptions$"))
    expect(page.get_by_text("added for Copperleaf Analytics")).to_be_visible()
    listed = page.get_by_test_id("subscriptions")
    expect(listed).to_contain_text("Business SSL")
    expect(page.get_by_role("link", name="Subscriptions (1)")).to_be_visible()
    listed.get_by_role("link", name=f"#{subscription_id}").click()
    expect(page.get_by_test_id("current-DV")).to_have_text("10")
    expect(page.get_by_role("navigation", name="breadcrumb")).to_have_text(
        re.compile(rf"Customers\s*Copperleaf Analytics\s*Subscription #{subscription_id}"))
    page.get_by_role("navigation", name="breadcrumb").get_by_role(
        "link", name="Copperleaf Analytics").click()
    page.get_by_role("link", name="Transactions & Refunds", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/admin/customer/{customer_id}/transactions$"))
    transactions = page.get_by_test_id("transactions")
    expect(transactions).to_contain_text("new subscription")
    expect(transactions).to_contain_text(shown)
    expect(transactions).to_contain_text(f"DV × 10 ({left}/{total} days)")
    with appctx() as session:
        assert session.scalar(select(Transaction.amount)) == expected


def test_admin_disables_reseller_then_subscription_is_refused(appctx, sign_in):
    with appctx() as session:
        factories.catalog()
        reseller = factories.reseller("SecureStack Reseller")
        customer = factories.customer("Granite Energy", reseller=reseller)
        session.commit()
        reseller_id, customer_id = reseller.id, customer.id
    page = sign_in("admin")
    page.goto(f"/admin/reseller/details/?id={reseller_id}")
    page.get_by_role("link", name="Disable reseller").click()
    impact = page.get_by_test_id("impact")
    expect(impact).to_contain_text("Customers")
    expect(impact.locator("tr").first).to_contain_text("1")
    page.get_by_label("Reason").fill("Contract terminated")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_test_id("status-after")).to_have_text("disabled")
    expect(page.get_by_test_id("review-facts")).to_contain_text("Contract terminated")
    page.get_by_role("button", name="Disable reseller").click()
    expect(page.get_by_test_id("reseller-disabled")).to_contain_text("Contract terminated")

    page.goto(f"/admin/customer/subscribe/{customer_id}/")
    page.get_by_label("Product").select_option(label="Business SSL")
    page.get_by_role("button", name="Choose").click()
    page.get_by_label("Domain Validated (DV)").fill("5")
    page.get_by_role("button", name="Review").click()
    expect(page.locator(".alert-danger")).to_contain_text(
        "Granite Energy is managed by SecureStack Reseller, which is disabled")
    with appctx() as session:
        assert session.scalar(select(Transaction.id)) is None


def test_support_sets_renewal_inventory_then_suspends_and_enables(appctx, sign_in):
    with appctx() as session:
        product = factories.catalog()
        subscription = factories.subscribe(factories.customer("Granite Energy"), product,
                                           {"DV": 10}, auto_renew=True)
        session.commit()
        subscription_id = subscription.id
    page = sign_in("support")
    page.goto(f"/admin/subscription/details/?id={subscription_id}")

    page.get_by_role("link", name="Set renewal inventory").click()
    page.get_by_label("Domain Validated (DV)").fill("4")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_test_id("before-DV")).to_have_text("10")
    expect(page.get_by_test_id("after-DV")).to_have_text("4")
    expect(page.get_by_test_id("total-after")).to_have_text("$200.00")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Renewal inventory saved")).to_be_visible()
    expect(page.get_by_test_id("renewal-DV")).to_have_text("4")
    expect(page.get_by_test_id("current-DV")).to_have_text("10")

    page.get_by_role("link", name="Suspend").click()
    expect(page.get_by_test_id("status-after")).to_have_text("suspended")
    page.get_by_role("button", name="Suspend subscription").click()
    expect(page.get_by_text(f"Subscription #{subscription_id} is suspended.")).to_be_visible()

    page.get_by_role("link", name="Enable").click()
    expect(page.get_by_test_id("status-after")).to_have_text("active")
    page.get_by_role("button", name="Enable subscription").click()
    expect(page.get_by_text(f"Subscription #{subscription_id} is active again.")).to_be_visible()
    with appctx() as session:
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.ACTIVE
        assert sorted(session.scalars(select(Inventory.renewal_quantity))) == [0, 0, 4]
