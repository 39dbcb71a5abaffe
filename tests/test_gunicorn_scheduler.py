"""Two gunicorn workers, each with the in-process scheduler on: one runner per job run.

Each worker builds the app and starts its own scheduler, which fires a short test job
every second. The job takes most of a second, so without the lease the two workers'
runs would overlap; with it, the recorded runs never do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.models import JobRun, JobStatus

pytestmark = pytest.mark.commits  # a second server reads what the test wrote

PROJECT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"

#: the WSGI module gunicorn loads: the app, plus a "tick" job firing every second
TICK_APP = """
import os, time
from datetime import timedelta

from apscheduler.triggers.interval import IntervalTrigger

from backoffice import create_app, jobs
from backoffice.logconfig import configure_logging


def tick():
    time.sleep(0.7)
    return {"ticks": 1}


def registry():
    return {"tick": jobs.Job("tick", "Test tick", tick, lambda: IntervalTrigger(seconds=1),
                             "every second", timedelta(seconds=30))}


jobs.registry = registry
configure_logging()  # as app.py does: the scheduler's start is read from the log
app = create_app({"SQLALCHEMY_DATABASE_URI": os.environ["TICK_DATABASE_URL"],
                  "SECRET_KEY": "gunicorn-test-secret",
                  "AUDIT_KEY": "gunicorn-test-audit-key-0123456789", "SCHEDULER_ENABLED": True})
"""


@pytest.fixture
def gunicorn():
    if not GUNICORN.exists():
        pytest.fail(f"gunicorn is not installed at {GUNICORN} (pip install -e '.[dev]')")
    return GUNICORN


def test_two_gunicorn_workers_with_schedulers_run_each_job_once_at_a_time(
        app, database_url, tmp_path, gunicorn, appctx):
    (tmp_path / "tickapp.py").write_text(TICK_APP)
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "TICK_DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT)])}
    env.pop("SCHEDULER_ENABLED", None)
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(gunicorn), "--workers", "2", "--bind", "127.0.0.1:0", "--chdir",
             str(tmp_path), "--log-level", "info", "tickapp:app"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            # Workers load the app after forking, each in its own time.
            _wait_for(lambda: len(_schedulers(log)) == 2, 90, log)
            _wait_for(lambda: _finished_ticks(appctx) >= 5, 60, log)
        finally:
            server.terminate()
            server.wait(timeout=30)
    started = _schedulers(log)
    assert len(started) == 2, log.read_text()  # both workers really ran a scheduler

    with appctx():
        runs = db.session.scalars(
            select(JobRun).where(JobRun.job == "tick").order_by(JobRun.started_at)).all()
        finished = [r for r in runs if r.status == JobStatus.SUCCEEDED]
        assert len(finished) >= 5, [(r.started_at, r.holder) for r in runs]
        for before, after in zip(finished, finished[1:], strict=False):
            assert before.finished_at <= after.started_at, (before.holder, after.holder)
        holders = {r.holder.split(":")[1] for r in runs}
        assert holders <= started


def _schedulers(log: Path) -> set[str]:
    """The worker pids that started a scheduler, from the log."""
    return set(re.findall(r"scheduler started in process (\d+)", log.read_text()))


def _finished_ticks(appctx) -> int:
    with appctx():
        return len(db.session.scalars(select(JobRun.id).where(
            JobRun.job == "tick", JobRun.status == JobStatus.SUCCEEDED)).all())


def _wait_for(condition, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.25)
