"""Staff accounts: created, deactivated and reset by admins, always audited."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash

from backoffice.extensions import db
from backoffice.models import AuditEvent, StaffRole, StaffUser
from tests.conftest import PASSWORD, change_events, login

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


@pytest.mark.parametrize("password", ["short", "x" * 11])
def test_weak_password_is_refused_and_nothing_written(appctx, client_as, password):
    client = client_as("admin")
    response = _create(client, password=password)
    assert response.status_code == 200
    assert "at least 12 characters" in response.get_data(as_text=True)
    with appctx():
        assert _user("new.person@staff.example.com") is None
        assert _count(StaffUser) == 1
        assert _events() == []


def test_password_of_exactly_twelve_characters_is_accepted(appctx, client_as):
    _create(client_as("admin"), password="x" * 12)
    with appctx():
        assert _user("new.person@staff.example.com") is not None


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


def test_reset_password_shows_a_new_one_and_is_audited(app, appctx, client_as, staff):
    target = staff("finance")
    client = client_as("admin")
    page = _act(client, "reset_password", target).get_data(as_text=True)
    match = re.search(r"New password for finance@staff.test: <code>([^<]+)</code>", page)
    assert match, page[:3000]
    assert login(app.test_client(), "finance@staff.test", PASSWORD).status_code == 401
    assert login(app.test_client(), "finance@staff.test", match.group(1)).status_code == 303
    with appctx():
        (event,) = _events("staff.password_reset")
        assert event.target_id == str(target)
        assert match.group(1) not in str(event.details)


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
@pytest.mark.parametrize("action", ["deactivate", "reset_password"])
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
