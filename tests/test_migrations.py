"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from backoffice import create_app
from backoffice.extensions import db
from backoffice.models import in_schema_of
from tests.conftest import base_config

pytestmark = pytest.mark.commits  # migrations run DDL on their own connections


def _differences(app) -> list:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": in_schema_of(conn.dialect.name)})
        return compare_metadata(context, db.metadata)


def _tables(app) -> set[str]:
    with app.app_context():
        return set(sa.inspect(db.engine).get_table_names())


def _dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def fresh_sqlite_app(tmp_path):
    app = create_app(base_config(f"sqlite:///{tmp_path / 'fresh.db'}"))
    yield app
    _dispose(app)


@pytest.fixture
def fresh_postgres_app(database_url, is_postgres):
    if not is_postgres:
        pytest.skip("PostgreSQL only")
    # A scratch database named after the test database, so parallel runs do not collide.
    scratch = f"{sa.make_url(database_url).database}_mig"
    server = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{scratch}"')
    url = sa.make_url(database_url).set(database=scratch)
    app = create_app(base_config(url.render_as_string(hide_password=False)))
    try:
        yield app
    finally:
        _dispose(app)
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        server.dispose()


def _assert_upgrade_matches_models(app) -> None:
    assert _tables(app) == set()
    with app.app_context():
        upgrade()
    tables = _tables(app)
    assert {t.name for t in db.metadata.sorted_tables} | {"alembic_version"} == tables
    assert _differences(app) == []


def test_migrations_match_models_on_sqlite(fresh_sqlite_app):
    _assert_upgrade_matches_models(fresh_sqlite_app)


@pytest.mark.postgres
def test_migrations_match_models_on_postgres(fresh_postgres_app):
    _assert_upgrade_matches_models(fresh_postgres_app)


def test_the_session_database_matches_the_models(app):
    """The database every other test runs on, SQLite or PostgreSQL, has no drift either."""
    assert _differences(app) == []


def test_comparison_notices_drift(fresh_sqlite_app):
    """The check above can fail: a column the migrations lack is reported."""
    app = fresh_sqlite_app
    with app.app_context():
        upgrade()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE counter ADD COLUMN stray INTEGER")
    differences = _differences(app)
    assert any(d[0] == "remove_column" and d[3].name == "stray" for d in differences)


def test_downgrade_to_base_removes_everything(fresh_sqlite_app):
    app = fresh_sqlite_app
    with app.app_context():
        upgrade()
        downgrade(revision="base")
    assert _tables(app) <= {"alembic_version"}


def test_flask_db_upgrade_command_on_an_empty_sqlite_file(fresh_sqlite_app):
    app = fresh_sqlite_app
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "staff_user" in _tables(app)
    assert _differences(app) == []
    with app.app_context():
        version = db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert version
    # running it again is harmless
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
