"""How the benchmarks that run on a ``flask seed-scale`` database open it."""

from __future__ import annotations

import argparse
import os
import secrets

from flask import Flask

from backoffice import create_app

#: two-factor sign-in and the scheduler are not what is measured
ENVIRONMENT = {"TWO_FACTOR_REQUIRED_ROLES": "", "SCHEDULER_ENABLED": "0"}


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""),
                        help="the seeded database (default: DATABASE_URL)")


def seeded_app(database_url: str) -> Flask:
    """The app on the seeded PostgreSQL database, with ENVIRONMENT's settings; exits
    with a message on any other database."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.update(ENVIRONMENT)
    os.environ.setdefault("SECRET_KEY", secrets.token_hex(16))
    app = create_app()
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        raise SystemExit("set DATABASE_URL to a seeded PostgreSQL database (flask seed-scale)")
    return app
