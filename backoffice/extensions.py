"""Extension objects, created unbound; ``create_app`` binds them to an app."""

from __future__ import annotations

from flask import has_request_context, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mailman import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

#: Deterministic constraint names, so migrations can name what they alter on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
mail = Mail()
#: Only the routes that say so are limited (see views/throttle.py). A moving window, checked
#: and counted in one step; Retry-After (and X-RateLimit-*) on limited responses; a storage
#: failure raises ``limits.errors.StorageError`` instead of letting the request through.
limiter = Limiter(key_func=get_remote_address, default_limits=[], strategy="moving-window",
                  headers_enabled=True, swallow_errors=False,
                  storage_options={"wrap_exceptions": True})


def configure_sqlite(engine: Engine) -> None:
    """Make SQLite safe for concurrent writers: WAL, a busy timeout, ``BEGIN IMMEDIATE``.

    pysqlite's own transaction handling is switched off so that SQLAlchemy emits BEGIN
    itself. Requests that only read (GET/HEAD) begin deferred; every other unit of work
    (POST requests, jobs, CLI commands) takes the write lock when it begins, so a
    read-then-write never fails half-way with "database is locked".
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        if has_request_context() and request.method in ("GET", "HEAD"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
