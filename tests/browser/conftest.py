"""Browser tests: the console served on loopback, driven in real Chromium by Playwright.

The server is a second app on the same test database, with CSRF protection on, as in
production. Chromium comes from the system (``CHROMIUM_PATH``, default /usr/bin/chromium);
when it is missing the tests are skipped, unless ``REQUIRE_BROWSER=1`` (CI), where that
is a failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from backoffice import create_app
from backoffice.extensions import db
from tests.conftest import PASSWORD, base_config

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]


def _chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


@pytest.fixture(scope="session")
def browser():
    path = _chromium_path()
    if path is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but Chromium is not installed")
        pytest.skip("Chromium not installed (set REQUIRE_BROWSER=1 to make this a failure)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True,
                                             args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live_server(app, database_url):
    """The console on 127.0.0.1:<free port>, CSRF on, in a background thread."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server_app = create_app({**base_config(database_url), "WTF_CSRF_ENABLED": True})
    server = make_server("127.0.0.1", 0, server_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    with server_app.app_context():
        db.engine.dispose()


#: Runs in every document before its own scripts (Playwright injects it, so the page's CSP
#: does not apply to it): every ``securitypolicyviolation`` event is reported to the test.
REPORT_CSP_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', function (e) {
  window.__reportCspViolation([e.violatedDirective, e.blockedURI, e.sourceFile + ':' +
                               e.lineNumber, e.sample, document.location.href].join(' | '));
}, true);
"""


def is_csp_report(text: str) -> bool:
    """A console message in which the browser reports a Content-Security-Policy refusal."""
    return "Content Security Policy" in text or "Refused to" in text


def watch_csp_violations(context, page) -> list[str]:
    """The Content-Security-Policy violations in ``context`` (events of every document)
    and on ``page``'s console, as they happen."""
    violations: list[str] = []
    context.expose_function("__reportCspViolation", lambda text: violations.append(text))
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page.on("console", lambda message: violations.append(f"{message.text} ({page.url})")
            if is_csp_report(message.text) else None)
    return violations


@pytest.fixture
def page(browser, live_server):
    """A page in a fresh browser context. The test fails on any JavaScript error and on any
    Content-Security-Policy violation, whether in the console or as an event."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    violations = watch_csp_violations(context, page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    if not page.is_closed():
        page.wait_for_timeout(50)  # a violation event of the last action reaches the test
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not violations, f"Content-Security-Policy violations: {violations}"


@pytest.fixture
def sign_in(page, staff):
    """``sign_in("support")``: create a staff member of that role and sign in through the form."""

    def go(role: str = "admin", email: str | None = None):
        email = email or f"{role}@staff.test"
        staff(role, email)
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/admin/")
        return page

    return go
