"""Logging is configured by the entry points (app.py), once, and not by ``create_app``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backoffice import create_app
from backoffice.extensions import db
from backoffice.logconfig import configure_logging

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root_logger():
    """The root logger, put back as it was afterwards (pytest's own handlers included)."""
    root = logging.getLogger()
    executors = logging.getLogger("apscheduler.executors")
    handlers, level, executors_level = root.handlers[:], root.level, executors.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    executors.setLevel(executors_level)


def test_configure_logging_sets_one_stderr_handler_at_info(root_logger, monkeypatch):
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    configure_logging()
    configure_logging()  # again: still one handler
    assert root_logger.level == logging.INFO
    assert len(root_logger.handlers) == 1
    assert isinstance(root_logger.handlers[0], logging.StreamHandler)


def test_log_level_comes_from_the_environment(root_logger, monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "warning")
    configure_logging()
    assert root_logger.level == logging.WARNING


def test_loggers_made_before_configuration_keep_working(root_logger):
    from backoffice import jobs

    configure_logging()
    assert not jobs.log.disabled


def test_create_app_leaves_logging_alone(root_logger, tmp_path):
    before = root_logger.handlers[:]
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'log.db'}",
                      "SECRET_KEY": "k", "TESTING": True, "SCHEDULER_ENABLED": False})
    assert root_logger.handlers == before
    with app.app_context():
        db.engine.dispose()


def test_the_app_entry_point_logs_at_info(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "SCHEDULER_ENABLED")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'entry.db'}", SECRET_KEY="entry-secret",
               AUDIT_KEY="entry-audit-key-0123456789abcdef",
               PYTHONPATH=str(PROJECT))
    code = "import logging, app; logging.getLogger('backoffice.probe').info('hello')"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "INFO backoffice.probe: hello" in result.stderr


@pytest.mark.parametrize(("level", "executors"), [
    ("INFO", logging.WARNING), ("DEBUG", logging.DEBUG), ("ERROR", logging.ERROR)])
def test_the_schedulers_poll_chatter_is_quiet_unless_debugging(root_logger, monkeypatch,
                                                                level, executors):
    monkeypatch.setenv("LOG_LEVEL", level)
    configure_logging()
    assert logging.getLogger("apscheduler.executors.default").getEffectiveLevel() == executors
    assert logging.getLogger("backoffice.jobs").getEffectiveLevel() == logging.getLevelName(level)
