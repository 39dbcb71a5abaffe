"""Logging, configured once per process by its entry point, never by ``create_app``.

``app.py`` calls :func:`configure_logging` before it builds the app, so the web server
(``make run``, ``gunicorn app:app``) and every ``flask --app app`` command log at INFO to
standard error. Tests leave logging to pytest.
"""

from __future__ import annotations

import logging.config
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(level: str = "INFO") -> dict:
    """The ``dictConfig`` schema: one stderr handler on the root logger at ``level``."""
    return {
        "version": 1,
        # Loggers made at import time (backoffice.jobs, werkzeug, gunicorn) keep working.
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure_logging(level: str | None = None) -> None:
    """Configure logging for this process; ``LOG_LEVEL`` (default INFO) sets the level."""
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    logging.config.dictConfig(logging_config(level))
