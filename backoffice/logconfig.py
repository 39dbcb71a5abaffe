"""Logging, configured once per process by its entry point, never by ``create_app``.

``app.py`` calls :func:`configure_logging` before it builds the app, so the web server
(``make run``, ``gunicorn app:app``) and every ``flask --app app`` command log at INFO to
standard error. Tests leave logging to pytest.

Every record carries the request id of the request it was made in (``-`` outside one):
the app sets :data:`REQUEST_ID` when a request starts, and :class:`RequestIdFilter`, on
the handler, copies it onto each record as ``request_id``.
"""

from __future__ import annotations

import logging
import logging.config
import os
from contextvars import ContextVar

#: the id of the request being handled in this context; "-" outside a request
REQUEST_ID: ContextVar[str] = ContextVar("backoffice_request_id", default="-")

LOG_FORMAT = "%(asctime)s [%(request_id)s] %(levelname)s %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Put the current request id on every record (``%(request_id)s`` in the format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def _quieter(level: str, floor: str) -> str:
    """``floor`` when ``level`` is between DEBUG and it (INFO), else ``level`` itself."""
    numeric = logging.getLevelName(level)
    if isinstance(numeric, int) and logging.DEBUG < numeric < logging.getLevelName(floor):
        return floor
    return level


def logging_config(level: str = "INFO") -> dict:
    """The ``dictConfig`` schema: one stderr handler on the root logger at ``level``."""
    return {
        "version": 1,
        # Loggers made at import time (backoffice.jobs, werkzeug, gunicorn) keep working.
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
        # APScheduler logs each start and end of the runner's two-second polls at INFO;
        # the jobs log their own runs, so its executors speak from WARNING up unless
        # debugging.
        "loggers": {"apscheduler.executors": {"level": _quieter(level, "WARNING")}},
    }


def configure_logging(level: str | None = None) -> None:
    """Configure logging for this process; ``LOG_LEVEL`` (default INFO) sets the level."""
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    logging.config.dictConfig(logging_config(level))
