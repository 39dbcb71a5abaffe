"""The production topology, started for real: gunicorn (2 workers, gunicorn.conf.py), a
separate job runner (``flask jobs run``), Redis for the sign-in limit, and PostgreSQL.

- Run now answers at once and the runner executes the queued run.
- The runner is SIGKILLed in the middle of a renewal over 1,000 due subscriptions; a new
  runner takes the job over and every subscription is renewed exactly once.
- A CSV export that takes longer than the old 30 s worker timeout streams to the end.
- Failed sign-ins are counted across both workers.
- The admin signs in with a second factor, as the production default requires.

Every process runs with the clock moved to the same fixed moment (ticking).
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import twofactor
from backoffice.extensions import db
from backoffice.models import JobRun, JobStatus, Transaction
from tests.conftest import PASSWORD, make_staff
from tests.test_renewals_concurrency import (
    CHUNK,
    COUNT,
    FIRST_END,
    _bulk_due_subscriptions,
    _renewal_stats,
)

pytestmark = [pytest.mark.postgres, pytest.mark.commits]

PROJECT = Path(__file__).resolve().parent.parent
MOMENT = datetime(FIRST_END.year, FIRST_END.month, FIRST_END.day, 10, tzinfo=UTC)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

#: runs a module (gunicorn, flask) as ``python -m`` would, with the clock moved
LAUNCH = """
import runpy, sys
from datetime import datetime
import time_machine
time_machine.travel(datetime.fromisoformat(sys.argv[1]), tick=True).start()
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""

#: the WSGI module gunicorn serves: the app, with each exported line slowed down (the
#: export itself, COPY on PostgreSQL, runs as in production; its lines are handed on one
#: by one, each after a pause)
SLOW_EXPORT_APP = """
import os, time
from backoffice import reports

_stream = reports.stream_csv

def slow_stream(filters, **options):
    for chunk in _stream(filters, **options):
        for line in chunk.splitlines(keepends=True):
            time.sleep(float(os.environ["EXPORT_ROW_DELAY"]))
            yield line

reports.stream_csv = slow_stream
from app import app
"""

#: the app the first job runner runs: each renewal chunk slowed down, so it can be killed
#: in the middle of the renewal (chunks of RENEWAL_CHUNK_SIZE, set small in the topology)
SLOW_RENEWAL_APP = """
import time
from backoffice import renewals

_process = renewals._process

def slow_process(*args, **kwargs):
    result = _process(*args, **kwargs)
    time.sleep(0.1)  # inside the chunk's transaction, before its commit
    return result

renewals._process = slow_process
from app import app
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_available() -> bool:
    parsed = urllib.parse.urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def topology(database_url, is_postgres, tmp_path):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    if not _redis_available():
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but Redis does not answer at {REDIS_URL}")
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    (tmp_path / "slowexport.py").write_text(SLOW_EXPORT_APP)
    (tmp_path / "slowrenewal.py").write_text(SLOW_RENEWAL_APP)
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "production-test-key",
           "AUDIT_KEY": "production-test-audit-key-0123456789",
           "RATELIMIT_STORAGE_URI": REDIS_URL, "LOGIN_RATE_LIMIT": "10 per minute",
           "BACKOFFICE_RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
           "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", "EXPORT_ROW_DELAY": "0.031",
           "RENEWAL_CHUNK_SIZE": str(CHUNK),
           "FLASK_APP": "app", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT)])}
    for name in ("SCHEDULER_ENABLED", "TEST_DATABASE_URL", "TWO_FACTOR_REQUIRED_ROLES"):
        env.pop(name, None)
    processes: dict[str, subprocess.Popen] = {}
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, *module_and_args: str) -> subprocess.Popen:
        out = (logs / f"{name}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, MOMENT.isoformat(), *module_and_args],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT)
        processes[name] = process
        return process

    def log_text() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in logs.iterdir())

    launched = time.time()  # the servers' clocks read MOMENT then, and tick on
    start("gunicorn", "gunicorn", "-c", str(PROJECT / "gunicorn.conf.py"), "slowexport:app")
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: _status(base + "/login") == 200, 60, log_text)
    try:
        yield {"base": base, "start": start, "processes": processes, "log": log_text,
               "launched": launched}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait(condition, seconds: float, log_text, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out {what}\n{log_text()}"
        time.sleep(0.1)


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class Browser:
    """A tiny cookie-keeping HTTP client that fills in each form's CSRF token."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str):
        return self.opener.open(self.base + path, timeout=120)

    def token(self, path: str) -> str:
        html = self.get(path).read().decode()
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)

    def post(self, path: str, fields: dict, token_from: str) -> tuple[int, str]:
        data = urllib.parse.urlencode({**fields, "csrf_token": self.token(token_from)})
        try:
            with self.opener.open(self.base + path, data.encode(), timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def _job_run(name: str, status: JobStatus) -> JobRun | None:
    db.session.rollback()
    return db.session.scalar(select(JobRun).where(JobRun.job == name, JobRun.status == status)
                             .order_by(JobRun.id.desc()))


def test_the_production_topology(appctx, topology):
    with appctx():
        admin = make_staff("admin")
        # enrolled in two-factor sign-in a while before (admins must use it by default)
        with time_machine.travel(MOMENT - timedelta(minutes=5), tick=False):
            reference = twofactor.start_enrolment(admin)
            secret = admin.totp_secret
            twofactor.confirm_enrolment(admin, pyotp.TOTP(secret).now(), reference,
                                        actor=admin, keep=None)
        db.session.commit()
        _bulk_due_subscriptions(COUNT)
    log_text = topology["log"]
    runner = topology["start"]("runner-1", "flask", "--app", "slowrenewal:app", "jobs", "run")
    browser = Browser(topology["base"])
    status, _page = browser.post("/login", {"email": "admin@staff.test", "password": PASSWORD},
                                 "/login")
    assert status == 200 and "Two-factor sign-in" in _page, _page[:2000]
    servers_now = MOMENT + timedelta(seconds=time.time() - topology["launched"])
    status, _page = browser.post("/login/code", {"code": pyotp.TOTP(secret).at(servers_now)},
                                 "/login/code")
    assert status == 200 and "Dashboard" in _page, _page[:2000]

    # Run now answers at once; the runner runs the queued run within seconds.
    started = time.monotonic()
    status, page = browser.post("/admin/jobs/run/ledger_check", {}, "/admin/jobs/")
    assert status == 200 and time.monotonic() - started < 5, page[:2000]
    with appctx():
        _wait(lambda: _job_run("ledger_check", JobStatus.SUCCEEDED) is not None, 30,
              log_text, "for the runner to run the queued ledger check")
        assert _job_run("ledger_check", JobStatus.SUCCEEDED).trigger == "manual"

    # The runner dies in the middle of a renewal; a new one takes the job over.
    status, _page = browser.post("/admin/jobs/run/renewals", {}, "/admin/jobs/")
    assert status == 200
    with appctx():
        _wait(lambda: _renewal_stats()[0] >= 150, 60, log_text, "for the renewal to start")
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        charges_at_kill = _renewal_stats()[0]
        assert charges_at_kill < COUNT, "killed too late to prove anything"
        assert charges_at_kill % CHUNK == 0  # whole chunks committed, the one in flight not
        killed_at = time.monotonic()
        topology["start"]("runner-2", "flask", "jobs", "run")
        _wait(lambda: _renewal_stats() == (COUNT, 2 * COUNT, 1, 2), 120, log_text,
              "for every due subscription to be renewed once")
        assert time.monotonic() - killed_at < 120
        abandoned = _job_run("renewals", JobStatus.ABANDONED)
        assert abandoned is not None and abandoned.holder.split(":")[1] == str(runner.pid)
        assert abandoned.taken_over_by
        rows = db.session.scalar(select(func.count(Transaction.id)))

    # An export longer than the old 30 s timeout streams to its end.
    started = time.monotonic()
    with browser.get("/admin/billing/report/export.csv") as export:
        lines = export.read().decode().count("\r\n")
    assert time.monotonic() - started > 30
    assert lines == rows + 1  # the header, then every transaction

    # Failed sign-ins are counted in Redis, whichever worker takes them.
    stranger = Browser(topology["base"])
    statuses = [stranger.post("/login", {"email": "admin@staff.test", "password": "wrong!"},
                              "/login")[0] for _ in range(12)]
    assert statuses.count(429) >= 2, statuses
    assert len([s for s in statuses if s != 429]) <= 10
