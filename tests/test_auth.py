"""Sign-in, sign-out and the wall every console page stands behind."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
import time_machine

from backoffice.extensions import db, limiter
from backoffice.models import AuditEvent, StaffUser
from tests.conftest import PASSWORD, csrf_token_from, login

#: values for URL converters when building a page address from a rule
DUMMY_ARGS = {"export_type": "csv", "filename": "x.css", "tab": "subscriptions"}


def _admin_blueprints(app) -> set[str]:
    admin = app.extensions["admin"][0]
    return {view.endpoint for view in admin._views}


def _admin_rules(app, method: str):
    """Every console rule that answers ``method``, read from the app's URL map."""
    blueprints = _admin_blueprints(app)
    rules = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".", 1)[0]
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        if not (rule.endpoint.startswith("admin.") or blueprint in blueprints):
            continue
        if method in rule.methods:
            rules.append(rule)
    return rules


def _url_for_rule(rule) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: DUMMY_ARGS.get(m.group(1), "1"),
                  rule.rule)


def _assert_sent_to_login(response, url: str) -> None:
    assert response.status_code == 302, (url, response.status_code)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login", (url, response.headers["Location"])
    assert parse_qs(location.query)["next"][0].startswith(urlsplit(url).path), url


def _row_counts() -> dict[str, int]:
    return {t.name: db.session.scalar(sa.select(sa.func.count()).select_from(t))
            for t in db.metadata.sorted_tables}


# --------------------------------------------------------------------------- anonymous


def test_every_console_page_sends_anonymous_visitors_to_login(app):
    rules = _admin_rules(app, "GET")
    # the crawl must find the whole console, not a handful of pages
    assert len(rules) > 100
    assert {"admin.index", "staffuser.index_view", "order.details_view",
            "auditevent.export"} <= {r.endpoint for r in rules}
    client = app.test_client()
    for rule in rules:
        url = _url_for_rule(rule)
        _assert_sent_to_login(client.get(url), url)


def test_every_console_post_refuses_anonymous_visitors(app):
    rules = _admin_rules(app, "POST")
    assert {"staffuser.create_view", "staffuser.action_view",
            "certificatetype.create_view"} <= {r.endpoint for r in rules}
    client = app.test_client()
    for rule in rules:
        url = _url_for_rule(rule)
        response = client.post(url, data={"action": "deactivate", "rowid": "1"})
        _assert_sent_to_login(response, url)


def test_anonymous_post_changes_nothing(app, appctx, staff):
    target = staff("support")
    client = app.test_client()
    client.post("/admin/staffuser/action/", data={"action": "deactivate", "rowid": target})
    client.post("/admin/staffuser/new/", data={"email": "intruder@staff.test", "name": "X",
                                               "role": "admin", "password": "x" * 20})
    with appctx():
        assert db.session.get(StaffUser, target).active is True
        assert db.session.scalar(sa.select(sa.func.count(StaffUser.id))) == 1
        assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == 0


def test_root_leads_to_the_console(app):
    response = app.test_client().get("/")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/admin/"


# --------------------------------------------------------------------------- sign-in


def test_good_password_signs_in(app, appctx, staff):
    user_id = staff("finance", email="fiona@staff.test")
    client = app.test_client()
    moment = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    with time_machine.travel(moment, tick=False):
        response = login(client, "Fiona@Staff.test")
        assert response.status_code == 303
        assert urlsplit(response.headers["Location"]).path == "/admin/"
        assert client.get("/admin/").status_code == 200
    with appctx():
        assert db.session.get(StaffUser, user_id).last_login_at == moment


@pytest.mark.parametrize("email, password, reason", [
    ("support@staff.test", "wrong password here", "password"),
    ("support@staff.test", "", None),
    ("nobody@staff.test", PASSWORD, "unknown account"),
])
def test_bad_credentials_fail_and_write_only_their_audit_event(app, appctx, staff, email,
                                                               password, reason):
    user_id = staff("support")
    with appctx():
        before = _row_counts()
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password},
                           environ_base={"REMOTE_ADDR": "192.0.2.7"})
    if password:
        assert response.status_code == 401
        assert b"Wrong email or password" in response.data
    else:
        assert response.status_code in (200, 401)
    with appctx():
        after = _row_counts()
        written = {name for name in after if after[name] != before[name]}
        assert written == ({"audit_event"} if reason else set())
        events = db.session.scalars(sa.select(AuditEvent)).all()
        if reason:
            (event,) = events
            assert event.action == "staff.sign_in_failed"
            assert (event.actor_id, event.actor_label) == (None, "anonymous")
            assert event.details == {"email": email, "ip": "192.0.2.7", "reason": reason}
            if reason == "unknown account":
                assert (event.target_type, event.target_id) == ("UnknownAccount", email)
            else:
                assert (event.target_type, event.target_id) == ("StaffUser", str(user_id))
        else:
            assert events == []  # the form was refused before any check
        assert db.session.get(StaffUser, user_id).last_login_at is None
    # still signed out
    _assert_sent_to_login(client.get("/admin/"), "/admin/")


def test_deactivated_staff_cannot_sign_in(app, appctx, staff):
    user_id = staff("admin", active=False)
    client = app.test_client()
    response = login(client, "admin@staff.test")
    assert response.status_code == 401
    _assert_sent_to_login(client.get("/admin/"), "/admin/")
    with appctx():
        assert db.session.get(StaffUser, user_id).last_login_at is None


def test_deactivation_ends_an_open_session(app, appctx, client_as):
    client = client_as("support")
    assert client.get("/admin/").status_code == 200
    with appctx() as session:
        session.execute(sa.update(StaffUser).values(active=False))
        session.commit()
    _assert_sent_to_login(client.get("/admin/"), "/admin/")


def test_next_parameter_is_followed_when_local(app, staff):
    staff("support")
    response = app.test_client().post(
        "/login?next=/admin/order/?page=2", data={"email": "support@staff.test",
                                                   "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/order/?page=2"


@pytest.mark.parametrize("target", [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "javascript:alert(1)",
    "evil.example",
])
def test_next_parameter_never_leaves_the_site(app, staff, target):
    staff("support")
    response = app.test_client().post(
        "/login", query_string={"next": target},
        data={"email": "support@staff.test", "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"


def test_anonymous_redirect_round_trip_returns_to_the_page(app, staff):
    staff("finance")
    client = app.test_client()
    first = client.get("/admin/invoice/")
    next_url = parse_qs(urlsplit(first.headers["Location"]).query)["next"][0]
    response = client.post("/login", query_string={"next": next_url},
                           data={"email": "finance@staff.test", "password": PASSWORD})
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/admin/invoice/"


# --------------------------------------------------------------------------- sign-out


def test_logout_is_post_only(client_as):
    client = client_as("admin")
    assert client.get("/logout").status_code == 405
    assert client.get("/admin/").status_code == 200  # a GET did not sign anybody out
    response = client.post("/logout")
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/login"
    _assert_sent_to_login(client.get("/admin/"), "/admin/")


# --------------------------------------------------------------------------- CSRF, rate limit


@pytest.fixture
def csrf_app(second_app):
    return second_app(WTF_CSRF_ENABLED=True)


def test_login_without_csrf_token_is_refused(csrf_app, staff):
    staff("support")
    client = csrf_app.test_client()
    response = login(client, "support@staff.test")
    assert response.status_code == 400
    _assert_sent_to_login(client.get("/admin/"), "/admin/")


def test_login_with_csrf_token_from_the_page_succeeds(csrf_app, staff):
    staff("support")
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "support@staff.test",
                                           "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303
    assert client.get("/admin/").status_code == 200


def test_logout_without_csrf_token_is_refused(csrf_app, staff):
    staff("support")
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": "support@staff.test", "password": PASSWORD,
                                "csrf_token": token})
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200


@pytest.fixture
def rate_limited_app(second_app, monkeypatch):
    # The limiter is shared by every app in the process; put its switch back afterwards.
    monkeypatch.setattr(limiter, "enabled", limiter.enabled)
    return second_app(RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute")


def test_fourth_login_attempt_in_a_minute_is_refused(rate_limited_app, staff):
    staff("support")
    client = rate_limited_app.test_client()
    with time_machine.travel(datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC), tick=False):
        statuses = [login(client, "support@staff.test", "wrong password here").status_code
                    for _ in range(3)]
        assert statuses == [401, 401, 401]
        refused = login(client, "support@staff.test")  # even the right password
        assert refused.status_code == 429
        assert b"Too many" in refused.data
        # reading the sign-in page is not limited
        assert client.get("/login").status_code == 200
