"""Two-factor sign-in with TOTP: enrolment, the code step, recovery codes, replay, the
admin's reset, throttling and the setting that says who must use it.

Codes are computed with pyotp at the (moved) clock, as an authenticator app would.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from backoffice import create_app, twofactor
from backoffice.clock import utcnow
from backoffice.errors import Conflict, InvalidInput
from backoffice.extensions import db, limiter
from backoffice.models import AuditEvent, RecoveryCode, StaffRole, StaffSession, StaffUser
from tests.conftest import PASSWORD, base_config, login
from tests.test_auth import _admin_rules, _url_for_rule

MOMENT = datetime(2026, 6, 1, 9, 0, 10, tzinfo=UTC)
STEP = timedelta(seconds=30)

# Every test runs at MOMENT unless it moves on (sessions and codes follow that clock).
pytestmark = pytest.mark.clock(MOMENT)


@pytest.fixture
def required(app, monkeypatch):
    """``required("admin,finance")``: the roles that must use two-factor sign-in."""

    def set_roles(roles: str) -> None:
        monkeypatch.setitem(app.config, "TWO_FACTOR_REQUIRED_ROLES", roles)

    return set_roles


def _user(email: str) -> StaffUser:
    return db.session.scalar(sa.select(StaffUser).where(StaffUser.email == email))


def _actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)))


def code_at(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def shown_secret(html: str) -> str:
    match = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', html)
    assert match, "no secret on the page"
    return match.group(1).replace(" ", "")


def shown_codes(html: str) -> list[str]:
    block = html.split('data-testid="recovery-codes"', 1)[1].split("</ul>", 1)[0]
    return re.findall(r"<li>([0-9a-z-]+)</li>", block)


def enrolled(appctx, email: str, moment: datetime = MOMENT) -> tuple[str, list[str]]:
    """Turn two-factor sign-in on for ``email`` in the domain: (secret, recovery codes)."""
    with appctx(), time_machine.travel(moment - 10 * STEP, tick=False):
        user = _user(email)
        reference = twofactor.start_enrolment(user)
        codes = twofactor.confirm_enrolment(user, code_at(user.totp_secret, utcnow()),
                                            reference, actor=user, keep=None)
        secret = user.totp_secret
        db.session.commit()
    return secret, codes


def assert_to(response, path: str) -> None:
    assert response.status_code in (302, 303), (response.status_code, response.data[:300])
    assert urlsplit(response.headers["Location"]).path == path, response.headers["Location"]


# --------------------------------------------------------------------------- the domain


def test_a_code_is_accepted_one_step_either_side_and_never_twice(ctx, staff):
    staff("support")
    user = _user("support@staff.test")
    secret = pyotp.random_base32()
    user.totp_secret, user.totp_enrolled_at = secret, MOMENT
    with time_machine.travel(MOMENT, tick=False):
        assert twofactor.check_code(user, code_at(secret, MOMENT - 2 * STEP)) \
            is twofactor.CodeCheck.WRONG
        assert twofactor.check_code(user, code_at(secret, MOMENT + 2 * STEP)) \
            is twofactor.CodeCheck.WRONG
        assert twofactor.check_code(user, "12345") is twofactor.CodeCheck.WRONG
        previous = code_at(secret, MOMENT - STEP)
        assert twofactor.check_code(user, previous) is twofactor.CodeCheck.ACCEPTED
        # the same code again, or one of the same step: a replay
        assert twofactor.check_code(user, previous) is twofactor.CodeCheck.REPLAYED
        now = code_at(secret, MOMENT)
        assert twofactor.check_code(user, f"{now[:3]} {now[3:]}") is twofactor.CodeCheck.ACCEPTED
        assert twofactor.check_code(user, now) is twofactor.CodeCheck.REPLAYED
        later = code_at(secret, MOMENT + STEP)
        assert twofactor.check_code(user, later) is twofactor.CodeCheck.ACCEPTED
        assert user.totp_last_step == pyotp.TOTP(secret).timecode(MOMENT + STEP)
    with time_machine.travel(MOMENT + STEP, tick=False):
        # the app's current code was accepted ahead of time: it cannot be used again
        assert twofactor.check_code(user, later) is twofactor.CodeCheck.REPLAYED
    with time_machine.travel(MOMENT + 2 * STEP, tick=False):
        assert twofactor.check_code(user, code_at(secret, MOMENT + 2 * STEP)) \
            is twofactor.CodeCheck.ACCEPTED


def test_enrolment_needs_the_right_code_and_the_browser_that_started_it(ctx, staff):
    staff("support")
    user = _user("support@staff.test")
    with time_machine.travel(MOMENT, tick=False):
        first = twofactor.start_enrolment(user)
        first_secret = user.totp_secret
        assert twofactor.pending_secret(user, first) == first_secret
        with pytest.raises(InvalidInput, match="not right"):
            twofactor.confirm_enrolment(user, "000000", first, actor=user, keep=None)
        assert not twofactor.is_enrolled(user)
        # another window starts again: the first QR code no longer works
        second = twofactor.start_enrolment(user)
        assert twofactor.pending_secret(user, first) is None
        with pytest.raises(Conflict, match="replaced by a newer one"):
            twofactor.confirm_enrolment(user, code_at(first_secret, MOMENT), first,
                                        actor=user, keep=None)
        codes = twofactor.confirm_enrolment(user, code_at(user.totp_secret, MOMENT), second,
                                            actor=user, keep=None)
    assert twofactor.is_enrolled(user) and user.totp_enrolled_at == MOMENT
    assert len(codes) == twofactor.RECOVERY_CODES == len(set(codes))
    assert all(re.fullmatch(r"[0-9a-z]{4}(-[0-9a-z]{4}){3}", code) for code in codes)
    stored = ctx.scalars(sa.select(RecoveryCode.code_hash)).all()
    assert len(stored) == 10 and not set(codes) & set(stored)  # only hashes are kept
    with pytest.raises(Conflict, match="already on"):
        twofactor.start_enrolment(user)
    event = ctx.scalar(sa.select(AuditEvent).where(AuditEvent.action == "staff.two_factor_enrol"))
    assert event.details == {"recovery_codes": 10}


def test_a_recovery_code_works_once(ctx, staff):
    staff("support")
    user = _user("support@staff.test")
    reference = twofactor.start_enrolment(user)
    codes = twofactor.confirm_enrolment(user, code_at(user.totp_secret, utcnow()), reference,
                                        actor=user, keep=None)
    assert twofactor.verify_second_factor(user, codes[3].upper().replace("-", " ")) == (
        "recovery code", twofactor.CodeCheck.ACCEPTED)
    assert twofactor.verify_second_factor(user, codes[3]) == (None, twofactor.CodeCheck.WRONG)
    assert twofactor.verify_second_factor(user, "0000-0000-0000-0000")[0] is None
    assert twofactor.recovery_codes_left(user) == 9
    event = ctx.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "staff.recovery_code_used"))
    assert event.details == {"left": 9}


@pytest.mark.parametrize("setting, roles", [
    ("admin,finance", {StaffRole.ADMIN, StaffRole.FINANCE}),
    (" Admin , support ", {StaffRole.ADMIN, StaffRole.SUPPORT}),
    ("", set()),
    ("none", set()),
    (None, set()),
])
def test_the_required_roles_setting(setting, roles):
    assert twofactor.parse_roles(setting) == roles


def test_an_unknown_role_in_the_setting_stops_the_app(database_url):
    with pytest.raises(RuntimeError, match="Unknown role 'root'"):
        create_app({**base_config(database_url), "TWO_FACTOR_REQUIRED_ROLES": "admin,root"})


@pytest.mark.parametrize("testing, debug, expected", [
    (False, False, "admin,finance"),
    (True, False, ""),
    (False, True, ""),
])
def test_unset_it_requires_admin_and_finance_outside_development(database_url, monkeypatch,
                                                                 testing, debug, expected):
    monkeypatch.delenv("TWO_FACTOR_REQUIRED_ROLES", raising=False)
    monkeypatch.delenv("BACKOFFICE_TWO_FACTOR_REQUIRED_ROLES", raising=False)
    config = {**base_config(database_url), "TESTING": testing, "DEBUG": debug,
              "AUDIT_KEY": "production-like-audit-key-0123456789"}
    monkeypatch.setenv("FLASK_DEBUG", "1" if debug else "0")
    other = create_app(config)
    try:
        assert other.config["TWO_FACTOR_REQUIRED_ROLES"] == expected
    finally:
        with other.app_context():
            db.engine.dispose()


# --------------------------------------------------------------------------- sign-in


def test_enrolment_at_first_sign_in_when_the_role_requires_it(app, appctx, staff, required):
    required("admin,finance")
    user_id = staff("finance")
    client = app.test_client()
    with time_machine.travel(MOMENT, tick=False):
        response = client.post("/login?next=/admin/invoice/",
                               data={"email": "finance@staff.test", "password": PASSWORD})
        assert_to(response, "/login/enrol")
        assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == ["/admin/invoice/"]
        # nothing of the console opens before the enrolment is done
        assert_to(client.get("/admin/"), "/login")
        assert_to(client.get("/login"), "/login/enrol")
        page = client.get("/login/enrol?next=/admin/invoice/").get_data(as_text=True)
        assert "<svg" in page and 'class="segno"' in page  # the QR code, inline
        assert "http" not in page.split('data-testid="qr-code"', 1)[1].split("</div>", 1)[0]
        secret = shown_secret(page)
        refused = client.post("/login/enrol?next=/admin/invoice/", data={"code": "000000"})
        assert refused.status_code == 400
        assert "That code is not right" in refused.get_data(as_text=True)
        assert_to(client.get("/admin/"), "/login")
        done = client.post("/login/enrol?next=/admin/invoice/",
                           data={"code": code_at(secret, MOMENT)})
        assert done.status_code == 200
        assert done.headers["Cache-Control"] == "no-store"
        html = done.get_data(as_text=True)
        codes = shown_codes(html)
        assert len(codes) == 10
        assert 'href="/admin/invoice/"' in html
        assert client.get("/admin/invoice/").status_code == 200
    with appctx():
        user = db.session.get(StaffUser, user_id)
        assert twofactor.is_enrolled(user) and user.totp_secret == secret
        assert user.last_login_at == MOMENT
        row = db.session.scalar(sa.select(StaffSession))
        assert row.second_factor_done is True
        assert _actions() == ["staff.sign_in_password", "staff.two_factor_enrol",
                              "staff.sign_in"]
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sign_in"))
        assert event.details["method"] == "enrolment"


def test_a_role_that_need_not_signs_in_with_the_password_alone(app, staff, required):
    required("admin,finance")
    staff("support")
    client = app.test_client()
    assert_to(login(client, "support@staff.test"), "/admin/")
    assert client.get("/admin/").status_code == 200


def test_sign_in_with_a_code_from_the_app(app, appctx, staff):
    user_id = staff("support")
    secret, _ = enrolled(appctx, "support@staff.test")
    client = app.test_client()
    with time_machine.travel(MOMENT, tick=False):
        response = client.post("/login?next=/admin/order/",
                               data={"email": "support@staff.test", "password": PASSWORD})
        assert_to(response, "/login/code")
        assert_to(client.get("/admin/"), "/login")
        page = client.get("/login/code").get_data(as_text=True)
        assert "support@staff.test" in page
        wrong = client.post("/login/code?next=/admin/order/", data={"code": "123456"})
        assert wrong.status_code == 401
        assert "That code is not right" in wrong.get_data(as_text=True)
        assert_to(client.get("/admin/"), "/login")
        right = client.post("/login/code?next=/admin/order/",
                            data={"code": code_at(secret, MOMENT)})
        assert_to(right, "/admin/order/")
        assert client.get("/admin/").status_code == 200
    with appctx():
        actions = [a for a in _actions() if a.startswith("staff.sign_in")]
        assert actions == ["staff.sign_in_password", "staff.sign_in_failed", "staff.sign_in"]
        failed = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sign_in_failed"))
        assert failed.details["reason"] == "wrong code"
        assert failed.target_id == str(user_id)


def test_the_cookie_from_before_the_code_does_not_become_signed_in(app, staff, appctx):
    """The key changes when the code is given, so a copy taken after the password step
    stays half signed in."""
    staff("support")
    secret, _ = enrolled(appctx, "support@staff.test")
    client = app.test_client()
    with time_machine.travel(MOMENT, tick=False):
        login(client, "support@staff.test")
        half = client.get_cookie("session").value
        assert_to(client.post("/login/code", data={"code": code_at(secret, MOMENT)}), "/admin/")
        copy = app.test_client()
        copy.set_cookie("session", half)
        assert_to(copy.get("/admin/"), "/login")
        assert client.get("/admin/").status_code == 200


def test_a_code_cannot_be_replayed_in_another_sign_in(app, appctx, staff):
    staff("support")
    secret, _ = enrolled(appctx, "support@staff.test")
    first, second = app.test_client(), app.test_client()
    with time_machine.travel(MOMENT, tick=False):
        code = code_at(secret, MOMENT)
        login(first, "support@staff.test")
        assert_to(first.post("/login/code", data={"code": code}), "/admin/")
        login(second, "support@staff.test")
        replay = second.post("/login/code", data={"code": code})
        assert replay.status_code == 401
        assert "That code was used already" in replay.get_data(as_text=True)
        assert_to(second.get("/admin/"), "/login")
    with time_machine.travel(MOMENT + STEP, tick=False):
        assert_to(second.post("/login/code", data={"code": code_at(secret, MOMENT + STEP)}),
                  "/admin/")
    with appctx():
        failed = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sign_in_failed"))
        assert failed.details["reason"] == "replayed code"


def test_sign_in_with_a_recovery_code_once(app, appctx, staff):
    staff("support")
    _, codes = enrolled(appctx, "support@staff.test")
    client = app.test_client()
    login(client, "support@staff.test")
    response = client.post("/login/code", data={"code": codes[0]}, follow_redirects=True)
    assert response.status_code == 200
    assert "You signed in with a recovery code" in response.get_data(as_text=True)
    assert "9 left" in response.get_data(as_text=True)
    client.post("/logout")
    again = app.test_client()
    login(again, "support@staff.test")
    refused = again.post("/login/code", data={"code": codes[0]})
    assert refused.status_code == 401
    assert_to(again.get("/admin/"), "/login")
    with appctx():
        assert _actions().count("staff.recovery_code_used") == 1
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sign_in")).all()[-1]
        assert event.details["method"] == "recovery code"


def test_a_half_signed_in_browser_reaches_no_console_page(app, appctx, staff):
    staff("admin")
    enrolled(appctx, "admin@staff.test")
    client = app.test_client()
    login(client, "admin@staff.test")
    for rule in _admin_rules(app, "GET"):
        url = _url_for_rule(rule)
        response = client.get(url)
        assert response.status_code == 302, url
        assert urlsplit(response.headers["Location"]).path == "/login", url
    for rule in _admin_rules(app, "POST"):
        url = _url_for_rule(rule)
        response = client.post(url, data={"action": "deactivate", "rowid": "1"})
        assert response.status_code == 302, url


def test_cancel_ends_the_half_done_sign_in(app, appctx, staff):
    staff("support")
    enrolled(appctx, "support@staff.test")
    client = app.test_client()
    login(client, "support@staff.test")
    assert_to(client.post("/logout"), "/login")
    assert client.get("/login").status_code == 200  # the password form again
    with appctx():
        row = db.session.scalar(sa.select(StaffSession))
        assert row.end_reason == "sign-out"


def test_the_step_pages_send_everyone_else_on(app, client_as):
    anonymous = app.test_client()
    assert_to(anonymous.get("/login/code"), "/login")
    assert_to(anonymous.get("/login/enrol"), "/login")
    assert_to(anonymous.post("/login/enrol/restart"), "/login")
    signed_in = client_as("support")
    assert_to(signed_in.get("/login/code"), "/admin/")
    assert_to(signed_in.post("/login/enrol", data={"code": "123456"}), "/admin/")


def test_a_role_newly_required_enrols_at_its_next_request(app, client_as, required):
    client = client_as("finance")
    assert client.get("/admin/").status_code == 200
    required("finance")
    assert_to(client.get("/admin/"), "/login")
    assert_to(client.get("/login"), "/login/enrol")
    assert "Set up two-factor sign-in" in client.get("/login/enrol").get_data(as_text=True)


# --------------------------------------------------------------------------- throttling


@pytest.fixture
def throttled_app(second_app, monkeypatch):
    # The limiter is shared by every app in the process; put its switch back afterwards.
    monkeypatch.setattr(limiter, "enabled", limiter.enabled)
    return second_app(RATELIMIT_ENABLED=True, TWO_FACTOR_RATE_LIMIT="3 per minute",
                      LOGIN_RATE_LIMIT="100 per minute")


def test_wrong_codes_are_throttled_per_account(throttled_app, appctx, staff):
    staff("support")
    secret, _ = enrolled(appctx, "support@staff.test")
    first, second = throttled_app.test_client(), throttled_app.test_client()
    with time_machine.travel(MOMENT, tick=False):
        login(first, "support@staff.test")
        statuses = [first.post("/login/code", data={"code": "000000"}).status_code
                    for _ in range(3)]
        assert statuses == [401, 401, 401]
        refused = first.post("/login/code", data={"code": code_at(secret, MOMENT)})
        assert refused.status_code == 429
        # another browser of the same account waits too
        login(second, "support@staff.test")
        assert second.post("/login/code", data={"code": code_at(secret, MOMENT)}).status_code \
            == 429
        assert first.get("/login/code").status_code == 200  # reading the page is not limited
    with time_machine.travel(MOMENT + timedelta(minutes=1, seconds=1), tick=False):
        now = MOMENT + timedelta(minutes=1, seconds=1)
        assert_to(second.post("/login/code", data={"code": code_at(secret, now)}), "/admin/")


def test_right_codes_do_not_count_against_the_limit(throttled_app, appctx, staff):
    staff("support")
    secret, _ = enrolled(appctx, "support@staff.test")
    for index in range(5):
        moment = MOMENT + index * STEP
        with time_machine.travel(moment, tick=False):
            client = throttled_app.test_client()
            login(client, "support@staff.test")
            assert_to(client.post("/login/code", data={"code": code_at(secret, moment)}),
                      "/admin/")


# --------------------------------------------------------------------------- admin reset


def test_an_admin_resets_a_colleagues_two_factor_sign_in(app, appctx, staff, client_as,
                                                         required):
    required("finance")
    user_id = staff("finance")
    secret, _ = enrolled(appctx, "finance@staff.test")
    colleague = app.test_client()
    with time_machine.travel(MOMENT, tick=False):
        login(colleague, "finance@staff.test")
        colleague.post("/login/code", data={"code": code_at(secret, MOMENT)})
    assert colleague.get("/admin/").status_code == 200
    admin = client_as("admin")
    page = admin.get(f"/admin/sessions/staff/{user_id}").get_data(as_text=True)
    assert 'data-testid="reset-two-factor"' in page
    response = admin.post(f"/admin/sessions/staff/{user_id}/reset-two-factor",
                          follow_redirects=True)
    assert "Two-factor sign-in of finance@staff.test is reset and 1 session(s)" in \
        response.get_data(as_text=True)
    assert_to(colleague.get("/admin/"), "/login")
    assert "two-factor sign-in was reset" in colleague.get("/login").get_data(as_text=True)
    with appctx():
        user = db.session.get(StaffUser, user_id)
        assert user.totp_secret is None and user.totp_enrolled_at is None
        assert db.session.scalar(sa.select(sa.func.count(RecoveryCode.id))) == 0
        reset = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.two_factor_reset"))
        assert (reset.actor_label, reset.target_id) == ("admin@staff.test", str(user_id))
        ended = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.sessions_end"))
        assert ended.details["reason"] == "2fa-reset" and ended.seq == reset.seq + 1
    # the next sign-in sets it up again
    assert_to(login(app.test_client(), "finance@staff.test"), "/login/enrol")


def test_nobody_resets_their_own_two_factor_sign_in(app, appctx, staff):
    user_id = staff("admin")
    enrolled(appctx, "admin@staff.test")
    client = app.test_client()
    login(client, "admin@staff.test")
    with appctx():
        secret = db.session.get(StaffUser, user_id).totp_secret
    with time_machine.travel(MOMENT, tick=False):
        client.post("/login/code", data={"code": code_at(secret, MOMENT)})
    page = client.get(f"/admin/sessions/staff/{user_id}").get_data(as_text=True)
    assert 'data-testid="reset-two-factor"' not in page
    response = client.post(f"/admin/sessions/staff/{user_id}/reset-two-factor",
                           follow_redirects=True)
    assert "You cannot reset your own two-factor sign-in" in response.get_data(as_text=True)
    with appctx():
        assert twofactor.is_enrolled(db.session.get(StaffUser, user_id))
        assert "staff.two_factor_reset" not in _actions()


def test_resetting_someone_without_two_factor_is_refused(app, staff, client_as):
    user_id = staff("support")
    admin = client_as("admin")
    response = admin.post(f"/admin/sessions/staff/{user_id}/reset-two-factor",
                          follow_redirects=True)
    assert "Two-factor sign-in is not on for support@staff.test" in \
        response.get_data(as_text=True)


# --------------------------------------------------------------------------- own page


def test_support_turns_two_factor_sign_in_on_and_off_on_their_own_page(app, appctx, client_as):
    client = client_as("support")
    other_browser = app.test_client()
    login(other_browser, "support@staff.test")
    page = client.get("/admin/two_factor/").get_data(as_text=True)
    assert "Two-factor sign-in is <strong>off</strong>" in page
    assert_to(client.post("/admin/two_factor/start"), "/admin/two_factor/")
    page = client.get("/admin/two_factor/").get_data(as_text=True)
    secret = shown_secret(page)
    with time_machine.travel(MOMENT, tick=False):
        bad = client.post("/admin/two_factor/confirm", data={"code": "999999"})
        assert bad.status_code == 400
        done = client.post("/admin/two_factor/confirm", data={"code": code_at(secret, MOMENT)})
        assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
        assert len(shown_codes(done.get_data(as_text=True))) == 10
    # the other browser never gave a code: it is signed out; this one stays
    assert_to(other_browser.get("/admin/"), "/login")
    assert client.get("/admin/").status_code == 200
    page = client.get("/admin/two_factor/").get_data(as_text=True)
    assert "Two-factor sign-in is <strong>on</strong>" in page
    assert "10 of 10 recovery codes left" in page
    with time_machine.travel(MOMENT + STEP, tick=False):
        renewed = client.post("/admin/two_factor/recovery-codes",
                              data={"code": code_at(secret, MOMENT + STEP)})
        new_codes = shown_codes(renewed.get_data(as_text=True))
        assert len(new_codes) == 10
    with time_machine.travel(MOMENT + 2 * STEP, tick=False):
        replayed = client.post("/admin/two_factor/turn-off",
                               data={"code": code_at(secret, MOMENT + STEP)})
        assert replayed.status_code == 400
        assert "That code was used already" in replayed.get_data(as_text=True)
        off = client.post("/admin/two_factor/turn-off",
                          data={"code": code_at(secret, MOMENT + 2 * STEP)})
        assert_to(off, "/admin/two_factor/")
    with appctx():
        user = _user("support@staff.test")
        assert not twofactor.is_enrolled(user) and user.totp_secret is None
        assert [a for a in _actions() if "two_factor" in a or "recovery" in a] == [
            "staff.two_factor_enrol", "staff.recovery_codes_renew", "staff.two_factor_disable"]
    assert_to(login(app.test_client(), "support@staff.test"), "/admin/")


def test_a_required_role_cannot_turn_it_off(app, appctx, staff, required):
    required("admin")
    staff("admin")
    secret, _ = enrolled(appctx, "admin@staff.test")
    client = app.test_client()
    with time_machine.travel(MOMENT, tick=False):
        login(client, "admin@staff.test")
        client.post("/login/code", data={"code": code_at(secret, MOMENT)})
        page = client.get("/admin/two_factor/").get_data(as_text=True)
        assert 'data-testid="turn-off-form"' not in page
    with time_machine.travel(MOMENT + STEP, tick=False):
        response = client.post("/admin/two_factor/turn-off",
                               data={"code": code_at(secret, MOMENT + STEP)})
        assert response.status_code == 400
        assert "must use two-factor sign-in" in response.get_data(as_text=True)
    with appctx():
        assert twofactor.is_enrolled(_user("admin@staff.test"))


def test_a_qr_code_started_in_another_browser_is_not_shown(app, appctx, client_as):
    client = client_as("support")
    other = app.test_client()
    login(other, "support@staff.test")
    client.post("/admin/two_factor/start")
    other.post("/admin/two_factor/start")
    page = client.get("/admin/two_factor/").get_data(as_text=True)
    assert 'data-testid="totp-secret"' not in page
    assert "A newer set-up was started in another window or browser" in page
    with appctx():
        secret = _user("support@staff.test").totp_secret
    response = client.post("/admin/two_factor/confirm", data={"code": code_at(secret, utcnow())})
    assert response.status_code == 400
    assert "replaced by a newer one" in response.get_data(as_text=True)


def test_the_command_line_resets_a_lone_admin(app, appctx, staff):
    """The only admin lost their phone and codes: nobody can reset it on the page."""
    user_id = staff("admin")
    enrolled(appctx, "admin@staff.test")
    result = app.test_cli_runner().invoke(args=["reset-two-factor", "Admin@Staff.test"])
    assert result.exit_code == 0, result.output
    assert "Two-factor sign-in of admin@staff.test is reset" in result.output
    with appctx():
        assert not twofactor.is_enrolled(db.session.get(StaffUser, user_id))
        event = db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.action == "staff.two_factor_reset"))
        assert event.actor_label == "system"
    missing = app.test_cli_runner().invoke(args=["reset-two-factor", "nobody@staff.test"])
    assert missing.exit_code == 1 and "No staff account" in missing.output
    again = app.test_cli_runner().invoke(args=["reset-two-factor", "admin@staff.test"])
    assert again.exit_code == 1 and "is not on" in again.output
