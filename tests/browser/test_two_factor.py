"""Two-factor sign-in in the browser: an admin (whose role must use it) enrols at the first
sign-in by reading the key off the page, then signs in with a code from the "app" (pyotp at
the moved clock) and later with a recovery code; a support member turns it on from their
own page."""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from backoffice import create_app
from backoffice.clock import utcnow
from backoffice.extensions import db
from tests.conftest import PASSWORD, base_config

pytestmark = [pytest.mark.browser,
              pytest.mark.clock(datetime(2026, 6, 1, 9, 0, 5, tzinfo=UTC), tick=True)]


@pytest.fixture(scope="module")
def two_factor_server(app, database_url):
    """The console as in production: CSRF on, and admins must use two-factor sign-in."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server_app = create_app({**base_config(database_url), "WTF_CSRF_ENABLED": True,
                             "TWO_FACTOR_REQUIRED_ROLES": "admin"})
    server = make_server("127.0.0.1", 0, server_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    with server_app.app_context():
        db.engine.dispose()


@pytest.fixture
def tf_page(browser, two_factor_server):
    context = browser.new_context(base_url=two_factor_server,
                                  viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def password_step(page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def next_code(secret: str, steps_ahead: int) -> str:
    """The app's code ``steps_ahead`` 30-second steps from now (one step ahead is still
    accepted, and never a step already used)."""
    return pyotp.TOTP(secret).at(utcnow() + timedelta(seconds=30 * steps_ahead))


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_an_admin_enrols_at_first_sign_in_then_signs_in_with_codes(tf_page, staff):
    page = tf_page
    staff("admin", "ada@staff.test")
    password_step(page, "ada@staff.test")
    page.wait_for_url(re.compile(r"/login/enrol"))
    expect(page.get_by_role("heading", name="Set up two-factor sign-in")).to_be_visible()
    expect(page.get_by_test_id("qr-code").locator("svg")).to_be_visible()
    # the console stays shut until the enrolment is done
    page.goto("/admin/")
    page.wait_for_url(re.compile(r"/login/enrol"))
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")

    page.get_by_label("Code from the app").fill("000000")
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("heading", name="Two-factor sign-in is on")).to_be_visible()
    codes = page.get_by_test_id("recovery-codes").locator("li").all_inner_texts()
    assert len(codes) == 10
    page.get_by_test_id("continue").click()
    page.wait_for_url("**/admin/")
    expect(page.get_by_test_id("whoami")).to_contain_text("ada@staff.test")
    sign_out(page)

    # a code from the app
    password_step(page, "ada@staff.test")
    page.wait_for_url(re.compile(r"/login/code"))
    page.get_by_label("Code").fill(next_code(secret, 1))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/")
    expect(page.get_by_test_id("whoami")).to_contain_text("ada@staff.test")
    sign_out(page)

    # the same code again is refused; a recovery code works, once
    password_step(page, "ada@staff.test")
    page.get_by_label("Code").fill(next_code(secret, 1))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("That code was used already")
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/")
    expect(page.get_by_text("You signed in with a recovery code")).to_be_visible()
    sign_out(page)
    password_step(page, "ada@staff.test")
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    page.get_by_role("button", name="Cancel and sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_support_turns_it_on_from_their_own_page(tf_page, staff):
    page = tf_page
    staff("support", "sam@staff.test")
    password_step(page, "sam@staff.test")  # not required for support: straight in
    page.wait_for_url("**/admin/")
    page.wait_for_load_state("load")
    page.get_by_role("link", name="System", exact=True).click()
    page.get_by_role("link", name="Two-factor sign-in", exact=True).click()
    expect(page.get_by_test_id("two-factor-status")).to_contain_text("off")
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    page.get_by_test_id("continue").click()
    expect(page.get_by_test_id("two-factor-status")).to_contain_text("on")
    sign_out(page)
    password_step(page, "sam@staff.test")
    page.wait_for_url(re.compile(r"/login/code"))
    page.get_by_label("Code").fill(next_code(secret, 1))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/")
