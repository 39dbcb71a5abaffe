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
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import time_machine
from flask_migrate import upgrade

from backoffice import create_app
from backoffice.demo import seed
from backoffice.extensions import db
from backoffice.models import AuditEvent, Counter, StaffRole, StaffUser

PASSWORD = "correct horse battery staple"

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
#: set by CI: a missing PostgreSQL is a failure, never a skip
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def pytest_addoption(parser):
    parser.addoption(
        "--clock", metavar="ISO-MOMENT", default=None,
        help="run the whole session with the clock moved to this UTC moment, ticking "
             "(e.g. 2028-02-29T23:59:30); tests that travel or freeze nest inside it")


def _parse_moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def pytest_configure(config):
    if REQUIRE_POSTGRES and not TEST_DATABASE_URL.startswith("postgresql"):
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not PostgreSQL")
    config.addinivalue_line(
        "markers", "clock(moment, tick=False): move the clock to this aware moment for the whole "
                   "test, fixtures included")
    if config.getoption("--clock"):
        # time.monotonic() is left real, so timeouts and lock waits behave as usual.
        traveller = time_machine.travel(_parse_moment(config.getoption("--clock")), tick=True)
        traveller.start()
        config.stash[_SESSION_CLOCK] = traveller


def pytest_unconfigure(config):
    traveller = config.stash.get(_SESSION_CLOCK, None)
    if traveller is not None:
        traveller.stop()


def pytest_report_header(config):
    if config.getoption("--clock"):
        return f"clock moved to {_parse_moment(config.getoption('--clock')).isoformat()}"
    return None


_SESSION_CLOCK = pytest.StashKey[time_machine.travel]()


@pytest.fixture(autouse=True)
def _frozen_clock(request):
    """``@pytest.mark.clock(moment)``: the whole test, its fixtures included, runs at
    ``moment`` with the clock stopped (``tick=True``: running from there), so nothing in
    it mixes real and travelled time."""
    marker = request.node.get_closest_marker("clock")
    if marker is None:
        yield
        return
    with time_machine.travel(marker.args[0], tick=marker.kwargs.get("tick", False)):
        yield


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
    # A session bound to a connection inside a transaction works in a SAVEPOINT: its
    # commit releases the savepoint and the test's outer transaction stays open.
    db.session.session_factory.kw["join_transaction_mode"] = "create_savepoint"
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def is_postgres(database_url) -> bool:
    return database_url.startswith("postgresql")


def pytest_collection_modifyitems(items):
    """Tests whose data another connection must see commit for real (see ``database``)."""
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.commits)


def _empty_tables() -> None:
    tables = [t for t in reversed(db.metadata.sorted_tables) if t.name != "counter"]
    with db.engine.begin() as conn, audit_guard_lifted(conn):
        for table in tables:
            conn.execute(table.delete())
        conn.execute(sa.update(Counter.__table__).values(value=0))


#: the tables the database keeps append-only (migration 0005)
APPEND_ONLY_TABLES = ("audit_event", "audit_checkpoint")


@contextmanager
def audit_guard_lifted(connection: sa.Connection):
    """Let ``connection`` change and delete audit rows inside the block, as only someone
    with the database's own powers can: for the cleanup and for tests that tamper.

    On PostgreSQL the transaction runs with ``session_replication_role = replica`` (a
    superuser's setting, which the test user is), so no ordinary trigger fires; on SQLite
    the append-only triggers are dropped and made again at the end, in the transaction.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        yield
        connection.exec_driver_sql("SET LOCAL session_replication_role = origin")
        return
    names = ", ".join(f"'{name}'" for name in APPEND_ONLY_TABLES)
    triggers = connection.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({names})"
    ).all()
    for name, _sql in triggers:
        connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
    yield
    for _name, sql in triggers:
        connection.exec_driver_sql(sql)


@contextmanager
def bound_to(app, connection: sa.Connection):
    """Make every ``db.session`` of ``app`` use ``connection`` while the block runs."""
    engines = db._app_engines[app]
    engine = engines[None]
    engines[None] = connection
    try:
        yield
    finally:
        engines[None] = engine


@contextmanager
def rolled_back(app, engine):
    """``app`` works on one connection of ``engine`` inside a transaction rolled back at
    the end; every commit inside releases a savepoint."""
    with engine.connect() as connection:
        outer = connection.begin()
        try:
            with bound_to(app, connection):
                yield connection
        finally:
            with app.app_context():
                db.session.remove()
            outer.rollback()


@pytest.fixture(autouse=True)
def database(request, app):
    """Every test starts with empty tables and leaves nothing behind.

    By default the test runs inside one transaction that is rolled back at its end: every
    commit of a request, job or domain call releases a savepoint instead. Tests marked
    ``commits`` (threads, processes, a second server, PostgreSQL concurrency, browsers)
    commit for real, and every table is emptied after them. The value is the test's
    connection (None when it commits), for a second app to share with :func:`bound_to`.
    """
    if request.node.get_closest_marker("commits"):
        yield None
        with app.app_context():
            db.session.remove()
            _empty_tables()
        return
    with app.app_context():
        engine = db.engine
    with rolled_back(app, engine) as connection:
        yield connection


@pytest.fixture(scope="session")
def demo_engine(database_url, tmp_path_factory):
    """A second database, migrated and seeded with the demo data once per session."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "postgresql":
        demo_url = url.set(database=f"{url.database}_demo")
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{demo_url.database}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{demo_url.database}"')
        admin.dispose()
    else:
        demo_url = sa.make_url(f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}")
    demo_app = create_app(base_config(demo_url.render_as_string(hide_password=False)))
    with demo_app.app_context():
        upgrade()
        seed(profiles=DEMO_PROFILES)
        db.session.commit()
        db.session.remove()
        engine = db.engine
    yield engine
    engine.dispose()


#: how many profiles the session's demo data set has
DEMO_PROFILES = 30


@pytest.fixture
def demo(app, demo_engine):
    """The test works on the seeded demo database, inside a transaction rolled back after."""
    with rolled_back(app, demo_engine) as connection:
        yield connection


@pytest.fixture
def second_app(database_url, database):
    """``second_app(**config)``: another app on the test database, sharing its transaction."""
    apps = []

    def factory(**config):
        other = create_app({**base_config(database_url), **config})
        apps.append(other)
        if database is not None:
            stack.enter_context(bound_to(other, database))
        return other

    with ExitStack() as stack:
        yield factory
    for other in apps:
        with other.app_context():
            db.engine.dispose()


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


#: what signing in and out writes to the audit log: checks that a request "writes
#: nothing" (or only its own events) leave these out
SIGN_IN_ACTIONS = ("staff.sign_in", "staff.sign_in_password", "staff.sign_in_failed",
                   "staff.sign_out")


def change_events() -> sa.Select:
    """The audit events other than sign-ins and sign-outs, in order (a query)."""
    return (sa.select(AuditEvent).where(AuditEvent.action.not_in(SIGN_IN_ACTIONS))
            .order_by(AuditEvent.seq))


def count_change_events() -> int:
    """How many audit events there are besides sign-ins and sign-outs."""
    return db.session.scalar(sa.select(sa.func.count(AuditEvent.id))
                             .where(AuditEvent.action.not_in(SIGN_IN_ACTIONS)))


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


def review_token_from(html: str) -> str:
    """The signed review token a review page's Confirm form carries."""
    match = re.search(r'name="review_token" value="([^"]+)"', html)
    assert match, "no review token on the page"
    return match.group(1)


def review_then_confirm(client, url: str, data: dict):
    """Post ``data`` for review, then Confirm it as the review page does: (review, confirm)."""
    review = client.post(url, data={**data, "step": "review"})
    assert review.status_code == 200, review.data[:2000]
    token = review_token_from(review.get_data(as_text=True))
    return review, client.post(url, data={**data, "step": "confirm", "review_token": token})
