"""An admin makes a password reset link; the colleague opens it in their own browser,
chooses a new password and signs in with it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from backoffice.extensions import db
from backoffice.models import StaffUser
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

NEW_PASSWORD = "violet harbour seventeen"


def test_a_reset_link_lets_a_colleague_choose_a_password_and_sign_in(appctx, browser,
                                                                     live_server, sign_in,
                                                                     staff):
    colleague = staff("finance", email="fiona@staff.test")
    page = sign_in("admin")
    page.goto(f"/admin/staffuser/details/?id={colleague}")
    page.get_by_role("link", name="Reset password").click()
    expect(page.get_by_test_id("reset-effects")).to_contain_text("stops working")
    page.get_by_role("button", name="Make reset link").click()
    expect(page.get_by_test_id("shown-once")).to_contain_text("shown only once")
    link = page.get_by_test_id("reset-link").input_value()
    assert re.fullmatch(rf"{re.escape(live_server)}/reset/[A-Za-z0-9_-]{{40,}}", link), link

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    errors: list[str] = []
    try:
        theirs = context.new_page()
        theirs.on("pageerror", lambda exc: errors.append(str(exc)))
        theirs.goto(link)
        expect(theirs.get_by_test_id("reset-email")).to_have_text("fiona@staff.test")
        # a common password is refused on the page, and the link still works
        theirs.get_by_label("New password", exact=True).fill("password1234")
        theirs.get_by_label("New password again").fill("password1234")
        theirs.get_by_role("button", name="Set new password").click()
        expect(theirs.get_by_test_id("error-password")).to_contain_text("most common")
        theirs.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        theirs.get_by_label("New password again").fill(NEW_PASSWORD)
        theirs.get_by_role("button", name="Set new password").click()
        theirs.wait_for_url("**/login")
        expect(theirs.get_by_role("alert")).to_contain_text("Sign in with the new password")
        theirs.get_by_label("Email").fill("fiona@staff.test")
        theirs.get_by_label("Password").fill(NEW_PASSWORD)
        theirs.get_by_role("button", name="Sign in").click()
        theirs.wait_for_url("**/admin/")
        expect(theirs.get_by_test_id("whoami")).to_contain_text("fiona@staff.test")
        # the link worked once
        theirs.goto(link)
        expect(theirs.get_by_test_id("reset-problem")).to_contain_text("already used")
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    with appctx():
        user = db.session.get(StaffUser, colleague)
        assert user.password_changed_at is not None
    # the admin's own session is untouched
    page.goto("/admin/staffuser/")
    expect(page.get_by_test_id("whoami")).to_contain_text("admin@staff.test")


def test_changing_your_own_password_from_the_top_bar(sign_in):
    page = sign_in("support")
    page.get_by_role("link", name="Change password").click()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Email").fill("support@staff.test")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/")
