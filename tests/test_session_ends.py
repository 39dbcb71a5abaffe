"""An admin's change to a colleague's account signs that colleague's browsers out at once:
the old cookie opens nothing on its next request."""

from __future__ import annotations

import pyotp
import pytest
import sqlalchemy as sa

from backoffice.clock import utcnow
from backoffice.extensions import db
from backoffice.models import StaffSession, StaffUser
from tests.conftest import PASSWORD, login


def _signed_in(app, email: str):
    client = app.test_client()
    assert login(client, email).status_code == 303
    assert client.get("/admin/").status_code == 200
    return client


CHANGES = {
    "a reset link": lambda uid: (f"/admin/staffuser/reset-link/{uid}/", {}),
    "deactivation": lambda uid: ("/admin/staffuser/action/",
                                 {"action": "deactivate", "rowid": str(uid)}),
    "a role change": lambda uid: (f"/admin/staffuser/edit/?id={uid}",
                                  {"name": "Colleague", "role": "finance"}),
    "an admin ending them": lambda uid: (f"/admin/sessions/staff/{uid}/end", {}),
    "a two-factor reset": lambda uid: (f"/admin/sessions/staff/{uid}/reset-two-factor", {}),
}
REASONS = {"a reset link": "password", "deactivation": "deactivated",
           "a role change": "role", "an admin ending them": "admin",
           "a two-factor reset": "2fa-reset"}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_colleagues_old_cookie_is_refused_after(change, app, appctx, staff):
    colleague = staff("support", "colleague@staff.test")
    staff("admin")
    theirs = _signed_in(app, "colleague@staff.test")
    if change == "a two-factor reset":  # they turned two-factor sign-in on since
        with appctx():
            user = db.session.get(StaffUser, colleague)
            user.totp_secret, user.totp_enrolled_at = pyotp.random_base32(), utcnow()
            db.session.commit()
    admin = _signed_in(app, "admin@staff.test")
    url, data = CHANGES[change](colleague)
    response = admin.post(url, data=data)
    assert response.status_code in (200, 302, 303), (change, response.status_code)

    refused = theirs.get("/admin/")
    assert refused.status_code == 302 and "/login" in refused.headers["Location"]
    assert theirs.get("/admin/customer/").status_code == 302
    with appctx():
        rows = db.session.scalars(sa.select(StaffSession).where(
            StaffSession.user_id == colleague)).all()
        assert rows and all(row.ended_at is not None for row in rows)
        assert {row.end_reason for row in rows} == {REASONS[change]}
    # the admin who made the change is still signed in
    assert admin.get("/admin/").status_code == 200


def test_changing_your_own_password_signs_out_your_other_browsers_only(app, appctx, staff):
    staff("finance")
    here = _signed_in(app, "finance@staff.test")
    elsewhere = _signed_in(app, "finance@staff.test")
    page = here.get("/admin/account/").get_data(as_text=True)
    assert "Current password" in page
    here.post("/admin/account/", data={"current": PASSWORD, "password": "violet otter canoe 42",
                                       "confirm": "violet otter canoe 42"})
    assert here.get("/admin/").status_code == 200
    refused = elsewhere.get("/admin/")
    assert refused.status_code == 302 and "/login" in refused.headers["Location"]
    with appctx():
        user = db.session.scalar(sa.select(StaffUser).where(
            StaffUser.email == "finance@staff.test"))
        open_rows = db.session.scalars(sa.select(StaffSession).where(
            StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))).all()
        assert len(open_rows) == 1
