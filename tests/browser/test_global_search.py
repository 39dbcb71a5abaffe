"""Finance finds records from the top bar's search box, on any page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from backoffice.demo import seed
from backoffice.extensions import db
from backoffice.models import Invoice, License, Profile


@pytest.mark.browser
def test_search_by_ca_reference_invoice_number_and_email_fragment(appctx, sign_in):
    with appctx():
        seed(profiles=25)
        db.session.commit()
        licence = db.session.scalars(select(License).order_by(License.id)).first()
        invoice = db.session.scalars(select(Invoice).order_by(Invoice.id)).first()
        profile = db.session.scalars(select(Profile).order_by(Profile.id)).first()
        ref, number, email = licence.ca_reference, invoice.number, profile.email
    page = sign_in("finance")

    page.goto("/admin/customer/")
    page.keyboard.press("/")  # the shortcut puts the cursor in the search box
    expect(page.locator("#global-search")).to_be_focused()
    page.keyboard.type(ref)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/admin/license/details/\?id={licence.id}$"))
    expect(page.locator("body")).to_contain_text(ref)

    page.keyboard.press("Control+k")
    expect(page.locator("#global-search")).to_be_focused()
    page.locator("#global-search").fill(number.lower())
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/admin/billing/invoice/{invoice.id}$"))
    expect(page.get_by_test_id("invoice-number")).to_have_text(number)

    fragment = email.split("@")[0][:-2]
    page.locator("#global-search").fill(fragment)
    page.keyboard.press("Enter")
    results = page.get_by_test_id("results-profile")
    expect(results).to_contain_text(email)
    results.get_by_role("link", name=email).click()
    expect(page).to_have_url(re.compile(rf"/admin/profile/details/\?id={profile.id}$"))
