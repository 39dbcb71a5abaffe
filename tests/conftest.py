"""Fixtures: one app per test session, a clean database for every test.

The schema is built by running the Alembic migrations, on SQLite by default or on the
PostgreSQL database named by ``TEST_DATABASE_URL``. Every test starts from empty tables
(counters at zero), so tests that commit (views, jobs, threads) stay independent.
Requests run without an outer app context, as in production: set data up and check it
inside ``with app.app_context():`` blocks, or use the ``ctx`` fixture for domain tests.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from backoffice import create_app
from backoffice.extensions import db
from backoffice.models import Counter, StaffRole, StaffUser

PASSWORD = "correct horse battery staple"

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
#: set by CI: a missing PostgreSQL is a failure, never a skip
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def pytest_configure(config):
    if REQUIRE_POSTGRES and not TEST_DATABASE_URL.startswith("postgresql"):
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not PostgreSQL")


def _reset_postgres(url: str) -> None:
    """Drop and recreate the public schema so the migrations start from nothing."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    except sa.exc.OperationalError as exc:
        raise pytest.UsageError(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}") from exc
    finally:
        engine.dispose()


def base_config(database_url: str) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SCHEDULER_ENABLED": False,
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "SERVER_NAME": None,
    }


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    if TEST_DATABASE_URL:
        _reset_postgres(TEST_DATABASE_URL)
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def app(database_url):
    app = create_app(base_config(database_url))
    with app.app_context():
        upgrade()
        db.session.remove()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def is_postgres(database_url) -> bool:
    return database_url.startswith("postgresql")


def _empty_tables() -> None:
    tables = [t for t in reversed(db.metadata.sorted_tables) if t.name != "counter"]
    with db.engine.begin() as conn:
        for table in tables:
            conn.execute(table.delete())
        conn.execute(sa.update(Counter.__table__).values(value=0))


@pytest.fixture(autouse=True)
def clean_database(request, app):
    """Every test starts with empty tables; anything it committed is removed after it."""
    yield
    with app.app_context():
        db.session.remove()
        _empty_tables()


@pytest.fixture
def ctx(app):
    """An app context for domain tests (no HTTP requests inside it)."""
    with app.app_context():
        yield db.session
        db.session.rollback()
        db.session.remove()


@pytest.fixture
def appctx(app):
    """Run a block in its own app context: ``with appctx(): ...`` (commit what requests need)."""

    @contextmanager
    def block():
        with app.app_context():
            try:
                yield db.session
            finally:
                db.session.remove()

    return block


def make_staff(role: str | StaffRole = "admin", email: str | None = None,
               active: bool = True) -> StaffUser:
    """A committed staff user with the test password (call inside an app context)."""
    from backoffice.staff import hash_password

    role = StaffRole(role)
    user = StaffUser(email=email or f"{role.value}@staff.test", name=f"Test {role.value}",
                     role=role, password_hash=hash_password(PASSWORD), active=active)
    db.session.add(user)
    db.session.commit()
    return user


@pytest.fixture
def staff(appctx):
    """``staff("support")`` -> the id of a committed staff user of that role."""

    def factory(role="admin", email=None, active=True) -> int:
        with appctx():
            return make_staff(role, email, active).id

    return factory


def login(client, email: str, password: str = PASSWORD):
    return client.post("/login", data={"email": email, "password": password})


@pytest.fixture
def client_as(app, staff):
    """``client_as("finance")`` -> a test client signed in as a new staff member of that role."""

    def factory(role="admin", email=None):
        staff(role, email)
        client = app.test_client()
        response = login(client, email or f"{StaffRole(role).value}@staff.test")
        assert response.status_code == 303, response.data
        return client

    return factory


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)
