"""The role/permission table, and the server refusing what a role may not do."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from backoffice.extensions import db
from backoffice.models import CertificateType, StaffRole, StaffUser
from backoffice.permissions import ROLE_PERMISSIONS, Permission, has_permission
from tests.conftest import count_change_events

# DESIGN.md, "Staff roles and permissions", written out again by hand: a change to
# ROLE_PERMISSIONS that the design does not make fails here.
S, F, A = "support", "finance", "admin"
EXPECTED = {
    "console:page:read": {S, F, A},               # see every page (read)
    "accounts:corporate:write": {S, A},           # corporate requests, upgrade, link profiles
    "accounts:profile:unlink": {A},               # unlink a profile
    "accounts:legacy_credit:write": {S, A},       # move legacy credit
    "billing:credit:adjust": {F, A},              # credit adjustments
    "partners:customer:write": {S, A},            # customers, subscriptions, inventory
    "billing:refund:write": {F, A},               # refunds
    "billing:invoice:write": {F, A},              # invoices
    "billing:report:export": {F, A},              # reports, exports
    "partners:reseller:write": {A},               # resellers: create/edit
    "partners:reseller:status": {A},              # resellers: disable/enable
    "catalog:product:write": {A},                 # the catalog
    "system:staff:write": {A},                    # staff accounts
    "system:job:run": {A},                        # jobs (run now)
    "system:data:read": {A},                      # the Data menu's raw tables
}


class _User:
    """A stand-in signed-in user for the table checks."""

    is_authenticated = True

    def __init__(self, role: StaffRole, active: bool = True):
        self.role, self.is_active = role, active


def test_every_permission_has_a_row_in_the_design_table():
    assert {p.value for p in Permission} == set(EXPECTED)
    assert set(ROLE_PERMISSIONS) == set(StaffRole)


@pytest.mark.parametrize("role", list(StaffRole), ids=str)
@pytest.mark.parametrize("permission", list(Permission), ids=str)
def test_role_permission_table(role, permission):
    expected = role.value in EXPECTED[permission.value]
    assert has_permission(_User(role), permission) is expected


@pytest.mark.parametrize("role", list(StaffRole), ids=str)
def test_deactivated_or_anonymous_users_hold_nothing(role):
    assert not any(has_permission(_User(role, active=False), p) for p in Permission)

    class Anonymous:
        is_authenticated = False
        is_active = False

    assert not any(has_permission(Anonymous(), p) for p in Permission)
    assert not has_permission(None, Permission.CONSOLE_READ)


# --------------------------------------------------------------------------- over HTTP

ADMIN_ONLY_PAGES = [
    "/admin/staffuser/new/",
    "/admin/certificatetype/new/",
    "/admin/subscriptionproduct/new/",
]


@pytest.mark.parametrize("role", ["support", "finance"])
@pytest.mark.parametrize("url", ADMIN_ONLY_PAGES)
def test_admin_only_pages_are_forbidden_to_other_roles(client_as, role, url):
    client = client_as(role)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", ADMIN_ONLY_PAGES)
def test_admin_opens_admin_only_pages(client_as, url):
    assert client_as("admin").get(url).status_code == 200


@pytest.mark.parametrize("role", ["support", "finance"])
def test_other_roles_cannot_post_admin_forms(app, appctx, client_as, role):
    client = client_as(role)
    response = client.post("/admin/certificatetype/new/", data={
        "code": "XX", "name": "Sneaky", "kind": "traditional", "yearly_price": "1"})
    assert response.status_code == 403
    response = client.post("/admin/staffuser/new/", data={
        "email": "new@staff.test", "name": "New", "role": "admin", "password": "x" * 20})
    assert response.status_code == 403
    with appctx():
        assert db.session.scalar(sa.select(sa.func.count(CertificateType.id))) == 0
        assert db.session.scalar(sa.select(sa.func.count(StaffUser.id))) == 1
        assert count_change_events() == 0


@pytest.mark.parametrize("role", ["support", "finance"])
@pytest.mark.parametrize("action", ["deactivate", "activate"])
def test_staff_actions_are_forbidden_to_other_roles(app, appctx, client_as, staff, role,
                                                    action):
    target = staff("admin", email="boss@staff.test")
    client = client_as(role)
    with appctx():
        hash_before = db.session.get(StaffUser, target).password_hash
    response = client.post("/admin/staffuser/action/", data={"action": action,
                                                             "rowid": str(target)})
    assert response.status_code == 403
    with appctx():
        user = db.session.get(StaffUser, target)
        assert user.active is True
        assert user.password_hash == hash_before
        assert count_change_events() == 0


@pytest.mark.parametrize("role", ["support", "finance"])
def test_other_roles_cannot_edit_staff(appctx, client_as, staff, role):
    target = staff("admin", email="boss@staff.test")
    client = client_as(role)
    url = f"/admin/staffuser/edit/?id={target}"
    assert client.get(url).status_code == 403
    assert client.post(url, data={"name": "Demoted", "role": "support"}).status_code == 403
    with appctx():
        assert db.session.get(StaffUser, target).role == StaffRole.ADMIN


@pytest.mark.parametrize("role", ["support", "finance", "admin"])
def test_every_role_reads_every_list_page(app, client_as, role):
    client = client_as(role)
    assert client.get("/admin/").status_code == 200
    views = [v for v in app.extensions["admin"][0]._views if hasattr(v, "model")]
    assert len(views) >= 20
    for view in views:
        response = client.get(f"/admin/{view.endpoint}/")
        admins_only = view.permission in (Permission.DATA_READ, Permission.STAFF_WRITE)
        expected = 403 if admins_only and role != "admin" else 200
        assert response.status_code == expected, (role, view.endpoint)


DATA_MENU = {"orderitem", "transactionline", "invoiceline", "inventory", "subscriptionterm",
             "customeradmin", "counter", "joblock"}


def test_the_raw_tables_are_in_the_admin_only_data_menu(app, client_as):
    views = app.extensions["admin"][0]._views
    assert {v.endpoint for v in views if v.category == "Data"} == DATA_MENU
    assert {v.endpoint for v in views if getattr(v, "permission", None)
            == Permission.DATA_READ} == DATA_MENU
    admin_page = client_as("admin").get("/admin/").get_data(as_text=True)
    assert "/admin/orderitem/" in admin_page and "/admin/counter/" in admin_page
    for role in ("support", "finance"):
        page = client_as(role, f"{role}2@staff.test").get("/admin/").get_data(as_text=True)
        assert not any(f"/admin/{name}/" in page for name in DATA_MENU), role
        assert ">Data<" not in page, role


@pytest.mark.parametrize("role", ["support", "finance"])
def test_the_staff_list_is_for_admins_only(client_as, role):
    client = client_as(role)
    assert client.get("/admin/staffuser/").status_code == 403
    assert "/admin/staffuser/" not in client.get("/admin/").get_data(as_text=True)


def test_create_button_is_shown_to_admin(client_as):
    page = client_as("admin").get("/admin/staffuser/").get_data(as_text=True)
    assert "/admin/staffuser/new/" in page
