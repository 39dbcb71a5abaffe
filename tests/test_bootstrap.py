"""``flask bootstrap`` (``make run``'s first start): demo data and a first admin, once."""

from __future__ import annotations

import re

import sqlalchemy as sa
from werkzeug.security import check_password_hash

from backoffice.extensions import db
from backoffice.models import Profile, StaffRole, StaffUser


def _bootstrap(app, *args: str):
    result = app.test_cli_runner().invoke(args=["bootstrap", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_first_start_creates_an_admin_and_prints_its_login_once(app, appctx):
    output = _bootstrap(app, "--no-demo", "--url", "http://127.0.0.1:5055/")
    assert "Sign in at http://127.0.0.1:5055/login with" in output
    password = re.search(r"password: (\S+)", output).group(1)
    with appctx():
        admin = db.session.scalar(sa.select(StaffUser))
        assert (admin.email, admin.role) == ("admin@example.com", StaffRole.ADMIN)
        assert check_password_hash(admin.password_hash, password)
        assert db.session.scalar(sa.select(sa.func.count(Profile.id))) == 0

    again = _bootstrap(app, "--no-demo")
    assert "password" not in again
    with appctx():
        assert db.session.scalar(sa.select(sa.func.count(StaffUser.id))) == 1


def test_the_default_address_is_the_one_make_run_serves(app, appctx):
    assert "Sign in at http://127.0.0.1:5000/login with" in _bootstrap(app, "--no-demo")
