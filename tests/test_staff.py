"""Staff accounts: created, deactivated and changed by admins, always audited; the
password policy; the sessions a password, deactivation or role change ends."""

from __future__ import annotations

import re
import secrets

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from backoffice import staff as staff_accounts
from backoffice.errors import Conflict, InvalidInput
from backoffice.extensions import db
from backoffice.models import AuditEvent, StaffRole, StaffSession, StaffUser
from tests.conftest import PASSWORD, change_events, login, make_staff

NEW_PASSWORD = "a sufficiently long secret"


def _user(email: str) -> StaffUser | None:
    return db.session.scalar(sa.select(StaffUser).where(StaffUser.email == email))


def _events(action: str | None = None) -> list[AuditEvent]:
    query = change_events()
    if action:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query))


def _count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def open_session(user: StaffUser) -> StaffSession:
    """A signed-in browser session of ``user``, as sign-in records it."""
    row = StaffSession(key_hash=secrets.token_hex(32), user_id=user.id, ip="192.0.2.1",
                       user_agent="test browser", second_factor_done=True)
    db.session.add(row)
    db.session.flush()
    return row


def open_sessions(user: StaffUser) -> list[StaffSession]:
    return list(db.session.scalars(sa.select(StaffSession).where(
        StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))))


def end_reasons(user: StaffUser) -> set[str]:
    return set(db.session.scalars(sa.select(StaffSession.end_reason).where(
        StaffSession.user_id == user.id, StaffSession.ended_at.is_not(None))))


def _create(client, **fields):
    data = {"email": "new.person@staff.example.com", "name": "New Person", "role": "finance",
            "password": NEW_PASSWORD, **fields}
    return client.post("/admin/staffuser/new/", data=data, follow_redirects=True)


# --------------------------------------------------------------------------- create


def test_admin_creates_staff_through_the_view(app, appctx, client_as):
    client = client_as("admin")
    response = _create(client, email="New.Person@Staff.Example.com")
    assert response.status_code == 200
    with appctx():
        user = _user("new.person@staff.example.com")
        assert user is not None
        assert user.role == StaffRole.FINANCE and user.active and user.name == "New Person"
        assert NEW_PASSWORD not in user.password_hash
        assert check_password_hash(user.password_hash, NEW_PASSWORD)
        (event,) = _events("staff.create")
        assert event.target_id == str(user.id)
        assert event.actor_label == "admin@staff.test"
        assert event.details == {"email": "new.person@staff.example.com", "role": "finance"}
    # the new account signs in with its password
    response = login(app.test_client(), "new.person@staff.example.com", NEW_PASSWORD)
    assert response.status_code == 303


def test_empty_password_generates_one_shown_once(app, appctx, client_as):
    client = client_as("admin")
    page = _create(client, password="").get_data(as_text=True)
    match = re.search(r"Password for new.person@staff.example.com: <code>([^<]+)</code>", page)
    assert match, page[:3000]
    response = login(app.test_client(), "new.person@staff.example.com", match.group(1))
    assert response.status_code == 303
    # not shown again
    assert match.group(1) not in client.get("/admin/staffuser/").get_data(as_text=True)


@pytest.mark.parametrize("password, message", [
    ("short", "at least 12 characters"),
    ("password1234", "10,000 most common passwords"),
    ("aaaaaaaaaaaa", "one character repeated"),
    ("New.Person2024", "cannot be your email address"),
])
def test_weak_password_is_refused_and_nothing_written(appctx, client_as, password, message):
    client = client_as("admin")
    response = _create(client, password=password)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with appctx():
        assert _user("new.person@staff.example.com") is None
        assert _count(StaffUser) == 1
        assert _events() == []


def test_password_of_exactly_twelve_characters_is_accepted(appctx, client_as):
    _create(client_as("admin"), password="x7#Kq9!mZ2vL")
    with appctx():
        assert _user("new.person@staff.example.com") is not None


# --------------------------------------------------------------------------- policy

EMAIL = "new.person@staff.example.com"


@pytest.mark.parametrize("password, message", [
    # length
    ("", "at least 12 characters; this one has 0"),
    ("short", "at least 12 characters; this one has 5"),
    ("Xq7!mZ2vL#k", "at least 12 characters; this one has 11"),
    ("Xq7!mZ2vL#k" * 19, "at most 200 characters"),
    # one character repeated
    ("aaaaaaaaaaaa", "one character repeated"),
    (" " * 12, "one character repeated"),
    ("111111111111", "one character repeated"),
    ("é" * 12, "one character repeated"),
    ("x" * 200, "one character repeated"),
    # the 10,000 most common, in any case, with digits or symbols around
    ("password1234", "10,000 most common passwords"),
    ("PassWord1234", "10,000 most common passwords"),
    ("PASSWORD2024!", "10,000 most common passwords"),
    ("!!iloveyou2024", "10,000 most common passwords"),
    ("1234baseball", "10,000 most common passwords"),
    ("   password   ", "10,000 most common passwords"),
    ("trustno12024", "10,000 most common passwords"),  # "trustno1" plus a year
    ("1q2w3e4r5t6y", "10,000 most common passwords"),  # in the list as it is
    ("qwerty123456", "10,000 most common passwords"),
    ("P@ssw0rd1234", "10,000 most common passwords"),
    # the email, or the part before the @
    (EMAIL, "cannot be your email address"),
    (EMAIL.upper(), "cannot be your email address"),
    ("New.Person2024", "cannot be your email address"),
    ("newperson1234", "cannot be your email address"),
    ("2024new.person!", "cannot be your email address"),
    # patterns zxcvbn estimates under a million guesses
    ("123456789012", "easy to guess"),
    ("qwertyuiopas", "easy to guess"),
    ("abcdefghijkl", "easy to guess"),
    ("abcabcabcabc", "easy to guess"),
    ("passwordpassword", "easy to guess"),
])
def test_weak_passwords_are_refused_with_a_reason(password, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        staff_accounts.check_password_strength(password, email=EMAIL)


@pytest.mark.parametrize("password", [
    PASSWORD,
    NEW_PASSWORD,
    "x7#Kq9!mZ2vL",  # twelve random characters
    "purple-tractor-lemon",
    "vanilla bicycle",
    "Tr0ub4dor&3xx",
    "person.new.2024",  # the email's words in another order, with more around them
    "correcthorse12",
    "Xq7!mZ2vL#k" * 18,  # 198 characters
])
def test_good_passwords_are_accepted(password):
    staff_accounts.check_password_strength(password, email=EMAIL)


def test_the_common_list_is_zxcvbns_top_ten_thousand():
    common = staff_accounts.common_passwords()
    assert len(common) == 10_000
    assert {"password", "123456", "iloveyou", "trustno1"} <= common
    # the 10,001st most common is not refused for being common
    assert FREQUENCY_LISTS["passwords"][10_000] not in common


def test_generated_passwords_pass_the_policy():
    for _ in range(200):
        staff_accounts.check_password_strength(staff_accounts.generate_password())


def test_duplicate_email_is_refused(appctx, client_as):
    client = client_as("admin")
    _create(client)
    response = _create(client, email="NEW.PERSON@staff.example.com", name="Someone Else")
    assert "already exists" in response.get_data(as_text=True)
    with appctx():
        assert _count(StaffUser) == 2
        assert len(_events("staff.create")) == 1
        assert _user("new.person@staff.example.com").name == "New Person"


def test_invalid_email_is_refused(appctx, client_as):
    response = _create(client_as("admin"), email="not-an-email")
    assert response.status_code == 200
    with appctx():
        assert _count(StaffUser) == 1
        assert _events() == []


# --------------------------------------------------------------------------- actions


def _act(client, action: str, *ids: int):
    return client.post("/admin/staffuser/action/",
                       data={"action": action, "rowid": [str(i) for i in ids]},
                       follow_redirects=True)


def test_deactivate_and_activate_are_audited(app, appctx, client_as, staff):
    target = staff("support")
    client = client_as("admin")
    page = _act(client, "deactivate", target).get_data(as_text=True)
    assert "1 account(s) deactivated." in page
    with appctx():
        assert db.session.get(StaffUser, target).active is False
        (event,) = _events("staff.deactivate")
        assert event.target_id == str(target) and event.actor_label == "admin@staff.test"
    assert login(app.test_client(), "support@staff.test").status_code == 401

    _act(client, "activate", target)
    with appctx():
        assert db.session.get(StaffUser, target).active is True
        assert [e.action for e in _events()] == ["staff.deactivate", "staff.activate"]
    assert login(app.test_client(), "support@staff.test").status_code == 303


def test_activating_an_active_account_is_refused(appctx, client_as, staff):
    target = staff("support")
    page = _act(client_as("admin"), "activate", target).get_data(as_text=True)
    assert "already active" in page
    with appctx():
        assert _events() == []


def test_the_bulk_password_reset_is_gone(appctx, client_as, staff):
    """Passwords are reset one account at a time, through a link (test_password_reset)."""
    target = staff("finance")
    client = client_as("admin")
    with appctx():
        hash_before = db.session.get(StaffUser, target).password_hash
    page = _act(client, "reset_password", target).get_data(as_text=True)
    assert "Choose an action." in page
    assert "Reset password" not in client.get("/admin/staffuser/").get_data(as_text=True)
    with appctx():
        assert db.session.get(StaffUser, target).password_hash == hash_before
        assert _events() == []


def test_admin_cannot_deactivate_themselves(app, appctx, client_as):
    client = client_as("admin")
    with appctx():
        me = _user("admin@staff.test").id
    page = _act(client, "deactivate", me).get_data(as_text=True)
    assert "cannot deactivate your own account" in page
    with appctx():
        assert db.session.get(StaffUser, me).active is True
        assert _events() == []
    assert client.get("/admin/").status_code == 200


def test_a_refused_item_rolls_back_the_whole_action(appctx, client_as, staff):
    """Deactivating [someone, myself] fails on me and leaves the other account alone."""
    other = staff("support")
    client = client_as("admin")
    with appctx():
        me = _user("admin@staff.test").id
    _act(client, "deactivate", other, me)
    with appctx():
        assert db.session.get(StaffUser, other).active is True
        assert _events() == []


def test_admin_changes_a_role_through_the_edit_form(appctx, client_as, staff):
    target = staff("support")
    client = client_as("admin")
    client.post(f"/admin/staffuser/edit/?id={target}",
                data={"name": "Promoted Person", "role": "finance"})
    with appctx():
        user = db.session.get(StaffUser, target)
        assert user.role == StaffRole.FINANCE and user.name == "Promoted Person"
        (event,) = _events("staff.update")
        assert event.details["role"] == {"from": "support", "to": "finance"}


def test_admin_cannot_demote_themselves(appctx, client_as):
    client = client_as("admin")
    with appctx():
        me = _user("admin@staff.test").id
    page = client.post(f"/admin/staffuser/edit/?id={me}",
                       data={"name": "Me", "role": "support"},
                       follow_redirects=True).get_data(as_text=True)
    assert "cannot change your own role" in page
    with appctx():
        assert db.session.get(StaffUser, me).role == StaffRole.ADMIN
        assert _events() == []


def test_admin_cannot_reset_their_own_password(appctx, client_as):
    client = client_as("admin")
    with appctx():
        me = _user("admin@staff.test")
        me_id, hash_before = me.id, me.password_hash
    for method in (client.get, client.post):
        page = method(f"/admin/staffuser/reset-link/{me_id}/", follow_redirects=True)
        assert page.status_code == 200
        assert "You cannot reset your own password" in page.get_data(as_text=True)
    with appctx():
        assert db.session.get(StaffUser, me_id).password_hash == hash_before
        assert _events() == []
    assert client.get("/admin/").status_code == 200


def test_nobody_resets_deactivates_or_demotes_themselves_in_the_domain(ctx):
    me = make_staff("admin")
    session = open_session(me)
    with pytest.raises(Conflict, match="cannot reset your own password"):
        staff_accounts.make_reset_link(me, actor=me)
    with pytest.raises(Conflict, match="cannot deactivate your own account"):
        staff_accounts.set_staff_active(me, False, actor=me)
    with pytest.raises(Conflict, match="cannot change your own role"):
        staff_accounts.update_staff(me, name=me.name, role="support", actor=me)
    assert me.active and me.role == StaffRole.ADMIN
    assert session.ended_at is None
    assert _events() == []


# --------------------------------------------------------------------------- sessions end
#
# These check the StaffSession rows; that the browser of an ended session is refused on
# its next request is the per-request session check's to test.


def test_a_password_set_by_someone_else_ends_every_session(ctx):
    admin, user = make_staff("admin"), make_staff("finance")
    first, second = open_session(user), open_session(user)
    admins_own = open_session(admin)
    staff_accounts.set_staff_password(user, NEW_PASSWORD, actor=admin)
    assert first.ended_at is not None and second.ended_at is not None
    assert end_reasons(user) == {"password"}
    assert admins_own.ended_at is None
    assert check_password_hash(user.password_hash, NEW_PASSWORD)
    assert [e.action for e in _events()] == ["staff.password_reset", "staff.sessions_end"]
    assert _events("staff.sessions_end")[0].details == {
        "reason": "password", "sessions": [first.id, second.id]}


def test_a_weak_password_is_refused_and_ends_nothing(ctx):
    admin, user = make_staff("admin"), make_staff("finance")
    session = open_session(user)
    with pytest.raises(InvalidInput, match="most common"):
        staff_accounts.set_staff_password(user, "password1234", actor=admin)
    assert session.ended_at is None
    assert _events() == []


def test_deactivation_ends_every_session_and_reactivation_none(ctx):
    admin, user = make_staff("admin"), make_staff("support")
    first, second = open_session(user), open_session(user)
    staff_accounts.set_staff_active(user, False, actor=admin)
    assert open_sessions(user) == []
    assert first.end_reason == second.end_reason == "deactivated"
    assert [e.action for e in _events()] == ["staff.deactivate", "staff.sessions_end"]
    staff_accounts.set_staff_active(user, True, actor=admin)
    later = open_session(user)
    assert later.ended_at is None
    assert _events()[-1].action == "staff.activate"


def test_a_role_change_ends_every_session_and_a_rename_none(ctx):
    admin, user = make_staff("admin"), make_staff("support")
    session = open_session(user)
    staff_accounts.update_staff(user, name="Renamed", role="support", actor=admin)
    assert session.ended_at is None
    staff_accounts.update_staff(user, name="Renamed", role="finance", actor=admin)
    assert session.ended_at is not None and session.end_reason == "role"
    assert [e.action for e in _events()] == ["staff.update", "staff.update",
                                             "staff.sessions_end"]


def test_changes_through_the_pages_end_sessions(appctx, client_as, staff):
    """The list action and the edit form reach the same domain verbs."""
    client = client_as("admin")
    deactivated, promoted = staff("support"), staff("finance")
    with appctx():
        for user_id in (deactivated, promoted):
            open_session(db.session.get(StaffUser, user_id))
        db.session.commit()
    _act(client, "deactivate", deactivated)
    client.post(f"/admin/staffuser/edit/?id={promoted}", data={"name": "P", "role": "admin"})
    with appctx():
        assert end_reasons(db.session.get(StaffUser, deactivated)) == {"deactivated"}
        assert end_reasons(db.session.get(StaffUser, promoted)) == {"role"}


# --------------------------------------------------------------------------- CLI


def test_create_staff_command_generates_a_password_once(app, appctx):
    result = app.test_cli_runner().invoke(
        args=["create-staff", "Ops@Staff.Example.com", "--role", "admin", "--generate"])
    assert result.exit_code == 0, result.output
    assert "Created admin ops@staff.example.com." in result.output
    match = re.search(r"Password \(shown once\): (\S+)", result.output)
    assert match
    assert result.output.count(match.group(1)) == 1
    with appctx():
        user = _user("ops@staff.example.com")
        assert user.role == StaffRole.ADMIN
        assert check_password_hash(user.password_hash, match.group(1))
        (event,) = _events("staff.create")
        assert event.actor_label == "system"
    assert login(app.test_client(), "ops@staff.example.com", match.group(1)).status_code == 303


@pytest.mark.parametrize("password, message", [
    ("password1234", "10,000 most common passwords"),
    ("Ops@Staff.Example.com", "cannot be your email address"),
    (" " * 12, "one character repeated"),
])
def test_create_staff_applies_the_password_policy(ctx, password, message):
    """What ``flask create-staff`` prompts for goes through the same check."""
    with pytest.raises(InvalidInput, match=message):
        staff_accounts.create_staff(email="ops@staff.example.com", name="", role="admin",
                                    password=password, actor=None)
    assert _count(StaffUser) == 0


def test_create_staff_command_refuses_a_duplicate(app, appctx, staff):
    staff("support", email="ops@staff.example.com")
    result = app.test_cli_runner().invoke(
        args=["create-staff", "ops@staff.example.com", "--role", "admin", "--generate"])
    assert result.exit_code == 1
    assert "A staff account for ops@staff.example.com already exists." in result.output
    assert "Password" not in result.output
    with appctx():
        assert _count(StaffUser) == 1
        assert _user("ops@staff.example.com").role == StaffRole.SUPPORT
        assert _events() == []


def test_create_staff_command_refuses_an_invalid_email(app, appctx):
    result = app.test_cli_runner().invoke(args=["create-staff", "nobody", "--generate"])
    assert result.exit_code == 1
    assert "not a valid email address" in result.output
    with appctx():
        assert _count(StaffUser) == 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fields, message", [
    ({"name": "a\x00b"}, "Remove the control characters"),
    ({"email": "a\x00b@staff.example.com"}, "Remove the control characters"),
    ({"password": "a long password\x00"}, "Remove the control characters"),
    ({"name": "x" * 201}, "Field cannot be longer than 200 characters."),
    ({"email": "x" * 250 + "@staff.example.com"}, "Field cannot be longer than 254"),
    ({"password": "x" * 201}, "Field cannot be longer than 200 characters."),
    ({"role": "root"}, "Choose one of the roles."),
    ({"role": ""}, "Choose one of the roles."),
    ({"name": ""}, "This field is required."),
])
def test_bad_staff_input_gets_a_message_and_writes_nothing(appctx, client_as, fields,
                                                           message):
    response = _create(client_as("admin"), **fields)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with appctx():
        assert _count(StaffUser) == 1
        assert _events() == []


@pytest.mark.parametrize("fields, message", [
    ({"name": "a\x00b"}, "Remove the control characters"),
    ({"name": "x" * 201}, "Field cannot be longer than 200 characters."),
    ({"role": "superuser"}, "Choose one of the roles."),
])
def test_bad_staff_edit_gets_a_message_and_changes_nothing(appctx, client_as, staff, fields,
                                                           message):
    target = staff("support")
    response = client_as("admin").post(
        f"/admin/staffuser/edit/?id={target}",
        data={"name": "Someone", "role": "finance", **fields}, follow_redirects=True)
    assert message in response.get_data(as_text=True)
    with appctx():
        user = db.session.get(StaffUser, target)
        assert (user.name, user.role) == ("Test support", StaffRole.SUPPORT)
        assert _events() == []


@pytest.mark.parametrize("rowid", ["²", "①", "1" * 5000, "905970020212414042476352", "-1",
                                   "0", "1 OR 1=1", "2\x00"])
@pytest.mark.parametrize("action", ["deactivate", "activate"])
def test_staff_actions_refuse_bad_row_ids(appctx, client_as, staff, rowid, action):
    target = staff("support")
    client = client_as("admin")
    with appctx():
        hash_before = db.session.get(StaffUser, target).password_hash
    response = client.post("/admin/staffuser/action/",
                           data={"action": action, "rowid": [str(target), rowid]},
                           follow_redirects=True)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    # the base views refuse ids no record can have; the form refuses the rest
    assert "is not the id of a record" in text or "Failed to perform action" in text
    with appctx():
        user = db.session.get(StaffUser, target)
        assert user.active is True and user.password_hash == hash_before
        assert _events() == []


def test_staff_actions_refuse_an_unknown_action_and_too_many_rows(appctx, client_as, staff):
    target = staff("support")
    client = client_as("admin")
    unknown = client.post("/admin/staffuser/action/",
                          data={"action": "delete_everyone", "rowid": str(target)},
                          follow_redirects=True)
    assert "Choose an action." in unknown.get_data(as_text=True)
    too_many = client.post("/admin/staffuser/action/",
                           data={"action": "deactivate",
                                 "rowid": [str(i) for i in range(1, 102)]},
                           follow_redirects=True)
    assert "Choose at most 100 rows at once." in too_many.get_data(as_text=True)
    with appctx():
        assert db.session.get(StaffUser, target).active is True
        assert _events() == []
