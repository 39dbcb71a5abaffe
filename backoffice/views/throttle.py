"""Sign-in throttling: attempts counted per client address and per account.

The counts live in the limiter's storage (``RATELIMIT_STORAGE_URI``): Redis in production,
so every gunicorn worker counts the same attempts. The limits are a moving window, checked
and counted in one atomic step before the password is looked at, so however many requests
arrive at once, at most the limit's number are evaluated in any window.

- :func:`sign_in_limits` decorates the sign-in form: ``LOGIN_RATE_LIMIT`` per client
  address and ``LOGIN_ACCOUNT_RATE_LIMIT`` per account (the email submitted). A successful
  sign-in calls :func:`forget_failed_sign_ins`, so only failures pile up on an account.
- :func:`two_factor_limits` decorates the two-factor code step: ``TWO_FACTOR_RATE_LIMIT``
  per pending account, and the same per-address budget as the sign-in form.

When the storage cannot be reached, the limited requests are refused (fail closed): the
limiter raises ``limits.errors.StorageError`` and the app answers 503 (see ``create_app``).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from limits import parse_many
from limits.errors import ConfigurationError

from ..extensions import limiter

F = TypeVar("F", bound=Callable)

#: storage buckets: one per client address (shared by both sign-in steps), one per account
#: on the sign-in form, one per pending account on the two-factor step
ADDRESS_SCOPE = "sign-in-address"
ACCOUNT_SCOPE = "sign-in-account"
TWO_FACTOR_SCOPE = "two-factor-account"

#: the settings holding a limit ("5 per minute; 20 per hour"), checked when the app starts
LIMIT_SETTINGS = ("LOGIN_RATE_LIMIT", "LOGIN_ACCOUNT_RATE_LIMIT", "TWO_FACTOR_RATE_LIMIT")
REDIS_SCHEMES = {"redis", "rediss", "redis+unix"}
#: seconds a Redis connection or command may take before the limited request is refused
REDIS_TIMEOUT = 2


def client_address() -> str:
    """The limiter's key for the client: its address (``request.remote_addr``, which
    ``PROXY_FIX`` makes the client's behind a proxy); an IPv6 address counts as its /64,
    the block one subscriber usually holds, so hopping addresses within it does not help."""
    address = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address or 'unknown'}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


def account_key(email: str | None) -> str:
    """The limiter's key for an account: the email as sign-in looks it up (trimmed, lower
    case), hashed with the app's secret key so the storage holds no email addresses. Emails
    that belong to no one are counted the same way, so the limit tells nothing about which
    accounts exist."""
    normalized = (email or "").strip().lower()
    secret = current_app.secret_key or ""
    key = secret if isinstance(secret, bytes) else secret.encode()
    digest = hmac.new(key, b"sign-in-account:" + normalized.encode(), hashlib.sha256)
    return f"account:{digest.hexdigest()}"


def submitted_account() -> str:
    """The account the sign-in form names (its ``email`` field)."""
    return account_key(request.form.get("email"))


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


def _wait_message() -> str:
    """The 429 page's sentence, with the wait the breached limit imposes."""
    seconds = 60.0
    current = limiter.current_limit
    if current is not None:
        with suppress(Exception):  # the storage failed just now: the 60 s guess stands
            seconds = current.reset_at - time.time()
    minutes = max(1, round(seconds / 60))
    wait = "a minute" if minutes == 1 else f"{minutes} minutes"
    return f"Too many sign-in attempts. Wait {wait} and try again."


def _limit(setting: str, scope: str, key_func: Callable[[], str]) -> Callable[[F], F]:
    route_limit = limiter.shared_limit(_setting(setting), scope, key_func=key_func,
                                       methods=["POST"], error_message=_wait_message)

    def decorate(view: F) -> F:
        return cast(F, route_limit(view))

    return decorate


def sign_in_limits(view: F) -> F:
    """Limit a sign-in form's POSTs per client address (``LOGIN_RATE_LIMIT``) and per
    account (``LOGIN_ACCOUNT_RATE_LIMIT``, the ``email`` field). Every POST counts when it
    arrives; a refused one gets the 429 page with Retry-After."""
    view = _limit("LOGIN_ACCOUNT_RATE_LIMIT", ACCOUNT_SCOPE, submitted_account)(view)
    return _limit("LOGIN_RATE_LIMIT", ADDRESS_SCOPE, client_address)(view)


def two_factor_limits(pending_account: Callable[[], object]) -> Callable[[F], F]:
    """Limit a two-factor code step's POSTs per pending account (``TWO_FACTOR_RATE_LIMIT``,
    keyed on what ``pending_account()`` returns, e.g. the user id waiting for its code)
    and per client address (``LOGIN_RATE_LIMIT``, the budget the sign-in form spends too)."""

    def pending() -> str:
        return f"user:{pending_account() or '-'}"

    def decorate(view: F) -> F:
        view = _limit("TWO_FACTOR_RATE_LIMIT", TWO_FACTOR_SCOPE, pending)(view)
        return _limit("LOGIN_RATE_LIMIT", ADDRESS_SCOPE, client_address)(view)

    return decorate


def forget_failed_sign_ins() -> None:
    """After a successful sign-in: the attempts this request counted against the account
    are cleared, so only failures add up (the per-address count stays)."""
    for counted in limiter.current_limits:
        if ACCOUNT_SCOPE in counted.request_args or TWO_FACTOR_SCOPE in counted.request_args:
            limiter.limiter.clear(counted.limit, *counted.request_args)


def _retry_after_only_when_refused(response: Response) -> Response:
    """The limiter writes Retry-After on every limited response; it belongs on refusals."""
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def init_app(app: Flask) -> None:
    """Check the throttling settings and bind the limiter; a wrong setting stops the app
    with a sentence that names it."""
    config = app.config
    for name in LIMIT_SETTINGS:
        try:
            parse_many(str(config[name]))
        except ValueError:
            raise RuntimeError(f"{name}={config[name]!r} is not a rate limit; write it like "
                               f"'5 per minute; 20 per hour'.") from None
    scheme = urlsplit(str(config["RATELIMIT_STORAGE_URI"])).scheme
    if scheme in REDIS_SCHEMES:
        if importlib.util.find_spec("redis") is None:
            raise RuntimeError(
                f"RATELIMIT_STORAGE_URI is a {scheme}:// address but the redis package is not "
                "installed. Install requirements/prod.lock (or the project's 'redis' extra: "
                "pip install -e '.[redis]'), or use memory:// with a single process.")
        options = config.setdefault("RATELIMIT_STORAGE_OPTIONS", {})
        options.setdefault("socket_connect_timeout", REDIS_TIMEOUT)
        options.setdefault("socket_timeout", REDIS_TIMEOUT)
    config.setdefault("RATELIMIT_ENABLED", not config.get("TESTING", False))
    # Registered before the limiter's own hook, so it runs after it.
    app.after_request(_retry_after_only_when_refused)
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:
        raise RuntimeError(f"RATELIMIT_STORAGE_URI ({scheme}://...) cannot be used: {exc}") \
            from exc
