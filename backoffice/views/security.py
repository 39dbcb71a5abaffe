"""Security headers on every response of the console (docs/design.md, "Security headers").

One after-request hook sets them on every response: pages, redirects, error pages (the
plain fallback too), downloads and static files. The Content-Security-Policy carries a
nonce made once per request; Flask-Admin's templates put the same nonce on their
``<script>`` and ``<link>`` tags (``Admin(csp_nonce_generator=csp_nonce)``) and any other
template can use ``{{ csp_nonce() }}``. Neither scripts nor styles may be inline
otherwise: no ``<script>`` without the nonce, no ``onclick=``, no ``javascript:`` links,
no ``style=`` attributes (the console's own script and styles are in backoffice/static).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, current_app, g, request

#: bytes of randomness in a nonce (the CSP spec asks for at least 128 bits)
NONCE_BYTES = 16
#: one year, in seconds: how long a browser keeps to HTTPS after one visit
HSTS_MAX_AGE = 365 * 24 * 3600

CSP_TEMPLATE = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'nonce-{nonce}'",
        "style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: the same on every response
FIXED_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
#: unless a page asks for a stricter one (the reset-link page sends no-referrer, so its
#: token never leaves in a Referer)
DEFAULT_REFERRER_POLICY = "same-origin"


def csp_nonce() -> str:
    """This request's CSP nonce: made on first use, the same for the rest of the request."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(NONCE_BYTES)
    return nonce


def content_security_policy(nonce: str) -> str:
    return CSP_TEMPLATE.format(nonce=nonce)


def _is_static_file() -> bool:
    """A file of a static folder (the console's or Flask-Admin's), not a page."""
    endpoint = request.endpoint or ""
    return endpoint == "static" or endpoint.endswith(".static")


def set_security_headers(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    headers.update(FIXED_HEADERS)
    headers.setdefault("Referrer-Policy", DEFAULT_REFERRER_POLICY)
    # Every page of the console is either signed in or a sign-in page, and every download
    # is a customer's data: none may be kept by the browser or a proxy. Static files keep
    # their own caching (revalidated by ETag).
    if not _is_static_file():
        headers["Cache-Control"] = "no-store"
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE}; includeSubDomains"
    return response


def register(app: Flask) -> None:
    """Send the headers on every response of ``app`` and offer ``csp_nonce()`` to templates."""
    app.after_request(set_security_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce


__all__ = ["HSTS_MAX_AGE", "content_security_policy", "csp_nonce", "register"]
