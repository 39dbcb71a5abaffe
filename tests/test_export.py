"""The CSV export on PostgreSQL is written by ``COPY ... TO STDOUT``, byte for byte what the
Python csv writer (the SQLite path) writes for the same rows.

The rows are hostile on purpose: quotes, commas, line breaks, formula starts, empty texts,
unicode, currencies with 0, 2, 3 and 4 decimals, amounts around zero, timestamps with and
without microseconds. Both paths run over the same rows in the same transaction.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text

from backoffice import reports
from backoffice.extensions import db
from backoffice.models import (
    Customer,
    Invoice,
    Reseller,
    StaffRole,
    StaffUser,
    Transaction,
    TransactionKind,
    TransactionReason,
)
from backoffice.reports import CSV_HEADER, ReportFilters, copy_csv, python_csv, stream_csv
from tests import factories

#: every kind of text a cell can make hard to write
HOSTILE = [
    "Plain Co", "Comma, Inc.", 'Quote "Q" Ltd', '"', '""', '"leading quote', "Line\nBreak",
    "CR\rOnly", "CRLF\r\nCo", "trailing newline\n", "=SUM(A1)", "+1", "-2", "@me", "\tTab",
    "\rCR first", "\nLF first", " leading space", "trailing space ", "Apostrophe's",
    "'already quoted", "Ünïcödé – 日本語 😀", "semi;colon", "back\\slash", "\\.", "\\N", "NULL",
    "", " ", "x" * 200, 'a,"b"\n=c', "=", "-", "'", "\u2028separator", "\x7fdel", "\x01ctl",
]

#: currencies of every minor-unit size, and hostile three-character ones
CURRENCIES = ["USD", "JPY", "BHD", "CLF", "EUR", "HUF", "=1+", "-AB", '"Q"', "a,b", "@@@",
              "日本円", "x\ny", ""]

AMOUNTS = [0, 1, 5, 9, 10, 99, 100, 101, 999, 1000, 12345, 10**15, 7, 50]

MOMENTS = [
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2026, 1, 1, 12, 30, 45, 1, tzinfo=UTC),
    datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    datetime(2000, 2, 29, 0, 0, 0, 10, tzinfo=UTC),
    datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
]


def _hostile_rows(rng: random.Random, names: list[str], *, rows: int) -> dict:
    """Resellers, customers, staff, invoices and ``rows`` transactions (charges and refunds)
    whose texts are ``names``, written directly (the verbs would refuse most of them)."""
    product = factories.catalog("billing")
    holder = factories.subscribe(factories.customer("Holder Ltd"), product, {"DV": 1})
    now = datetime(2026, 3, 1, tzinfo=UTC)
    address = {"address1": "1 Road", "city": "Town", "postal_code": "1", "country": "US",
               "created_at": now}

    def add(table, **values) -> int:
        return db.session.execute(insert(table).values(**values)
                                  .returning(table.c.id)).scalar_one()

    resellers = [None] + [add(Reseller.__table__, company_name=name, status="active",
                              **address) for name in names[:8]]
    customers = [add(Customer.__table__, company_name=name, reseller_id=rng.choice(resellers),
                     administrative_responsibility="partner", currency="USD", **address)
                 for name in names]
    staff = [None] + [add(StaffUser.__table__, email=f"{name}{i}", name="x", password_hash="x",
                          role=StaffRole.FINANCE.value, active=True, created_at=now)
                      for i, name in enumerate(names[:10])] + [
        add(StaffUser.__table__, email="", name="empty", password_hash="x",
            role=StaffRole.ADMIN.value, active=True, created_at=now)]
    invoices = [None] + [add(Invoice.__table__, number=f"{name}{i}", kind="monthly",
                             customer_id=customers[i], period_start=date(2026, 1, 1),
                             billing={}, currency="USD", total=0, issued_at=now)
                         for i, name in enumerate(names[:10])]
    charges = []
    for i in range(rows):
        moment = rng.choice(MOMENTS) + timedelta(seconds=rng.choice([0, 0, 1, 86400]))
        common = {"customer_id": rng.choice(customers), "subscription_id": holder.id,
                  "currency": rng.choice(CURRENCIES), "created_at": moment,
                  "invoice_id": rng.choice(invoices), "actor_id": rng.choice(staff)}
        if charges and i % 3 == 0:
            add(Transaction.__table__, kind="refund", reason="refund",
                refunded_transaction_id=rng.choice(charges), amount=-rng.choice(AMOUNTS),
                **common)
        else:
            charges.append(add(Transaction.__table__, kind="charge",
                               reason=rng.choice(["new_subscription", "renewal",
                                                  "inventory_added"]),
                               amount=rng.choice(AMOUNTS), **common))
    db.session.flush()
    return {"customers": customers, "resellers": resellers[1:]}


def _both(filters: ReportFilters) -> tuple[bytes, bytes]:
    return b"".join(python_csv(filters, batch_size=7)), b"".join(copy_csv(filters))


@pytest.fixture
def postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip("COPY is PostgreSQL's; SQLite exports through the Python writer")


def test_copy_export_is_byte_identical_to_the_python_writer(ctx, postgres_only):
    made = _hostile_rows(random.Random(12), HOSTILE, rows=400)
    python, copied = _both(ReportFilters())
    assert python.count(b"\r\n") > 400
    assert copied == python
    # the file is the one the csv module reads back: header, then every transaction
    rows = list(csv.reader(io.StringIO(python.decode(), newline="")))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == 1 + db.session.scalar(select(func.count(Transaction.id)))
    cells = {cell for row in rows[1:] for cell in row}
    assert {"'=SUM(A1)", "'+1", "'-2", "'@me", "'\tTab", "'\rCR first", "Line\nBreak",
            'a,"b"\n=c', "Ünïcödé – 日本語 😀", "'=1+", "system"} <= cells
    assert "=SUM(A1)" not in cells
    for filters in (ReportFilters(kind=TransactionKind.REFUND),
                    ReportFilters(reason=TransactionReason.RENEWAL),
                    ReportFilters(customer_id=made["customers"][3]),
                    ReportFilters(reseller_id=made["resellers"][2]),
                    ReportFilters(date_from=date(2026, 1, 1), date_to=date(2026, 6, 30)),
                    ReportFilters(date_from=date(2099, 12, 31), date_to=date.max)):
        python, copied = _both(filters)
        assert copied == python, filters


def test_copy_export_matches_on_random_texts(ctx, postgres_only):
    """Texts drawn from the hostile characters and unicode, seeded: the same every run."""
    rng = random.Random(20261122)
    alphabet = ',"\r\n\t =+-@\'\\;|.aZ0é日😀\u00a0\u2028'
    names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
             for _ in range(120)]
    _hostile_rows(rng, names, rows=600)
    python, copied = _both(ReportFilters())
    assert copied == python


def test_the_export_streams_through_copy_on_postgresql(activity_rows, client_as,
                                                       postgres_only, monkeypatch):
    """The page's export is the COPY one (the Python writer is not called), and it is the
    same file the Python writer makes."""
    client = client_as("finance")
    calls = []
    monkeypatch.setattr(reports, "csv_row", lambda row: calls.append(row))
    response = client.get("/admin/billing/report/export.csv")
    assert response.status_code == 200 and response.is_streamed
    body = response.get_data()
    assert not calls
    monkeypatch.undo()
    with client.application.app_context():
        assert body == b"".join(python_csv(ReportFilters()))
    assert len(list(csv.reader(io.StringIO(body.decode(), newline="")))) == 1 + activity_rows


@pytest.fixture
def activity_rows(appctx) -> int:
    """Committed hostile rows for the page (requests run on their own sessions)."""
    with appctx() as session:
        _hostile_rows(random.Random(3), HOSTILE[:20], rows=60)
        session.commit()
        return session.scalar(select(func.count(Transaction.id)))


def test_stream_csv_picks_the_writer_of_the_database(ctx, is_postgres):
    _hostile_rows(random.Random(5), HOSTILE[:12], rows=30)
    assert b"".join(stream_csv(ReportFilters())) == b"".join(python_csv(ReportFilters()))


def test_a_copy_export_closed_early_leaves_the_connection_usable(ctx, postgres_only,
                                                                 monkeypatch):
    """The client went away: the COPY is cancelled, and after the rollback that ends every
    request the same connection answers again."""
    _hostile_rows(random.Random(7), ["A", "B"], rows=300)
    monkeypatch.setattr(reports, "COPY_CHUNK_ROWS", 2)
    chunks = copy_csv(ReportFilters())
    assert next(chunks).startswith(b"transaction,created_at")
    assert next(chunks)
    connection = db.session.connection().connection.dbapi_connection
    chunks.close()
    db.session.rollback()
    assert db.session.connection().connection.dbapi_connection is connection
    assert db.session.execute(text("SELECT 1")).scalar_one() == 1


def test_copy_chunks_are_bounded(ctx, postgres_only, monkeypatch):
    _hostile_rows(random.Random(9), ["Acme", 'Q"uote'], rows=200)
    monkeypatch.setattr(reports, "COPY_CHUNK_ROWS", 7)
    chunks = list(copy_csv(ReportFilters()))
    assert len(chunks) == 1 + -(-201 // 7)  # the header, then 7 rows a chunk
    assert all(len(list(csv.reader(io.StringIO(c.decode(), newline="")))) <= 7
               for c in chunks[1:])
    assert b"".join(chunks) == b"".join(python_csv(ReportFilters()))
