"""Security headers on every response, and pages the Content-Security-Policy lets work.

Every response, pages, redirects, downloads, error pages (the plain fallback too) and
static files, carries the CSP with a fresh nonce, X-Frame-Options DENY, nosniff and
Referrer-Policy; every response but static files is ``no-store``; HSTS only when the
session cookie is HTTPS-only. The rendered pages carry nothing inline the policy refuses
(the browser tests check the same in Chromium).
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from backoffice.extensions import db
from backoffice.models import Profile
from backoffice.views.security import HSTS_MAX_AGE
from tests.conftest import login, review_token_from
from tests.pages import console_pages, more_demo_data

NONCE = re.compile(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{22,})'")
EXPECTED_CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{n}'; "
    "style-src 'self' 'nonce-{n}'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def nonce_of(response) -> str:
    csp = response.headers.get("Content-Security-Policy", "")
    match = NONCE.search(csp)
    assert match, f"no nonce in the CSP of {response.request.path}: {csp!r}"
    assert csp == EXPECTED_CSP.format(n=match.group(1))
    return match.group(1)


def assert_security_headers(response, *, page: bool = True, hsts: bool = False) -> str:
    """The headers every response has; ``page``: not a static file, so never stored."""
    where = f"{response.request.path} ({response.status_code})"
    headers = response.headers
    nonce = nonce_of(response)
    assert headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    # same-origin, or stricter where a page's address holds a secret (a reset link)
    expected = "no-referrer" if response.request.path.startswith("/reset/") else "same-origin"
    assert headers.get("Referrer-Policy") == expected, where
    if page:
        assert headers.get("Cache-Control") == "no-store", where
    else:
        assert "no-store" not in headers.get("Cache-Control", ""), where
    if hsts:
        assert (
            headers.get("Strict-Transport-Security") == f"max-age={HSTS_MAX_AGE}; includeSubDomains"
        ), where
    else:
        assert "Strict-Transport-Security" not in headers, where
    return nonce


#: what the policy refuses in a page: inline handlers, inline style attributes
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
#: a javascript: address other than Flask-Admin's placeholder, which console.js cancels
JAVASCRIPT_URL = re.compile(r"javascript:(?!void\(0\)\")", re.IGNORECASE)
SCRIPT_OR_STYLE_TAG = re.compile(r"<(script|style)\b([^>]*)>", re.IGNORECASE)
#: the address of a file a page loads: scripts, style sheets, images, frames, objects
LOADED = re.compile(
    r"<(?:script|img|iframe|embed|object|source)\b[^>]*\s(?:src|data)=\"([^\"]*)\""
    r"|<link\b[^>]*\shref=\"([^\"]*)\"",
    re.IGNORECASE,
)


def assert_nothing_inline_refused(html: str, nonce: str, where: str) -> None:
    """``html`` has no inline script or style the CSP with ``nonce`` would refuse."""
    for tag, attributes in SCRIPT_OR_STYLE_TAG.findall(html):
        assert f'nonce="{nonce}"' in attributes or (
            tag.lower() == "script" and re.search(r'\ssrc="/', attributes)
        ), (where, f"<{tag}{attributes}>")
    for pattern in (INLINE_HANDLER, STYLE_ATTRIBUTE, JAVASCRIPT_URL):
        found = pattern.search(html)
        assert found is None, (where, html[max(found.start() - 100, 0) : found.end() + 100])
    # every file the page loads is on this site (links to other sites are fine)
    for match in LOADED.finditer(html):
        address = match.group(1) or match.group(2) or ""
        assert not re.match(r"[a-z]+:|//", address) or address.startswith(
            ("http://localhost/", "data:")
        ), (where, address)


@pytest.fixture
def admin_and_pages(app, demo, appctx, client_as):
    """A signed-in admin's client, and every console page of the demo data set."""
    client = client_as("admin")
    with appctx():
        more_demo_data()
        return client, console_pages(app)


def test_every_console_page_carries_the_headers_and_nothing_inline(admin_and_pages):
    client, pages = admin_and_pages
    assert len(pages) > 85
    html_pages = 0
    for url in pages:
        response = client.get(url)
        assert response.status_code in (200, 302, 303), (url, response.status_code)
        nonce = assert_security_headers(response)
        if response.mimetype == "text/html" and response.status_code == 200:
            assert_nothing_inline_refused(response.get_data(as_text=True), nonce, url)
            html_pages += 1
    assert html_pages > 80


def test_every_response_has_its_own_nonce_the_one_on_its_tags(client_as):
    client = client_as("admin")
    first, second = client.get("/admin/profile/"), client.get("/admin/profile/")
    nonces = {nonce_of(first), nonce_of(second)}
    assert len(nonces) == 2
    for response in (first, second):
        html = response.get_data(as_text=True)
        on_tags = set(re.findall(r'nonce="([^"]+)"', html))
        assert on_tags == {nonce_of(response)}


def test_signed_out_pages_carry_the_headers_and_are_never_stored(app):
    client = app.test_client()
    sign_in = client.get("/login")
    assert sign_in.status_code == 200
    nonce = assert_security_headers(sign_in)
    assert_nothing_inline_refused(sign_in.get_data(as_text=True), nonce, "/login")
    for url in ("/", "/admin/", "/admin/profile/"):
        redirect = client.get(url)
        assert redirect.status_code in (302, 303)
        assert_security_headers(redirect)


def test_a_failed_sign_in_and_a_sign_out_carry_the_headers(app, staff):
    staff("support")
    client = app.test_client()
    failed = client.post("/login", data={"email": "support@staff.test", "password": "wrong"})
    assert failed.status_code == 401
    assert_security_headers(failed)
    assert login(client, "support@staff.test").status_code == 303
    signed_out = client.post("/logout")
    assert signed_out.status_code == 303
    assert_security_headers(signed_out)


def test_downloads_are_never_stored(admin_and_pages):
    client, pages = admin_and_pages
    downloads = [url for url in pages if url.endswith((".pdf", ".csv", "/csv/"))]
    assert any(url.endswith(".pdf") for url in downloads)
    assert any(url.endswith(".csv") for url in downloads)
    for url in downloads:
        response = client.get(url)
        assert response.status_code == 200, url
        assert "attachment" in response.headers.get("Content-Disposition", ""), url
        assert_security_headers(response)


@pytest.mark.parametrize(
    "url",
    [
        "/static/console.js",
        "/static/console.css",
        "/admin/static/bootstrap/bootstrap4/css/bootstrap.min.css",
        "/admin/static/vendor/jquery.min.js",
    ],
)
def test_static_files_carry_the_headers_and_stay_cacheable(app, client_as, url):
    for client in (app.test_client(), client_as("support")):
        response = client.get(url)
        assert response.status_code == 200
        assert_security_headers(response, page=False)
        response.close()


@pytest.mark.parametrize("signed_in", [False, True])
def test_error_pages_carry_the_headers(app, client_as, signed_in):
    client = client_as("support") if signed_in else app.test_client()
    for response in (
        client.get("/admin/no-such-page/"),
        client.get("/static/no-such-file.js"),
        client.put("/login"),
    ):
        assert response.status_code in (404, 405)
        nonce = assert_security_headers(
            response, page=not response.request.path.startswith("/static/")
        )
        assert_nothing_inline_refused(response.get_data(as_text=True), nonce, response.request.path)


def test_the_plain_500_page_carries_the_headers(second_app, monkeypatch):
    app = second_app(TESTING=False, PROPAGATE_EXCEPTIONS=False,
                     AUDIT_KEY="production-like-audit-key-0123456789")

    @app.route("/admin/explodes")
    def explodes():
        raise RuntimeError("the disk is on fire")

    def broken_render(*_args, **_kwargs):
        raise RuntimeError("the templates are gone")

    monkeypatch.setattr(app.extensions["admin"][0].index_view, "render", broken_render)
    response = app.test_client().get("/admin/explodes")
    html = response.get_data(as_text=True)
    assert response.status_code == 500 and "500 Something went wrong" in html
    nonce = assert_security_headers(response)
    assert_nothing_inline_refused(html, nonce, "plain 500 page")
    # Go back works without a javascript: address: console.js goes back in the history.
    assert 'data-history-back href="#" data-testid="go-back"' in html
    assert '<script src="/static/console.js"></script>' in html


def test_hsts_is_sent_only_when_the_session_cookie_is_https_only(second_app, staff):
    staff("support")
    app = second_app(SESSION_COOKIE_SECURE=True)
    client = app.test_client()
    assert_security_headers(client.get("/login", base_url="https://localhost"), hsts=True)
    assert_security_headers(client.get("/static/console.js"), page=False, hsts=True)
    assert_security_headers(client.get("/no-such-page"), hsts=True)
    response = login(client, "support@staff.test")
    assert response.status_code == 303
    assert_security_headers(response, hsts=True)


def test_a_confirm_page_cannot_be_framed(app, demo, appctx, client_as):
    with appctx():
        profile_id = db.session.scalar(
            sa.select(Profile.id).where(Profile.organization_id.is_(None)).limit(1)
        )
    client = client_as("support")
    review = client.post(
        f"/admin/profile/upgrade/{profile_id}/",
        data={"organization_name": "Framed Ltd", "step": "review"},
    )
    html = review.get_data(as_text=True)
    assert review.status_code == 200 and review_token_from(html)
    assert 'data-testid="confirm-form"' in html
    assert review.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in review.headers["Content-Security-Policy"]
    assert_security_headers(review)
