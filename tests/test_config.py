"""Configuration: safe defaults, and no real deployment with the built-in secret key."""

from __future__ import annotations

import pytest

from backoffice import create_app
from backoffice.config import DEFAULT_SECRET_KEY, from_environment
from backoffice.extensions import db


def _config(tmp_path, **overrides) -> dict:
    return {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'config.db'}",
            "SCHEDULER_ENABLED": False, "RATELIMIT_ENABLED": False, **overrides}


def _dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _no_secret_in_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("AUDIT_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


def test_refuses_to_start_with_the_default_secret_key(tmp_path):
    with pytest.raises(RuntimeError, match="SECRET_KEY is the built-in development key"):
        create_app(_config(tmp_path, SECRET_KEY=DEFAULT_SECRET_KEY, TESTING=False, DEBUG=False))


def test_refuses_the_default_key_when_it_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setattr("backoffice.config._secret_key", lambda _path: DEFAULT_SECRET_KEY)
    with pytest.raises(RuntimeError):
        create_app(_config(tmp_path, TESTING=False))


def test_starts_with_the_default_key_when_testing(tmp_path):
    app = create_app(_config(tmp_path, SECRET_KEY=DEFAULT_SECRET_KEY, TESTING=True))
    assert app.testing and app.config["SECRET_KEY"] == DEFAULT_SECRET_KEY
    _dispose(app)


def test_starts_with_the_default_key_in_debug(tmp_path):
    app = create_app(_config(tmp_path, SECRET_KEY=DEFAULT_SECRET_KEY, DEBUG=True))
    assert app.debug
    _dispose(app)


def test_starts_with_a_real_secret_key(tmp_path):
    app = create_app(_config(tmp_path, SECRET_KEY="a-real-secret", TESTING=False,
                             AUDIT_KEY="a-real-audit-key-0123456789abcdef"))
    assert not app.testing
    _dispose(app)


def test_secret_key_comes_from_the_environment_then_the_instance_file(tmp_path, monkeypatch):
    assert from_environment(str(tmp_path))["SECRET_KEY"] == DEFAULT_SECRET_KEY
    (tmp_path / "secret_key").write_text("from-the-file\n")
    assert from_environment(str(tmp_path))["SECRET_KEY"] == "from-the-file"
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert from_environment(str(tmp_path))["SECRET_KEY"] == "from-the-environment"


def test_environment_settings_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://db.internal/backoffice")
    monkeypatch.setenv("SMTP_PORT", "2525")
    monkeypatch.setenv("SCHEDULER_ENABLED", "yes")
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "0")
    monkeypatch.setenv("LOGIN_RATE_LIMIT", "5 per minute")
    config = from_environment(str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://db.internal/backoffice"
    assert config["SMTP_PORT"] == 2525
    assert config["SCHEDULER_ENABLED"] is True
    assert config["SESSION_COOKIE_SECURE"] is False
    assert config["LOGIN_RATE_LIMIT"] == "5 per minute"


def test_defaults_are_safe(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "SCHEDULER_ENABLED", "SMTP_HOST", "LOGIN_RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    config = from_environment(str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'backoffice.db'}"
    assert config["SCHEDULER_ENABLED"] is False
    assert config["SMTP_HOST"] == ""
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["LOGIN_RATE_LIMIT"] == "10 per minute"


def test_session_cookie_flags(app, client_as):
    cookie = client_as("support").get_cookie("session")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"


def test_scheduler_does_not_start_while_testing(tmp_path):
    app = create_app(_config(tmp_path, SECRET_KEY="k", TESTING=True, SCHEDULER_ENABLED=True))
    assert app.extensions.get("backoffice_scheduler") is None
    _dispose(app)


def test_any_setting_can_be_given_with_the_backoffice_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKOFFICE_WTF_CSRF_TIME_LIMIT", "7200")
    monkeypatch.setenv("BACKOFFICE_SESSION_COOKIE_SECURE", "true")
    monkeypatch.setenv("BACKOFFICE_MAIL_FROM", "ops@example.com")
    monkeypatch.setenv("BACKOFFICE_SQLALCHEMY_ENGINE_OPTIONS__pool_recycle", "300")
    config = from_environment(str(tmp_path))
    # values are parsed as JSON when they can be, kept as strings otherwise
    assert config["WTF_CSRF_TIME_LIMIT"] == 7200
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["MAIL_FROM"] == "ops@example.com"
    # ``__`` reaches into a dict setting and keeps its other keys
    assert config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": True, "pool_recycle": 300}


def test_the_prefixed_name_wins_over_the_documented_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SMTP_PORT", "2525")
    monkeypatch.setenv("BACKOFFICE_SMTP_PORT", "587")
    monkeypatch.setenv("SCHEDULER_ENABLED", "yes")
    monkeypatch.setenv("BACKOFFICE_SCHEDULER_ENABLED", "false")
    config = from_environment(str(tmp_path))
    assert config["SMTP_PORT"] == 587
    assert config["SCHEDULER_ENABLED"] is False


def test_prefixed_settings_reach_the_app_and_explicit_config_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKOFFICE_DISPLAY_LOCALE", "de_DE")
    monkeypatch.setenv("BACKOFFICE_LOGIN_RATE_LIMIT", "3 per minute")
    app = create_app(_config(tmp_path, SECRET_KEY="k", TESTING=True,
                             LOGIN_RATE_LIMIT="7 per minute"))
    assert app.config["DISPLAY_LOCALE"] == "de_DE"
    assert app.config["LOGIN_RATE_LIMIT"] == "7 per minute"
    _dispose(app)
