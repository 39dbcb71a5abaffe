"""Settings read from the environment, with defaults that are safe for a laptop."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Config

#: Any setting can be given as BACKOFFICE_<NAME> (see ``from_environment``).
ENV_PREFIX = "BACKOFFICE"

#: The key that ships with the code; the app refuses to start with it outside debug/testing.
DEFAULT_SECRET_KEY = "dev-only-secret-key-change-me"

#: The audit key debug and testing runs fall back on; refused everywhere else.
DEV_AUDIT_KEY = "dev-only-audit-key-not-for-production"
#: the shortest AUDIT_KEY accepted outside debug/testing (a guessable key unlocks the chain)
MIN_AUDIT_KEY_LENGTH = 32

#: the largest request body accepted, in bytes (MAX_CONTENT_LENGTH): no console form is
#: anywhere near it, and a bigger body is refused before it is read
MAX_CONTENT_LENGTH = 1024 * 1024
#: the largest single form field (500 kB, far more than any text a staff member types) and
#: the most fields in one form
MAX_FORM_MEMORY_SIZE = 500_000
MAX_FORM_PARTS = 1_000


def _flag(name: str, default: bool) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _positive_int(name: str, default: int) -> int:
    """Read a whole number of at least 1 from the environment."""
    text = os.environ.get(name, "").strip()
    value = int(text) if text.isdigit() else default if not text else 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {text!r}")
    return value


def _secret_key(instance_path: str) -> str:
    """SECRET_KEY from the environment, else the instance's ``secret_key`` file (made by
    ``make run``), else the development key the app refuses outside debug/testing."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    key_file = Path(instance_path) / "secret_key"
    if key_file.is_file():
        return key_file.read_text().strip()
    return DEFAULT_SECRET_KEY


def _audit_key(instance_path: str) -> str:
    """AUDIT_KEY from the environment, else the instance's ``audit_key`` file (made by
    ``make run``), else empty: ``create_app`` then uses the development key in
    debug/testing and refuses to start otherwise."""
    if os.environ.get("AUDIT_KEY"):
        return os.environ["AUDIT_KEY"]
    key_file = Path(instance_path) / "audit_key"
    if key_file.is_file():
        return key_file.read_text().strip()
    return ""


def from_environment(instance_path: str) -> dict:
    """Build the configuration mapping from environment variables.

    The documented names (DATABASE_URL, SECRET_KEY, SCHEDULER_ENABLED, SMTP_HOST, ...) are
    read first. Then any setting, documented or not, can be set or overridden as
    ``BACKOFFICE_<SETTING>`` through Flask's ``from_prefixed_env``: values are parsed as
    JSON when they can be (``true``, ``7200``, ``["a", "b"]``) and kept as strings
    otherwise, and ``__`` reaches into a dict setting
    (``BACKOFFICE_SQLALCHEMY_ENGINE_OPTIONS__pool_size=10``).
    """
    config = Config(instance_path, _documented_settings(instance_path))
    config.from_prefixed_env(ENV_PREFIX)
    return dict(config)


def _documented_settings(instance_path: str) -> dict:
    """The settings the README documents, under their own environment names."""
    sqlite_path = Path(instance_path) / "backoffice.db"
    return {
        "SECRET_KEY": _secret_key(instance_path),
        # The key of the audit chain's HMAC; never stored in the database.
        "AUDIT_KEY": _audit_key(instance_path),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL", f"sqlite:///{sqlite_path}"),
        # Start the job scheduler inside this process when the app is created (``make run``
        # sets it for the web server; production runs ``flask jobs run`` on its own instead).
        "SCHEDULER_ENABLED": _flag("SCHEDULER_ENABLED", False),
        # {ref} is replaced by a licence's CA Reference.
        "TRACKING_URL_TEMPLATE": os.environ.get(
            "TRACKING_URL_TEMPLATE", "https://tracking.example.com/orders/{ref}"
        ),
        "SMTP_HOST": os.environ.get("SMTP_HOST", ""),
        "SMTP_PORT": int(os.environ.get("SMTP_PORT", "25")),
        # none (plain, e.g. a local relay), starttls (usually port 587) or ssl (port 465)
        "SMTP_SECURITY": os.environ.get("SMTP_SECURITY", "none"),
        "SMTP_USERNAME": os.environ.get("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD", ""),
        "MAIL_FROM": os.environ.get("MAIL_FROM", "backoffice@example.com"),
        # Sign-in attempts per client address, per account (the email submitted) and per
        # account on the two-factor code step (limits strings: "5 per minute; 20 per hour").
        "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "10 per minute"),
        "LOGIN_ACCOUNT_RATE_LIMIT": os.environ.get("LOGIN_ACCOUNT_RATE_LIMIT",
                                                   "5 per minute; 20 per hour"),
        "TWO_FACTOR_RATE_LIMIT": os.environ.get("TWO_FACTOR_RATE_LIMIT",
                                                "5 per minute; 20 per hour"),
        # Where the attempts are counted: memory:// is one process's own count; several
        # processes (gunicorn workers) need a shared store, redis://host:6379/0.
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        # How many reverse proxies in front of the app set X-Forwarded-For/-Proto (0: none,
        # the headers are ignored); the client address is then the one the nearest proxy saw.
        "PROXY_FIX": os.environ.get("PROXY_FIX", "0"),
        # Roles that must sign in with a second factor (TOTP), comma-separated; "" or
        # "none" for none. Unset, it is "admin,finance", except under debug or testing
        # (see views/login.py, which settles it when the app is made).
        "TWO_FACTOR_REQUIRED_ROLES": os.environ.get("TWO_FACTOR_REQUIRED_ROLES"),
        # the name authenticator apps show next to the account
        "TWO_FACTOR_ISSUER": os.environ.get("TWO_FACTOR_ISSUER", "Back-office"),
        "DISPLAY_LOCALE": os.environ.get("DISPLAY_LOCALE", "en_US"),
        # The seller printed on every invoice: name, address (lines separated by "|" or
        # new lines) and tax id.
        "SELLER_NAME": os.environ.get("SELLER_NAME", "Example Certificates Ltd"),
        "SELLER_ADDRESS": os.environ.get(
            "SELLER_ADDRESS", "1 Example Street|Springfield, IL 62701|United States"),
        "SELLER_TAX_ID": os.environ.get("SELLER_TAX_ID", "US 12-3456789"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE", False),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": int(os.environ.get("SESSION_LIFETIME_SECONDS", "28800")),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "FLASK_ADMIN_FLUID_LAYOUT": True,
        # The largest request body accepted (bytes); a larger one gets the 413 page.
        "MAX_CONTENT_LENGTH": int(os.environ.get("MAX_CONTENT_LENGTH", str(MAX_CONTENT_LENGTH))),
        # The largest single form field and the most fields a form may have (Flask 3.1+).
        "MAX_FORM_MEMORY_SIZE": MAX_FORM_MEMORY_SIZE,
        "MAX_FORM_PARTS": MAX_FORM_PARTS,
        # How many subscriptions the renewal job renews, and how many customers the
        # monthly invoicing job invoices, in one transaction.
        "RENEWAL_CHUNK_SIZE": _positive_int("RENEWAL_CHUNK_SIZE", 1000),
        "INVOICE_CHUNK_SIZE": _positive_int("INVOICE_CHUNK_SIZE", 1000),
    }
