"""Sign-in throttling in one process: per client address and per account, the client
address behind a proxy (PROXY_FIX), refusals with Retry-After, what happens when the
counting store is down, and the settings checked at startup.

Across processes (gunicorn workers sharing Redis): tests/test_throttling_production.py.
"""

from __future__ import annotations

import runpy
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from flask import request

from backoffice import create_app
from backoffice.extensions import limiter
from backoffice.views import throttle
from tests.conftest import PASSWORD, base_config

MOMENT = datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC)
pytestmark = pytest.mark.clock(MOMENT)

PROJECT = Path(__file__).resolve().parent.parent
WRONG = "wrong password here"
PROXY = "10.0.0.2"  # the reverse proxy's own address, as the app sees it


@pytest.fixture(autouse=True)
def _limiter_switch(monkeypatch):
    """The limiter is shared by every app in the process, and each app made here may turn
    it on: put its switch back afterwards."""
    monkeypatch.setattr(limiter, "enabled", limiter.enabled)


@pytest.fixture
def limited(second_app):
    """``limited(**config)``: an app with the limiter on (a fresh in-memory count)."""

    def factory(**config):
        settings = {"LOGIN_RATE_LIMIT": "100 per minute",
                    "LOGIN_ACCOUNT_RATE_LIMIT": "100 per minute", **config}
        return second_app(RATELIMIT_ENABLED=True, **settings)

    return factory


def attempt(client, email="support@staff.test", password=WRONG, *, address="192.0.2.10",
            forwarded_for=None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/login", data={"email": email, "password": password},
                       headers=headers, environ_overrides={"REMOTE_ADDR": address})


def statuses(client, count, **kwargs) -> list[int]:
    return [attempt(client, **kwargs).status_code for _ in range(count)]


# --------------------------------------------------------------------------- per account


def test_an_account_is_limited_whatever_the_address(limited, staff):
    staff("support")
    staff("finance")
    client = limited(LOGIN_ACCOUNT_RATE_LIMIT="3 per minute").test_client()
    # each attempt from another address, the email written differently each time
    spellings = ["support@staff.test", "Support@Staff.Test", "  SUPPORT@staff.test "]
    results = [attempt(client, email, address=f"192.0.2.{i}").status_code
               for i, email in enumerate(spellings)]
    assert results == [401, 401, 401]
    # the right password is not even looked at now
    refused = attempt(client, password=PASSWORD, address="198.51.100.7")
    assert refused.status_code == 429
    assert "/admin/" not in refused.headers.get("Location", "")
    # another account is not affected, from any of those addresses
    assert attempt(client, "finance@staff.test", PASSWORD, address="192.0.2.0").status_code \
        == 303


def test_an_unknown_email_is_counted_like_an_account(limited):
    client = limited(LOGIN_ACCOUNT_RATE_LIMIT="2 per minute").test_client()
    assert statuses(client, 3, email="nobody@staff.test") == [401, 401, 429]


def test_only_failures_since_the_last_sign_in_count(limited, staff):
    staff("support")
    app = limited(LOGIN_ACCOUNT_RATE_LIMIT="3 per minute")
    client = app.test_client()
    assert statuses(client, 2) == [401, 401]
    assert attempt(app.test_client(), password=PASSWORD).status_code == 303
    # the sign-in cleared the two failures: three more are evaluated
    assert statuses(client, 4) == [401, 401, 401, 429]


def test_the_limit_holds_for_an_hour_too(limited, staff):
    staff("support")
    client = limited(LOGIN_ACCOUNT_RATE_LIMIT="2 per minute; 3 per hour").test_client()
    assert statuses(client, 3) == [401, 401, 429]
    with time_machine.travel(MOMENT + timedelta(seconds=61), tick=False):
        assert statuses(client, 2) == [401, 429]  # the hour allows one more
    with time_machine.travel(MOMENT + timedelta(minutes=31), tick=False):
        refused = attempt(client)
        assert refused.status_code == 429
        assert "Wait 29 minutes and try again" in refused.get_data(as_text=True)
    # a moving window: the first two attempts leave it an hour after they were made
    with time_machine.travel(MOMENT + timedelta(minutes=60, seconds=1), tick=False):
        assert attempt(client).status_code == 401


def test_the_account_key_holds_no_email():
    app = create_app(base_config("sqlite://"))
    with app.test_request_context():
        key = throttle.account_key(" Support@Staff.TEST ")
        assert key == throttle.account_key("support@staff.test")
        assert "support" not in key and "staff.test" not in key
        assert key != throttle.account_key("finance@staff.test")
    other = create_app({**base_config("sqlite://"), "SECRET_KEY": "another-key"})
    with other.test_request_context():
        assert throttle.account_key("support@staff.test") != key


# --------------------------------------------------------------------------- per address


def test_an_address_is_limited_whatever_the_account(limited):
    client = limited(LOGIN_RATE_LIMIT="3 per minute").test_client()
    results = [attempt(client, f"guess{i}@staff.test").status_code for i in range(4)]
    assert results == [401, 401, 401, 429]
    assert attempt(client, "guess9@staff.test", address="192.0.2.99").status_code == 401


def test_an_ipv6_client_counts_as_its_slash_64():
    app = create_app(base_config("sqlite://"))
    keys = {}
    for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1",
                    "::ffff:192.0.2.7", "192.0.2.7"):
        with app.test_request_context(environ_base={"REMOTE_ADDR": address}):
            keys[address] = throttle.client_address()
    assert keys["2001:db8:1:2::1"] == keys["2001:db8:1:2:ffff::9"] == "address:2001:db8:1:2::/64"
    assert keys["2001:db8:1:3::1"] != keys["2001:db8:1:2::1"]
    assert keys["::ffff:192.0.2.7"] == keys["192.0.2.7"] == "address:192.0.2.7"


# --------------------------------------------------------------------------- refusals


def test_a_refusal_says_when_to_come_back(limited):
    client = limited(LOGIN_RATE_LIMIT="1 per minute").test_client()
    first = attempt(client)
    assert first.status_code == 401 and "Retry-After" not in first.headers
    refused = attempt(client)
    assert refused.status_code == 429
    assert 55 <= int(refused.headers["Retry-After"]) <= 61
    assert "Wait a minute and try again" in refused.get_data(as_text=True)
    # reading the sign-in page is never limited
    assert client.get("/login").status_code == 200


# --------------------------------------------------------------------------- the 2FA step

_pending = {"user": 7}


@throttle.two_factor_limits(lambda: _pending["user"])
def _code_step():
    return "wrong code", 401


def test_the_two_factor_step_has_its_own_limit_and_the_address_budget(limited):
    app = limited(TWO_FACTOR_RATE_LIMIT="2 per minute", LOGIN_RATE_LIMIT="4 per minute")
    app.add_url_rule("/two-factor-test", "two_factor_test", _code_step, methods=["POST"])
    client = app.test_client()
    codes = [client.post("/two-factor-test").status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    _pending["user"] = 8  # another account waiting for its code, same address
    assert client.post("/two-factor-test").status_code == 401
    # the address has spent 3 of its 4 attempts on codes: one sign-in left
    assert statuses(client, 2, address="127.0.0.1") == [401, 429]


# --------------------------------------------------------------------------- PROXY_FIX


def test_behind_one_proxy_the_forwarded_address_is_the_client(limited):
    client = limited(PROXY_FIX=1, LOGIN_RATE_LIMIT="2 per minute").test_client()
    assert statuses(client, 2, address=PROXY, forwarded_for="203.0.113.5") == [401, 401]
    assert attempt(client, address=PROXY, forwarded_for="203.0.113.5").status_code == 429
    # another client behind the same proxy
    assert attempt(client, address=PROXY, forwarded_for="203.0.113.6").status_code == 401
    # a client that writes its own X-Forwarded-For: the proxy appends the address it saw,
    # and only that last entry is trusted
    spoofed = attempt(client, address=PROXY, forwarded_for="198.51.100.1, 203.0.113.5")
    assert spoofed.status_code == 429


def test_without_proxy_fix_forwarded_headers_are_ignored(limited):
    app = limited(LOGIN_RATE_LIMIT="2 per minute")
    client = app.test_client()
    results = [attempt(client, forwarded_for=f"203.0.113.{i}").status_code for i in range(3)]
    assert results == [401, 401, 429]
    with app.test_request_context(environ_base={"REMOTE_ADDR": "192.0.2.1"},
                                  headers={"X-Forwarded-For": "203.0.113.1",
                                           "X-Forwarded-Proto": "https"}):
        assert request.remote_addr == "192.0.2.1" and request.scheme == "http"


def test_proxy_fix_takes_the_scheme_but_not_the_host(limited):
    app = limited(PROXY_FIX=1)
    seen = {}

    @app.get("/where-test")
    def where():
        seen.update(addr=request.remote_addr, scheme=request.scheme, host=request.host)
        return "ok"

    app.test_client().get("/where-test", environ_overrides={"REMOTE_ADDR": PROXY}, headers={
        "X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example", "Host": "console.example"})
    assert seen == {"addr": "203.0.113.5", "scheme": "https", "host": "console.example"}


@pytest.mark.parametrize("value", ["-1", "one", "1.5", True])
def test_a_wrong_proxy_fix_stops_the_app(value):
    with pytest.raises(RuntimeError, match="PROXY_FIX"):
        create_app({**base_config("sqlite://"), "PROXY_FIX": value})


# --------------------------------------------------------------------------- storage down


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_when_the_store_is_down_sign_in_is_refused(limited, client_as, caplog):
    """Fail closed: an attempt that cannot be counted is not evaluated (503), while
    signed-in staff keep working."""
    pytest.importorskip("redis")
    signed_in = client_as("admin")
    app = limited(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{_closed_port()}/0")
    client = app.test_client()
    with caplog.at_level("ERROR", logger="backoffice"):
        refused = attempt(client, "admin@staff.test", PASSWORD)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 503, page[:2000]
    assert "cannot reach the store that counts sign-in attempts" in page
    assert refused.headers["Retry-After"] == "60"
    assert "Rate limit storage failed" in caplog.text
    assert client.get("/admin/").status_code == 302  # not signed in
    assert client.get("/login").status_code == 200
    # a session opened before the outage still works on this app
    other = app.test_client()
    other.set_cookie("session", signed_in.get_cookie("session").value)
    assert other.get("/admin/").status_code == 200


# --------------------------------------------------------------------------- startup checks


def test_a_redis_store_without_the_redis_package_stops_the_app(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # as if it were not installed
    config = {**base_config("sqlite://"), "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}
    with pytest.raises(RuntimeError, match="redis package is not installed.*prod.lock"):
        create_app(config)


@pytest.mark.parametrize("name", throttle.LIMIT_SETTINGS)
def test_a_limit_that_does_not_parse_stops_the_app(name):
    with pytest.raises(RuntimeError, match=f"{name}='ten a minute' is not a rate limit"):
        create_app({**base_config("sqlite://"), name: "ten a minute"})


def test_an_unknown_store_stops_the_app_with_the_setting_named():
    with pytest.raises(RuntimeError, match=r"RATELIMIT_STORAGE_URI \(nosuch://\.\.\.\)"):
        create_app({**base_config("sqlite://"), "RATELIMIT_STORAGE_URI": "nosuch://x:1",
                    "RATELIMIT_ENABLED": True})


@pytest.mark.parametrize(("env", "refused"), [
    ({"WEB_CONCURRENCY": "2"}, True),
    ({"WEB_CONCURRENCY": "2", "RATELIMIT_STORAGE_URI": "memory://"}, True),
    ({"WEB_CONCURRENCY": "2", "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}, False),
    ({"WEB_CONCURRENCY": "1"}, False),
])
def test_gunicorn_refuses_several_workers_counting_apart(monkeypatch, env, refused):
    for name in ("RATELIMIT_STORAGE_URI", "BACKOFFICE_RATELIMIT_STORAGE_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if refused:
        with pytest.raises(SystemExit, match="would each count sign-in attempts on their own"):
            runpy.run_path(str(PROJECT / "gunicorn.conf.py"))
    else:
        assert runpy.run_path(str(PROJECT / "gunicorn.conf.py"))["workers"] == \
            int(env["WEB_CONCURRENCY"])
