"""Password resets and changes: an admin's one-time reset link, the public page that uses
it, and a staff member changing their own password with the current one."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from werkzeug.security import check_password_hash

from backoffice import staff as staff_accounts
from backoffice.errors import Conflict, DomainError, InvalidInput
from backoffice.extensions import db, limiter
from backoffice.models import AuditEvent, PasswordResetToken, StaffSession, StaffUser
from tests.conftest import PASSWORD, change_events, csrf_token_from, login, make_staff
from tests.test_staff import end_reasons, open_session, open_sessions

NEW_PASSWORD = "purple tractor lemon"
MOMENT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def _events(action: str | None = None) -> list[AuditEvent]:
    """The audit events of changes (sign-ins and sign-outs left out), or of one action."""
    query = change_events()
    if action:
        query = sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
    return list(db.session.scalars(query))


def _links() -> list[PasswordResetToken]:
    return list(db.session.scalars(sa.select(PasswordResetToken).order_by(
        PasswordResetToken.id)))


def _token(page: str) -> str:
    """The token of the reset link a page shows."""
    match = re.search(r'value="https?://[^/"]+/reset/([^"]+)" data-testid="reset-link"', page)
    assert match, page[:3000]
    return match.group(1)


# --------------------------------------------------------------------------- domain


@pytest.mark.clock(MOMENT)
def test_a_reset_link_is_stored_hashed_and_valid_for_an_hour(ctx):
    admin, user = make_staff("admin"), make_staff("finance")
    sessions = [open_session(user), open_session(user)]
    link = staff_accounts.make_reset_link(user, actor=admin)
    (row,) = _links()
    assert row.token_hash == hashlib.sha256(link.token.encode()).hexdigest()
    assert link.token not in row.token_hash and len(link.token) >= 40
    assert (row.user_id, row.created_by_id) == (user.id, admin.id)
    assert row.expires_at == link.expires_at == MOMENT + timedelta(hours=1)
    assert row.used_at is None
    # the old password stops working and every session ends
    assert not check_password_hash(user.password_hash, PASSWORD)
    assert all(s.end_reason == "password" for s in sessions)
    assert [e.action for e in _events()] == ["staff.password_reset_link", "staff.sessions_end"]
    event = _events("staff.password_reset_link")[0]
    assert event.actor_label == "admin@staff.test" and event.target_id == str(user.id)
    assert link.token not in str(event.details)
    assert event.details["link"] == row.id and event.details["replaced_links"] == 0


def test_using_a_link_sets_the_password_once(ctx):
    admin, user = make_staff("admin"), make_staff("support")
    link = staff_accounts.make_reset_link(user, actor=admin)
    session = open_session(user)  # signed in elsewhere meanwhile, somehow
    assert staff_accounts.use_reset_link(link.token, NEW_PASSWORD) is user
    assert check_password_hash(user.password_hash, NEW_PASSWORD)
    assert user.password_changed_at is not None
    assert session.end_reason == "password"
    (row,) = _links()
    assert row.used_at is not None
    event = _events("staff.password_reset_used")[0]
    assert event.actor_label == "support@staff.test" and event.details["link"] == row.id
    with pytest.raises(Conflict, match="already used"):
        staff_accounts.use_reset_link(link.token, "another good passphrase")
    assert check_password_hash(user.password_hash, NEW_PASSWORD)


def test_a_weak_password_leaves_the_link_usable(ctx):
    admin, user = make_staff("admin"), make_staff("support")
    link = staff_accounts.make_reset_link(user, actor=admin)
    for weak in ("password1234", "support@staff.test", "aaaaaaaaaaaa", "short"):
        with pytest.raises(InvalidInput):
            staff_accounts.use_reset_link(link.token, weak)
    assert _links()[0].used_at is None
    staff_accounts.use_reset_link(link.token, NEW_PASSWORD)


def test_a_link_expires_after_an_hour(ctx):
    admin, user = make_staff("admin"), make_staff("support")
    with time_machine.travel(MOMENT, tick=False):
        early = staff_accounts.make_reset_link(user, actor=admin)
        late = staff_accounts.make_reset_link(make_staff("finance"), actor=admin)
    with time_machine.travel(MOMENT + timedelta(minutes=59, seconds=59), tick=False):
        staff_accounts.use_reset_link(early.token, NEW_PASSWORD)
    with time_machine.travel(MOMENT + timedelta(hours=1), tick=False):
        with pytest.raises(Conflict, match="no longer works"):
            staff_accounts.open_reset_link(late.token)
        with pytest.raises(Conflict, match="no longer works"):
            staff_accounts.use_reset_link(late.token, NEW_PASSWORD)


def test_a_new_link_replaces_the_earlier_ones(ctx):
    admin, user = make_staff("admin"), make_staff("support")
    first = staff_accounts.make_reset_link(user, actor=admin)
    second = staff_accounts.make_reset_link(user, actor=admin)
    assert _events("staff.password_reset_link")[1].details["replaced_links"] == 1
    with pytest.raises(Conflict, match="newer link"):
        staff_accounts.use_reset_link(first.token, NEW_PASSWORD)
    staff_accounts.use_reset_link(second.token, NEW_PASSWORD)


@pytest.mark.parametrize("change", ["deactivate", "password"])
def test_deactivation_or_a_new_password_ends_open_links(ctx, change):
    admin, user = make_staff("admin"), make_staff("support")
    link = staff_accounts.make_reset_link(user, actor=admin)
    if change == "deactivate":
        staff_accounts.set_staff_active(user, False, actor=admin)
    else:
        staff_accounts.set_staff_password(user, "another good passphrase", actor=admin)
    with pytest.raises(Conflict):
        staff_accounts.use_reset_link(link.token, NEW_PASSWORD)
    # reactivated, the account still needs a new link
    if change == "deactivate":
        staff_accounts.set_staff_active(user, True, actor=admin)
        with pytest.raises(Conflict, match="no longer works"):
            staff_accounts.open_reset_link(link.token)


def test_no_link_for_a_deactivated_account(ctx):
    admin, user = make_staff("admin"), make_staff("support", active=False)
    with pytest.raises(Conflict, match="is deactivated"):
        staff_accounts.make_reset_link(user, actor=admin)
    assert _links() == [] and _events() == []


@pytest.mark.parametrize("token", ["", "x" * 43, "not-a-token"])
def test_an_unknown_link_is_refused(ctx, token):
    with pytest.raises(Conflict, match="not valid") as refused:
        staff_accounts.open_reset_link(token)
    assert refused.value.gone is False


def test_changing_your_own_password_keeps_this_session(ctx):
    user = make_staff("finance")
    this, other, another = open_session(user), open_session(user), open_session(user)
    staff_accounts.change_own_password(user, current=PASSWORD, new=NEW_PASSWORD, keep=this)
    assert check_password_hash(user.password_hash, NEW_PASSWORD)
    assert open_sessions(user) == [this]
    assert other.end_reason == another.end_reason == "password"
    assert [e.action for e in _events()] == ["staff.password_change", "staff.sessions_end"]
    assert _events()[0].actor_label == "finance@staff.test"


@pytest.mark.parametrize("current, new, message", [
    ("wrong current password", NEW_PASSWORD, "current password is not right"),
    ("", NEW_PASSWORD, "current password is not right"),
    (PASSWORD, PASSWORD, "is your current one"),
    (PASSWORD, "password1234", "most common"),
    (PASSWORD, "finance@staff.test", "email"),
])
def test_changing_your_own_password_is_refused(ctx, current, new, message):
    user = make_staff("finance")
    hash_before = user.password_hash
    session = open_session(user)
    with pytest.raises(InvalidInput, match=message):
        staff_accounts.change_own_password(user, current=current, new=new, keep=None)
    assert user.password_hash == hash_before
    assert session.ended_at is None
    assert _events() == []


# --------------------------------------------------------------------------- admin pages


def test_admin_makes_a_link_shown_once_never_in_a_flash(app, appctx, client_as, staff):
    target = staff("finance")
    client = client_as("admin")
    details = client.get(f"/admin/staffuser/details/?id={target}").get_data(as_text=True)
    assert f'href="/admin/staffuser/reset-link/{target}/"' in details
    intro = client.get(f"/admin/staffuser/reset-link/{target}/")
    assert intro.status_code == 200
    text = intro.get_data(as_text=True)
    assert "their current password stops working" in text
    assert "every session of the account is signed out" in text
    with appctx():
        assert _links() == []  # a GET makes nothing

    made = client.post(f"/admin/staffuser/reset-link/{target}/")
    assert made.status_code == 200
    assert made.headers["Cache-Control"] == "no-store"
    page = made.get_data(as_text=True)
    token = _token(page)
    assert "shown only once" in page
    with appctx():
        (row,) = _links()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        (event,) = _events("staff.password_reset_link")
        assert token not in str(event.details)
    # shown once: no flash carries it, and no later page shows it
    for url in ("/admin/", "/admin/staffuser/", f"/admin/staffuser/details/?id={target}"):
        assert token not in client.get(url).get_data(as_text=True)
    # the old password no longer signs in
    assert login(app.test_client(), "finance@staff.test").status_code == 401


def test_no_reset_link_button_for_your_own_account(appctx, client_as):
    client = client_as("admin")
    with appctx():
        me = db.session.scalar(sa.select(StaffUser.id))
    page = client.get(f"/admin/staffuser/details/?id={me}").get_data(as_text=True)
    assert "reset-link" not in page
    assert 'href="/admin/account/"' in page


def test_a_deactivated_account_gets_no_link_and_a_message(appctx, client_as, staff):
    target = staff("support", active=False)
    client = client_as("admin")
    page = client.post(f"/admin/staffuser/reset-link/{target}/", follow_redirects=True)
    assert "is deactivated; reactivate the account" in page.get_data(as_text=True)
    with appctx():
        assert _links() == [] and _events() == []


def test_an_unknown_account_is_a_404(client_as):
    assert client_as("admin").get("/admin/staffuser/reset-link/999999/").status_code == 404


@pytest.mark.parametrize("role", ["support", "finance"])
def test_other_roles_cannot_make_reset_links(appctx, client_as, staff, role):
    target = staff("admin", email="boss@staff.test")
    client = client_as(role)
    assert client.get(f"/admin/staffuser/reset-link/{target}/").status_code == 403
    assert client.post(f"/admin/staffuser/reset-link/{target}/").status_code == 403
    with appctx():
        assert _links() == [] and _events() == []
        user = db.session.get(StaffUser, target)
        assert check_password_hash(user.password_hash, PASSWORD)
    assert 'reset-link' not in client.get(
        f"/admin/staffuser/details/?id={target}").get_data(as_text=True)


@pytest.fixture
def csrf_app(second_app):
    return second_app(WTF_CSRF_ENABLED=True)


def test_making_a_link_needs_the_csrf_token(appctx, csrf_app, staff):
    target = staff("support")
    staff("admin")
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": "admin@staff.test", "password": PASSWORD,
                                "csrf_token": token})
    assert client.post(f"/admin/staffuser/reset-link/{target}/").status_code == 400
    with appctx():
        assert _links() == [] and _events() == []
    page = client.get(f"/admin/staffuser/reset-link/{target}/").get_data(as_text=True)
    token = csrf_token_from(page)
    made = client.post(f"/admin/staffuser/reset-link/{target}/", data={"csrf_token": token})
    assert made.status_code == 200
    with appctx():
        assert len(_links()) == 1


# --------------------------------------------------------------------------- the link page


def _make_link(appctx, email: str = "support@staff.test") -> str:
    with appctx():
        admin = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == "boss@x.test"))
        admin = admin or make_staff("admin", email="boss@x.test")
        user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == email))
        user = user or make_staff("support", email=email)
        link = staff_accounts.make_reset_link(user, actor=admin)
        db.session.commit()
        return link.token


def test_the_link_sets_a_password_and_leads_to_sign_in(app, appctx):
    token = _make_link(appctx)
    client = app.test_client()
    page = client.get(f"/reset/{token}")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    text = page.get_data(as_text=True)
    assert "support@staff.test" in text and "New password again" in text
    assert "not a common password" in text  # the rules, before typing

    done = client.post(f"/reset/{token}", data={"password": NEW_PASSWORD,
                                                "confirm": NEW_PASSWORD})
    assert done.status_code == 303
    assert done.headers["Location"] == "/login"
    assert "Sign in with the new password" in client.get("/login").get_data(as_text=True)
    assert login(app.test_client(), "support@staff.test").status_code == 401
    assert login(app.test_client(), "support@staff.test", NEW_PASSWORD).status_code == 303
    # once only
    again = client.get(f"/reset/{token}")
    assert again.status_code == 410
    assert "already used" in again.get_data(as_text=True)
    used = client.post(f"/reset/{token}", data={"password": "another good passphrase",
                                                "confirm": "another good passphrase"})
    assert used.status_code == 410
    with appctx():
        user = db.session.scalar(sa.select(StaffUser).where(
            StaffUser.email == "support@staff.test"))
        assert check_password_hash(user.password_hash, NEW_PASSWORD)
        assert [e.action for e in _events()][-1] == "staff.password_reset_used"


@pytest.mark.parametrize("password, confirm, message", [
    ("password1234", "password1234", "10,000 most common passwords"),
    ("aaaaaaaaaaaa", "aaaaaaaaaaaa", "one character repeated"),
    (" " * 12, " " * 12, "one character repeated"),
    ("support2024!", "support2024!", "cannot be your email address"),
    ("short", "short", "at least 12 characters"),
    (NEW_PASSWORD, NEW_PASSWORD + "x", "The two new passwords differ"),
    ("", "", "Type a new password."),
    ("x" * 201, "x" * 201, "Field cannot be longer than 200 characters."),
    ("a long password\x00", "a long password\x00", "Remove the control characters"),
])
def test_the_link_page_refuses_bad_passwords_and_stays_usable(app, appctx, password,
                                                              confirm, message):
    token = _make_link(appctx)
    client = app.test_client()
    page = client.post(f"/reset/{token}", data={"password": password, "confirm": confirm})
    assert page.status_code == 200
    assert message in page.get_data(as_text=True)
    with appctx():
        assert _links()[0].used_at is None
        assert _events("staff.password_reset_used") == []
    done = client.post(f"/reset/{token}", data={"password": NEW_PASSWORD,
                                                "confirm": NEW_PASSWORD})
    assert done.status_code == 303


@pytest.mark.parametrize("token", ["x" * 43, "short", "a" * 101, "bad%20chars-and-more-of-them",
                                   "%00" * 30])
def test_an_unknown_link_is_a_404_page(app, token):
    for response in (app.test_client().get(f"/reset/{token}"),
                     app.test_client().post(f"/reset/{token}",
                                            data={"password": NEW_PASSWORD,
                                                  "confirm": NEW_PASSWORD})):
        assert response.status_code == 404
        assert "This password reset link is not valid" in response.get_data(as_text=True)


def test_an_expired_link_is_a_410_page(app, appctx):
    with time_machine.travel(MOMENT, tick=False):
        token = _make_link(appctx)
    with time_machine.travel(MOMENT + timedelta(hours=1, seconds=1), tick=False):
        page = app.test_client().get(f"/reset/{token}")
        assert page.status_code == 410
        assert "links work for one hour" in page.get_data(as_text=True)
        post = app.test_client().post(f"/reset/{token}", data={"password": NEW_PASSWORD,
                                                               "confirm": NEW_PASSWORD})
        assert post.status_code == 410
    with appctx():
        assert _links()[0].used_at is None


def test_the_link_signs_out_the_browser_of_the_same_account(app, appctx, staff):
    staff("support")
    client = app.test_client()
    assert login(client, "support@staff.test").status_code == 303
    token = _make_link(appctx)
    client.post(f"/reset/{token}", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    response = client.get("/admin/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.fixture
def rate_limited_app(second_app, monkeypatch):
    monkeypatch.setattr(limiter, "enabled", limiter.enabled)
    return second_app(RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute")


def test_the_link_page_is_rate_limited(rate_limited_app, appctx):
    token = _make_link(appctx)
    client = rate_limited_app.test_client()
    with time_machine.travel(datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC), tick=False):
        statuses = [client.post(f"/reset/{token}", data={"password": "password1234",
                                                          "confirm": "password1234"}).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = client.post(f"/reset/{token}", data={"password": NEW_PASSWORD,
                                                        "confirm": NEW_PASSWORD})
        assert refused.status_code == 429
        assert client.get(f"/reset/{token}").status_code == 200  # reading is not limited
    with appctx():
        assert _links()[0].used_at is None


@pytest.mark.postgres
def test_two_uses_of_one_link_at_once_set_one_password(app, appctx, is_postgres):
    """PostgreSQL: threads submit the same link together; the conditional UPDATE lets one
    through and the others are told the link was used."""
    if not is_postgres:
        pytest.skip("concurrency is tested on PostgreSQL (set TEST_DATABASE_URL)")
    token = _make_link(appctx)
    threads, barrier = 6, threading.Barrier(6)
    outcomes: list[str] = []

    def worker(number: int):
        with app.app_context():
            barrier.wait()
            try:
                staff_accounts.use_reset_link(token, f"thread {number} passphrase here")
                db.session.commit()
                outcomes.append(f"ok {number}")
            except DomainError as exc:
                db.session.rollback()
                outcomes.append(str(exc))
            finally:
                db.session.remove()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    winners = [o for o in outcomes if o.startswith("ok ")]
    assert len(winners) == 1, outcomes
    assert outcomes.count(staff_accounts.LINK_USED) == threads - 1, outcomes
    with appctx():
        user = db.session.scalar(sa.select(StaffUser).where(
            StaffUser.email == "support@staff.test"))
        number = winners[0].split()[1]
        assert check_password_hash(user.password_hash, f"thread {number} passphrase here")
        assert len(_events("staff.password_reset_used")) == 1


# --------------------------------------------------------------------------- own account


def _change(client, current=PASSWORD, new=NEW_PASSWORD, confirm=None):
    return client.post("/admin/account/", data={
        "current": current, "password": new, "confirm": new if confirm is None else confirm},
        follow_redirects=True)


def test_every_role_changes_their_own_password(app, appctx, client_as):
    for role in ("support", "finance", "admin"):
        client = client_as(role)
        page = client.get("/admin/account/")
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "no-store"
        assert "Current password" in page.get_data(as_text=True)
        changed = _change(client)
        assert "Your password is changed" in changed.get_data(as_text=True)
        email = f"{role}@staff.test"
        assert login(app.test_client(), email).status_code == 401
        assert login(app.test_client(), email, NEW_PASSWORD).status_code == 303
        with appctx():
            (event,) = _events("staff.password_change")[-1:]
            assert event.actor_label == email
            assert NEW_PASSWORD not in str(event.details)


def test_the_top_bar_links_to_the_account_page(client_as):
    page = client_as("support").get("/admin/").get_data(as_text=True)
    assert 'href="/admin/account/"' in page and "Change password" in page


@pytest.mark.parametrize("current, new, confirm, message", [
    ("wrong current password", NEW_PASSWORD, None, "current password is not right"),
    ("", NEW_PASSWORD, None, "Type your current password."),
    (PASSWORD, PASSWORD, None, "is your current one"),
    (PASSWORD, "password1234", None, "10,000 most common passwords"),
    (PASSWORD, " " * 12, None, "one character repeated"),
    (PASSWORD, NEW_PASSWORD, "something else entirely", "The two new passwords differ"),
])
def test_a_refused_change_says_why_and_changes_nothing(app, appctx, client_as, current, new,
                                                       confirm, message):
    client = client_as("finance")
    page = _change(client, current, new, confirm)
    assert page.status_code == 200
    assert message in page.get_data(as_text=True)
    assert login(app.test_client(), "finance@staff.test").status_code == 303
    with appctx():
        assert _events() == []


def test_the_account_page_needs_a_sign_in(app):
    response = app.test_client().post("/admin/account/", data={
        "current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_change_keeps_this_session_and_ends_the_others(app, appctx, staff):
    """A password change ends the account's other sessions; the browser that made it
    stays signed in."""
    user_id = staff("finance")
    client = app.test_client()
    assert login(client, "finance@staff.test").status_code == 303
    with appctx():
        user = db.session.get(StaffUser, user_id)
        [this] = open_sessions(user)
        this_id, other = this.id, open_session(user).id
        db.session.commit()
    assert "Your password is changed" in _change(client).get_data(as_text=True)
    with appctx():
        user = db.session.get(StaffUser, user_id)
        assert [s.id for s in open_sessions(user)] == [this_id]
        assert db.session.get(StaffSession, other).end_reason == "password"
        assert end_reasons(user) == {"password"}
    assert client.get("/admin/").status_code == 200


def test_the_account_page_is_rate_limited(rate_limited_app, staff):
    staff("support")
    client = rate_limited_app.test_client()
    with time_machine.travel(datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC), tick=False):
        assert login(client, "support@staff.test").status_code == 303
        statuses = [_change(client, current="wrong current password").status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert client.post("/admin/account/", data={
            "current": PASSWORD, "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD}).status_code == 429
