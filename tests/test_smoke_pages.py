"""Every console page renders for every role, with the demo data in place."""

from __future__ import annotations

import pytest

from backoffice.extensions import db
from backoffice.permissions import Permission


def _model_views(app):
    admin = app.extensions["admin"][0]
    return [v for v in admin._views if hasattr(v, "model")]


def test_every_list_and_detail_page_renders_for_admin(app, demo, client_as):
    client = client_as("admin")
    assert client.get("/admin/").status_code == 200
    checked = 0
    for view in _model_views(app):
        url = f"/admin/{view.endpoint}/"
        response = client.get(url)
        assert response.status_code == 200, (url, response.data[:2000])
        with app.app_context():
            first = db.session.query(view.model).first()
            if first is None:
                continue
            pk = view.get_pk_value(first)
        # (a record page with tabs moves its old address to the first tab's)
        details = client.get(f"/admin/{view.endpoint}/details/?id={pk}", follow_redirects=True)
        assert details.status_code == 200, (view.endpoint, details.data[:2000])
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("role", ["support", "finance"])
def test_every_list_page_is_readable_by_every_role(app, demo, client_as, role):
    client = client_as(role)
    for view in _model_views(app):
        response = client.get(f"/admin/{view.endpoint}/")
        # the admin-only Data menu and staff list
        admins_only = view.permission in (Permission.DATA_READ, Permission.STAFF_WRITE)
        assert response.status_code == (403 if admins_only else 200), (role, view.endpoint)
