"""Sign-in throttling across processes: gunicorn with two workers (gunicorn.conf.py),
counting in one Redis, behind one trusted proxy (PROXY_FIX=1; the test plays the proxy
and writes X-Forwarded-For).

Whichever worker takes an attempt, at most the limit's number of failed attempts are
evaluated (answered 401) per account and per client address; the rest are refused (429,
Retry-After) before the password is looked at, even when they arrive all at once. The
limits are "N per hour" so that no window edge falls inside the test.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, make_staff
from tests.test_production import REDIS_URL, _free_port, _redis_available, _status, _wait

pytestmark = [pytest.mark.postgres, pytest.mark.commits]

PROJECT = Path(__file__).resolve().parent.parent
ACCOUNT_LIMIT = 4
ADDRESS_LIMIT = 6
WRONG = "wrong password here"

#: the WSGI module gunicorn serves: the app, each response naming the worker that made it
PID_APP = """
import os
from app import app as console

def app(environ, start_response):
    def start(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Worker-Pid", str(os.getpid()))], exc_info)
    return console(environ, start)
"""


@pytest.fixture
def server(database_url, is_postgres, tmp_path):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    if not _redis_available():
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but Redis does not answer at {REDIS_URL}")
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    redis = pytest.importorskip("redis")
    (tmp_path / "pidapp.py").write_text(PID_APP)
    port = _free_port()
    prefix = f"test-{uuid.uuid4().hex}"
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "throttling-test-key",
           "RATELIMIT_STORAGE_URI": REDIS_URL, "BACKOFFICE_RATELIMIT_KEY_PREFIX": prefix,
           "LOGIN_RATE_LIMIT": f"{ADDRESS_LIMIT} per hour",
           "LOGIN_ACCOUNT_RATE_LIMIT": f"{ACCOUNT_LIMIT} per hour",
           "PROXY_FIX": "1", "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "GUNICORN_THREADS": "4", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT)])}
    for name in ("SCHEDULER_ENABLED", "TEST_DATABASE_URL", "BACKOFFICE_RATELIMIT_STORAGE_URI"):
        env.pop(name, None)
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(PROJECT / "gunicorn.conf.py"),
             "pidapp:app"], cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    store = redis.Redis.from_url(REDIS_URL)

    def answering() -> bool:
        assert process.poll() is None, f"gunicorn exited\n{log.read_text()[-4000:]}"
        return _status(base + "/login") == 200

    try:
        _wait(answering, 60, lambda: log.read_text()[-4000:], "for gunicorn to answer")
        yield {"base": base, "prefix": prefix, "redis": store,
               "log": lambda: log.read_text()[-4000:]}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        for key in store.scan_iter(match=f"*{prefix}*"):
            store.delete(key)
        store.close()


class Attempt:
    """One sign-in attempt from one client: the form is fetched first (its CSRF token and
    session cookie), then posted on its own connection."""

    def __init__(self, base: str, email: str, password: str, client: str):
        self.base, self.client = base, client
        self.fields = {"email": email, "password": password}
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with self.opener.open(self._request("/login"), timeout=60) as response:
            html = response.read().decode()
        self.fields["csrf_token"] = re.search(
            r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)

    def _request(self, path: str, data: bytes | None = None) -> urllib.request.Request:
        return urllib.request.Request(self.base + path, data,
                                      headers={"X-Forwarded-For": self.client})

    def post(self) -> tuple[int, dict]:
        request = self._request("/login", urllib.parse.urlencode(self.fields).encode())
        try:
            with self.opener.open(request, timeout=120) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers)


def _attempt(base, email, password=WRONG, client="192.0.2.1") -> tuple[int, dict]:
    return Attempt(base, email, password, client).post()


def test_failed_sign_ins_are_counted_across_workers(appctx, server):
    with appctx():
        make_staff("admin")
        make_staff("finance")
    base, log = server["base"], server["log"]
    served_by = set()

    # One account, a new client address each time.
    results = [_attempt(base, "admin@staff.test", client=f"203.0.113.{i}")
               for i in range(2 * ACCOUNT_LIMIT + 3)]
    statuses = [status for status, _headers in results]
    assert statuses == [401] * ACCOUNT_LIMIT + [429] * (ACCOUNT_LIMIT + 3), (statuses, log())
    for status, headers in results:
        served_by.add(headers["X-Worker-Pid"])
        if status == 429:
            assert 0 < int(headers["Retry-After"]) <= 3600
    # the right password is refused as well: it is not looked at
    assert _attempt(base, "admin@staff.test", PASSWORD, "203.0.113.99")[0] == 429

    # One client address, another (unknown) account each time.
    results = [_attempt(base, f"guess{i}@staff.test", client="198.51.100.7")
               for i in range(ADDRESS_LIMIT + 3)]
    statuses = [status for status, _headers in results]
    assert statuses == [401] * ADDRESS_LIMIT + [429] * 3, (statuses, log())
    served_by.update(headers["X-Worker-Pid"] for _status, headers in results)
    # the next client behind the proxy has its own count; a client that writes its own
    # X-Forwarded-For entry before the proxy's is still counted as itself
    assert _attempt(base, "guess@staff.test", client="198.51.100.8")[0] == 401
    assert _attempt(base, "guess@staff.test", client="198.51.100.9, 198.51.100.7")[0] == 429

    # Many attempts on one account at once, each from its own address: the count is taken
    # atomically before the password is checked, so still at most the limit gets through.
    count = 4 * ACCOUNT_LIMIT
    attempts = [Attempt(base, "finance@staff.test", WRONG, f"10.9.0.{i}") for i in range(count)]
    start = threading.Barrier(count)

    def fire(attempt: Attempt) -> tuple[int, dict]:
        start.wait()
        return attempt.post()

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(fire, attempts))
    statuses = sorted(status for status, _headers in results)
    assert statuses == [401] * ACCOUNT_LIMIT + [429] * (count - ACCOUNT_LIMIT), (statuses, log())
    served_by.update(headers["X-Worker-Pid"] for _status, headers in results)

    assert len(served_by) == 2, f"one worker took every attempt: {served_by}\n{log()}"

    # Redis holds the counts, under keys that name no email address.
    keys = [key.decode() for key in server["redis"].scan_iter(match=f"*{server['prefix']}*")]
    assert any("sign-in-account" in key for key in keys), keys
    assert any("address:198.51.100.7" in key for key in keys), keys
    assert not [key for key in keys if "staff.test" in key or "admin" in key], keys
