"""The transaction export against COPY, on a seeded PostgreSQL database.

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_scale \\
        .venv/bin/python bench/bench_export.py [--baseline-rows 1000000] [--no-gunicorn]

Every figure is measured in the same run and printed as rows/s and as a ratio to the
floor: ``COPY (SELECT ...) TO STDOUT`` of the report's rows, unformatted, read through
psycopg and thrown away (what the database can hand over at best).

- export, in process: ``reports.stream_csv`` (COPY with the cells formatted in SQL);
- export, through gunicorn: the production setup (``gunicorn.conf.py``: gthread workers,
  sign-ins counted in Redis, ``RATELIMIT_STORAGE_URI``, by default on 127.0.0.1:6379)
  serving ``/admin/billing/report/export.csv`` to a signed-in client reading it all;
- baseline, the Python csv writer (``reports.python_csv``, what SQLite uses and what
  PostgreSQL used before), over the oldest ``--baseline-rows`` rows, with the floor and
  the COPY export measured again over the same rows; both files must be byte-identical.

It signs in as ``bench-export@bench.example`` (a finance account made, audited, on the
first run; its password is set anew each run). Nothing else is written.
"""

from __future__ import annotations

import argparse
import hashlib
import http.cookiejar
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select, text

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from seeded import ENVIRONMENT, add_database_argument, seeded_app  # noqa: E402

from backoffice import reports, staff  # noqa: E402
from backoffice.extensions import db  # noqa: E402
from backoffice.models import StaffUser, Transaction  # noqa: E402
from backoffice.reports import ReportFilters  # noqa: E402

BENCH_EMAIL = "bench-export@bench.example"


def _timed(chunks: Iterable[bytes]) -> tuple[float, int, str]:
    """Seconds to consume ``chunks``, their bytes and their SHA-256."""
    digest = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return time.perf_counter() - started, size, digest.hexdigest()


def _floor(filters: ReportFilters) -> Iterator[bytes]:
    """The report's rows as COPY writes them, unformatted (the floor)."""
    statement, params = reports.copy_statement(reports.report_query(filters),
                                               db.session.get_bind().dialect)
    raw = db.session.connection().connection.dbapi_connection
    with raw.cursor() as cursor, cursor.copy(statement, params) as copy:  # type: ignore[union-attr]
        yield from copy


def _rows(filters: ReportFilters) -> int:
    return db.session.scalar(select(func.count()).select_from(
        reports.report_query(filters).order_by(None).subquery())) or 0


def _line(name: str, rows: int, seconds: float, floor: float | None, size: int) -> str:
    rate = rows / seconds if seconds else 0.0
    ratio = f"{rate / floor:6.1%} of COPY" if floor else "   (the floor)"
    return (f"  {name:44} {rows:>11,} rows {seconds:8.2f} s {rate:>11,.0f} rows/s  "
            f"{ratio}  {size / 2**20:8.1f} MiB")


def _bench_password(app) -> str:
    password = secrets.token_urlsafe(16)
    with app.app_context():
        user = db.session.scalar(select(StaffUser).where(StaffUser.email == BENCH_EMAIL))
        if user is None:
            staff.create_staff(email=BENCH_EMAIL, name="Export benchmark", role="finance",
                               password=password, actor=None)
        else:
            user.password_hash = staff.hash_password(password)
        db.session.commit()
    return password


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _through_gunicorn(password: str) -> tuple[float, int, str]:
    """The whole export served by gunicorn (production settings) to a signed-in client."""
    port = _free_port()
    # two workers count sign-ins in a shared store, as in production
    env = {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0", **os.environ, **ENVIRONMENT,
           "BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(PROJECT),
           "BACKOFFICE_RATELIMIT_KEY_PREFIX": f"bench-{secrets.token_hex(4)}"}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115  # closed with the process below
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c",
                               str(PROJECT / "gunicorn.conf.py"), "app:app"],
                              cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                login_page = opener.open(base + "/login", timeout=5).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log.seek(0)
                    raise SystemExit("gunicorn did not start:\n" + log.read()[-3000:]) from None
                time.sleep(0.2)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login_page)
        fields = {"email": BENCH_EMAIL, "password": password,
                  **({"csrf_token": token.group(1)} if token else {})}
        opener.open(base + "/login", urllib.parse.urlencode(fields).encode(), timeout=30).read()
        with opener.open(base + "/admin/billing/report/export.csv", timeout=600) as response:
            if response.headers.get_content_type() != "text/csv":
                raise SystemExit(f"the export answered {response.headers['Content-Type']}")
            return _timed(iter(lambda: response.read(1 << 20), b""))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-rows", type=int, default=1_000_000,
                        help="rows the Python writer exports (it is about ten times slower)")
    parser.add_argument("--no-gunicorn", action="store_true",
                        help="skip the export through gunicorn")
    add_database_argument(parser)
    options = parser.parse_args()
    app = seeded_app(options.database_url)
    password = _bench_password(app)
    print(f"Export against COPY on {app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

    with app.app_context():
        everything = ReportFilters()
        rows = _rows(everything)
        print(f"every transaction ({rows:,} rows):")
        floor_s, floor_size, _ = _timed(_floor(everything))
        floor_rate = rows / floor_s
        print(_line("COPY of the rows, unformatted (floor)", rows, floor_s, None, floor_size))
        seconds, size, _ = _timed(reports.stream_csv(everything))
        print(_line("export, in process (COPY, formatted in SQL)", rows, seconds, floor_rate,
                    size))
        db.session.rollback()
    if not options.no_gunicorn:
        seconds, size, _ = _through_gunicorn(password)
        print(_line("export through gunicorn (2 gthread workers)", rows, seconds, floor_rate,
                    size))

    with app.app_context():
        last = db.session.scalar(select(Transaction.created_at).order_by(
            Transaction.created_at).offset(max(0, options.baseline_rows - 1)).limit(1))
        subset = ReportFilters(date_to=last.date() if last else date.max - timedelta(1))
        count = _rows(subset)
        print(f"the oldest transactions, to {subset.date_to} ({count:,} rows):")
        floor_s, floor_size, _ = _timed(_floor(subset))
        subset_floor = count / floor_s
        print(_line("COPY of the rows, unformatted (floor)", count, floor_s, None, floor_size))
        copy_s, copy_size, copy_hash = _timed(reports.copy_csv(subset))
        print(_line("export, in process (COPY, formatted in SQL)", count, copy_s, subset_floor,
                    copy_size))
        db.session.rollback()
        python_s, python_size, python_hash = _timed(reports.python_csv(subset))
        print(_line("baseline: the Python csv writer", count, python_s, subset_floor,
                    python_size))
        db.session.execute(text("SELECT 1"))
    same = "identical" if copy_hash == python_hash else "DIFFERENT"
    print(f"COPY export and Python writer files: {same} (sha256 {copy_hash[:16]}...); "
          f"COPY export {(count / copy_s) / (count / python_s):.1f}x the Python writer")
    if copy_hash != python_hash:
        sys.exit(1)


if __name__ == "__main__":
    main()
