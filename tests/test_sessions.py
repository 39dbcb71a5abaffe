"""Server-side staff sessions: a copied cookie stops working once its session ends, for
every reason a session ends; the Sessions page; sign-in events in the audit log."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
import time_machine

from backoffice import sessions
from backoffice.extensions import db
from backoffice.models import AuditEvent, StaffSession, StaffUser
from backoffice.views.staff_sessions import describe_browser
from tests.conftest import PASSWORD, csrf_token_from, login

MOMENT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0.0.0 Safari/537.36")


def signed_in(app, email: str, *, ip: str = "127.0.0.1"):
    """A new test client signed in as ``email``."""
    client = app.test_client()
    # Flask-Login's strong protection ties the cookie to the address and browser
    client.environ_base.update({"REMOTE_ADDR": ip, "HTTP_USER_AGENT": BROWSER})
    data = {"email": email, "password": PASSWORD}
    if app.config["WTF_CSRF_ENABLED"]:
        data["csrf_token"] = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data=data)
    assert response.status_code == 303, response.data
    return client


def copy_of(app, client):
    """Another browser holding a copy of ``client``'s session cookie."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.environ_base.update(client.environ_base)
    thief.set_cookie("session", cookie.value, domain=cookie.domain)
    return thief


def opens_console(client) -> bool:
    response = client.get("/admin/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    return False


def flashed_on_login(client) -> str:
    return client.get("/login").get_data(as_text=True)


def _user(email: str) -> StaffUser:
    return db.session.scalar(sa.select(StaffUser).where(StaffUser.email == email))


def _actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)))


# --------------------------------------------------------------------------- the cookie


def test_sign_in_records_a_session_whose_key_only_the_cookie_holds(app, appctx, staff):
    user_id = staff("support")
    with time_machine.travel(MOMENT, tick=False):
        client = signed_in(app, "support@staff.test", ip="192.0.2.10")
    with appctx():
        (row,) = db.session.scalars(sa.select(StaffSession)).all()
        assert (row.user_id, row.ip, row.user_agent) == (user_id, "192.0.2.10", BROWSER)
        assert row.created_at == row.last_seen_at == MOMENT
        assert row.second_factor_done is True and row.ended_at is None
        cookie = client.get_cookie("session").value
        # the cookie names the session by a random key; the table keeps only its SHA-256
        key = client.application.session_interface.get_signing_serializer(
            client.application).loads(cookie)["staff_session"]
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in row.key_hash and len(key) >= 40
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sign_in"))
        assert (event.actor_id, event.target_id) == (user_id, str(user_id))
        assert event.details == {"session": row.id, "method": "password", "ip": "192.0.2.10"}


def test_a_copied_cookie_works_until_sign_out_then_never_again(app, appctx, staff):
    staff("support")
    client = signed_in(app, "support@staff.test")
    thief = copy_of(app, client)
    assert opens_console(thief)  # the copy is as good as the original while it lasts
    response = client.post("/logout")
    assert response.status_code == 303
    assert not opens_console(client)
    assert not opens_console(thief)
    assert "You signed out of that session" in flashed_on_login(thief)
    with appctx():
        row = db.session.scalar(sa.select(StaffSession))
        assert row.ended_at is not None and row.end_reason == "sign-out"
        assert _actions() == ["staff.sign_in", "staff.sign_out"]


def test_sign_out_ends_only_that_session(app, staff):
    staff("support")
    laptop = signed_in(app, "support@staff.test")
    desktop = signed_in(app, "support@staff.test")
    laptop.post("/logout")
    assert not opens_console(laptop)
    assert opens_console(desktop)


def test_a_cookie_from_before_server_sessions_opens_nothing(app, staff):
    """A Flask-Login cookie without a staff session (as made before this release)."""
    user_id = staff("support")
    client = app.test_client()
    with client.session_transaction() as cookie_session:
        cookie_session["_user_id"] = str(user_id)
        cookie_session["_fresh"] = True
    assert not opens_console(client)


def test_sign_in_starts_a_new_cookie_session(app, appctx, staff):
    """Session fixation: whatever the browser brought, signing in replaces it."""
    staff("support")
    client = app.test_client()
    with client.session_transaction() as planted:
        planted["staff_session"] = "a-key-the-attacker-chose"
        planted["something"] = "left over"
    before = client.get_cookie("session").value
    response = login(client, "support@staff.test")
    assert response.status_code == 303
    with client.session_transaction() as fresh:
        assert "something" not in fresh
        assert fresh["staff_session"] != "a-key-the-attacker-chose"
    attacker = app.test_client()
    attacker.set_cookie("session", before)
    assert not opens_console(attacker)
    assert opens_console(client)


@pytest.mark.parametrize("reason", ["password", "deactivated", "role", "2fa-reset", "admin"])
def test_end_sessions_signs_out_every_browser_of_the_user(app, appctx, staff, reason):
    user_id = staff("support")
    staff("admin")
    client = signed_in(app, "support@staff.test")
    other_browser = signed_in(app, "support@staff.test")
    thief = copy_of(app, client)
    admin = signed_in(app, "admin@staff.test")
    with appctx():
        ended = sessions.end_sessions(db.session.get(StaffUser, user_id), reason,
                                      actor=_user("admin@staff.test"))
        db.session.commit()
        assert ended == 2
    for browser in (client, other_browser, thief):
        assert not opens_console(browser)
    assert opens_console(admin)  # nobody else's session
    page = flashed_on_login(thief)
    expected = {"password": "Your password was changed", "deactivated": "deactivated",
                "role": "Your role was changed", "2fa-reset": "two-factor sign-in was reset",
                "admin": "An admin ended your session"}[reason]
    assert expected in page
    with appctx():
        rows = db.session.scalars(sa.select(StaffSession).where(
            StaffSession.user_id == user_id)).all()
        assert {row.end_reason for row in rows} == {reason}
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sessions_end"))
        assert event.details == {"reason": reason, "sessions": sorted(r.id for r in rows)}
        assert event.actor_label == "admin@staff.test"


def test_end_sessions_can_keep_the_current_one(app, appctx, staff):
    user_id = staff("support")
    kept = signed_in(app, "support@staff.test")
    ended = signed_in(app, "support@staff.test")
    with appctx():
        user = db.session.get(StaffUser, user_id)
        first = db.session.scalars(sa.select(StaffSession).order_by(StaffSession.id)).first()
        assert sessions.end_sessions(user, "password", actor=user, keep=first) == 1
        db.session.commit()
    assert opens_console(kept)
    assert not opens_console(ended)


def test_a_deactivated_account_is_refused_even_with_an_open_session(app, appctx, staff):
    user_id = staff("support")
    client = signed_in(app, "support@staff.test")
    with appctx():
        db.session.get(StaffUser, user_id).active = False
        db.session.commit()
    assert not opens_console(client)
    assert "Your account was deactivated" in flashed_on_login(client)


def test_a_sign_in_lasts_the_session_lifetime_at_most(app, appctx, staff):
    staff("support")
    lifetime = app.permanent_session_lifetime
    with time_machine.travel(MOMENT, tick=False) as traveller:
        client = signed_in(app, "support@staff.test")
        traveller.move_to(MOMENT + lifetime - timedelta(seconds=1))
        assert opens_console(client)
        traveller.move_to(MOMENT + lifetime)
        assert not opens_console(client)
        assert "Your sign-in has expired" in flashed_on_login(client)
    with appctx():
        row = db.session.scalar(sa.select(StaffSession))
        assert (row.ended_at, row.end_reason) == (MOMENT + lifetime, "expired")
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.session_end"))
        assert event.details == {"reason": "expired", "sessions": [row.id]}
        assert event.actor_label == "system"


def test_last_seen_is_written_at_most_once_a_minute(app, appctx, staff):
    staff("support")

    def last_seen():
        with appctx():
            return db.session.scalar(sa.select(StaffSession.last_seen_at))

    with time_machine.travel(MOMENT, tick=False) as traveller:
        client = signed_in(app, "support@staff.test")
        traveller.move_to(MOMENT + timedelta(seconds=59))
        assert opens_console(client)
        assert last_seen() == MOMENT
        traveller.move_to(MOMENT + timedelta(seconds=60))
        assert opens_console(client)
        assert last_seen() == MOMENT + timedelta(seconds=60)
        traveller.move_to(MOMENT + timedelta(seconds=100))
        assert opens_console(client)
        assert last_seen() == MOMENT + timedelta(seconds=60)


def test_a_session_ended_during_its_own_request_is_refused_next(app, appctx, staff):
    """An admin ending all their own sessions from the Sessions page keeps theirs; ending
    the one they use signs them out there and then."""
    user_id = staff("admin")
    client = signed_in(app, "admin@staff.test")
    other = signed_in(app, "admin@staff.test")
    response = client.post(f"/admin/sessions/staff/{user_id}/end")
    assert response.status_code == 303
    assert opens_console(client)
    assert not opens_console(other)
    with appctx():
        mine = db.session.scalar(sa.select(StaffSession.id).where(
            StaffSession.ended_at.is_(None)))
    response = client.post(f"/admin/sessions/end/{mine}")
    assert urlsplit(response.headers["Location"]).path == "/login"
    assert not opens_console(client)


# --------------------------------------------------------------------------- sign-in events


def test_a_deactivated_account_failing_to_sign_in_is_audited_with_its_account(app, appctx,
                                                                              staff):
    user_id = staff("support", active=False)
    client = app.test_client()
    response = client.post("/login", data={"email": "support@staff.test", "password": PASSWORD},
                           environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert response.status_code == 401
    with appctx():
        (event,) = db.session.scalars(sa.select(AuditEvent)).all()
        assert (event.action, event.target_type, event.target_id, event.actor_label) == (
            "staff.sign_in_failed", "StaffUser", str(user_id), "anonymous")
        assert event.details["reason"] == "deactivated"
        assert event.details["ip"] == "198.51.100.4"
        assert db.session.scalar(sa.select(sa.func.count(StaffSession.id))) == 0


def test_failed_sign_ins_are_committed_even_with_csrf_on(second_app, appctx, staff):
    staff("support")
    csrf_app = second_app(WTF_CSRF_ENABLED=True)
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "support@staff.test",
                                           "password": "not the password",
                                           "csrf_token": token})
    assert response.status_code == 401
    with appctx():
        assert _actions() == ["staff.sign_in_failed"]


# --------------------------------------------------------------------------- Sessions page


@pytest.mark.parametrize("role", ["support", "finance"])
def test_the_sessions_page_is_for_admins(app, appctx, staff, role):
    user_id = staff(role)
    client = signed_in(app, f"{role}@staff.test")
    assert client.get("/admin/sessions/").status_code == 403
    assert client.get(f"/admin/sessions/staff/{user_id}").status_code == 403
    with appctx():
        session_id = db.session.scalar(sa.select(StaffSession.id))
    assert client.post(f"/admin/sessions/end/{session_id}").status_code == 403
    assert client.post(f"/admin/sessions/staff/{user_id}/end").status_code == 403
    assert client.post(f"/admin/sessions/staff/{user_id}/reset-two-factor").status_code == 403
    assert opens_console(client)
    with appctx():
        assert _actions() == ["staff.sign_in"]


def test_the_sessions_page_lists_who_is_signed_in_where(app, appctx, staff):
    staff("admin")
    staff("support")
    with time_machine.travel(MOMENT, tick=False):
        signed_in(app, "support@staff.test", ip="203.0.113.9")
        admin = signed_in(app, "admin@staff.test")
        gone = signed_in(app, "support@staff.test", ip="203.0.113.99")
        gone.post("/logout")
        page = admin.get("/admin/sessions/").get_data(as_text=True)
    assert "support@staff.test" in page and "203.0.113.9<" in page
    assert "203.0.113.99" not in page  # signed out: not open
    assert "Chrome 120 on Linux" in page
    assert "this browser" in page
    assert "Jun 1, 2026, 9:00:00\u202fAM UTC" in page


def test_an_admin_ends_one_session_of_a_colleague(second_app, appctx, staff):
    csrf_app = second_app(WTF_CSRF_ENABLED=True)
    user_id = staff("support")
    staff("admin")
    victim = signed_in(csrf_app, "support@staff.test")
    other = signed_in(csrf_app, "support@staff.test")
    admin = signed_in(csrf_app, "admin@staff.test")
    with appctx():
        first = db.session.scalars(sa.select(StaffSession.id).where(
            StaffSession.user_id == user_id).order_by(StaffSession.id)).first()
    page = admin.get(f"/admin/sessions/staff/{user_id}").get_data(as_text=True)
    # without its token the button does nothing
    assert admin.post(f"/admin/sessions/end/{first}").status_code == 400
    assert opens_console(victim)
    response = admin.post(f"/admin/sessions/end/{first}",
                          data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 303
    assert not opens_console(victim)
    assert opens_console(other)
    with appctx():
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.session_end"))
        assert event.actor_label == "admin@staff.test"
        assert event.details == {"reason": "admin", "sessions": [first]}


def test_an_admin_ends_all_sessions_of_a_colleague(app, appctx, staff):
    user_id = staff("support")
    staff("admin")
    browsers = [signed_in(app, "support@staff.test") for _ in range(3)]
    admin = signed_in(app, "admin@staff.test")
    response = admin.post(f"/admin/sessions/staff/{user_id}/end", follow_redirects=True)
    assert "Ended 3 of support@staff.test&#39;s sessions." in response.get_data(as_text=True)
    assert not any(opens_console(browser) for browser in browsers)
    assert opens_console(admin)
    with appctx():
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sessions_end"))
        assert event.details["reason"] == "admin" and len(event.details["sessions"]) == 3


def test_sessions_page_addresses_of_nothing_are_404(app, staff):
    staff("admin")
    admin = signed_in(app, "admin@staff.test")
    assert admin.get("/admin/sessions/staff/999999").status_code == 404
    assert admin.post("/admin/sessions/end/999999").status_code == 404
    assert admin.post("/admin/sessions/staff/999999/end").status_code == 404


@pytest.mark.parametrize("user_agent, shown", [
    (BROWSER, "Chrome 120 on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
     "Firefox 121 on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.2 Safari/605.1.15", "Safari 17 on macOS"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91", "Edge 120 on Windows"),
    ("curl/8.5.0", "curl/8.5.0"),
    ("", "unknown"),
])
def test_browsers_are_named_shortly(user_agent, shown):
    assert describe_browser(user_agent) == shown


def test_a_page_refused_before_the_session_check_still_knows_who_is_signed_in(second_app,
                                                                              staff):
    """CSRF protection answers before the session is looked up: its error page is still
    the console's, with the menu of the staff member signed in."""
    staff("support")
    client = signed_in(second_app(WTF_CSRF_ENABLED=True), "support@staff.test")
    response = client.post("/admin/corporaterequest/enter/", data={})
    assert response.status_code == 400
    assert 'data-testid="whoami"' in response.get_data(as_text=True)
