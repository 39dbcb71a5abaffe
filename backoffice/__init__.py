"""The back-office console: ``create_app`` assembles configuration, extensions and views."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Flask, render_template

from . import cli, staff
from .config import DEFAULT_SECRET_KEY, from_environment
from .extensions import configure_sqlite, csrf, db, limiter, login_manager, mail, migrate
from .jobs import start_in_process
from .permissions import Permission, has_permission
from .views import init_admin, login
from .views.base import fmt_date, fmt_datetime, fmt_money

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping | None = None) -> Flask:
    """Build an app; ``config`` overrides any setting (tests pass their database here)."""
    app = Flask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    app.config.update(from_environment(app.instance_path))
    if config:
        app.config.update(config)
    _refuse_default_secret(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True,
                     compare_type=True)
    csrf.init_app(app)
    app.config.setdefault("RATELIMIT_ENABLED", not app.config.get("TESTING", False))
    limiter.init_app(app)
    login_manager.init_app(app)
    mail.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to open that page."
    login_manager.session_protection = "strong"

    if app.config.get("PASSWORD_HASH_METHOD"):
        staff.use_password_hash_method(app.config["PASSWORD_HASH_METHOD"])

    app.register_blueprint(login.bp)
    init_admin(app)
    cli.register(app)
    app.jinja_env.globals.update(
        fmt_money=fmt_money, fmt_date=fmt_date, fmt_datetime=fmt_datetime,
        has_permission=has_permission, Permission=Permission,
    )
    _register_error_pages(app)

    if app.config.get("SCHEDULER_ENABLED") and not app.config.get("TESTING"):
        start_in_process(app)
    return app


def _refuse_default_secret(app: Flask) -> None:
    """Never run a real deployment with the key that ships in the code."""
    if app.config["SECRET_KEY"] == DEFAULT_SECRET_KEY and not (app.debug or app.testing):
        raise RuntimeError(
            "SECRET_KEY is the built-in development key. Set SECRET_KEY in the environment "
            "(or run with FLASK_DEBUG=1 for local development)."
        )


def _register_error_pages(app: Flask) -> None:
    """Plain pages for 403/404/429 that tell staff what happened."""
    for code, title, text in (
        (403, "Not allowed", "Your role does not allow this. Ask an admin if you need it."),
        (404, "Not found", "There is nothing at this address."),
        (429, "Too many attempts", "Too many sign-in attempts. Wait a minute and try again."),
    ):
        def handler(_error, code=code, title=title, text=text):
            return render_template("error.html", code=code, title=title, text=text), code

        app.register_error_handler(code, handler)


__all__ = ["create_app"]
