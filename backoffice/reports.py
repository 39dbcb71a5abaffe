"""Transaction reports: filters, totals per currency and a streamed CSV export.

The export reads rows in batches through a server-side cursor (``yield_per``) and writes
them as they come, so its memory stays flat however many rows match. Cells that a
spreadsheet would run as a formula (starting with ``= + - @``, tab or CR) are escaped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from dateutil.relativedelta import relativedelta
from sqlalchemy import ColumnElement, Select, String, case, func, select, type_coerce

from .errors import InvalidInput
from .extensions import db
from .models import (
    Customer,
    Invoice,
    Reseller,
    StaffUser,
    Transaction,
    TransactionKind,
    TransactionReason,
)
from .money import minor_digits

#: a cell starting with one of these is read as a formula by spreadsheets
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_FORMULA_STARTS = frozenset(FORMULA_PREFIXES)

CSV_HEADER = ("transaction", "created_at", "kind", "reason", "customer_id", "customer",
              "reseller", "subscription", "refunded_transaction", "amount", "currency",
              "amount_minor", "invoice", "actor")


def escape_cell(value) -> str:
    """A CSV cell safe to open in a spreadsheet.

    Numbers stay numbers (a refund's ``-12.50`` is an amount, not a formula); any text
    starting with ``= + - @``, tab or CR gets a leading apostrophe so it is shown as text.
    """
    if value is None:
        return ""
    if type(value) is str:
        return "'" + value if value[:1] in _FORMULA_STARTS else value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


@dataclass(frozen=True)
class ReportFilters:
    """What a transaction report covers; every field is optional, and a start date after
    the end date is refused."""

    date_from: date | None = None  # inclusive
    date_to: date | None = None  # inclusive
    customer_id: int | None = None
    reseller_id: int | None = None
    kind: TransactionKind | None = None
    reason: TransactionReason | None = None

    def __post_init__(self) -> None:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidInput("The start date is after the end date.")

    def as_args(self) -> dict[str, str]:
        """The filters as query-string arguments (for links such as the export)."""
        values = {"date_from": self.date_from, "date_to": self.date_to,
                  "customer_id": self.customer_id, "reseller_id": self.reseller_id,
                  "kind": self.kind.value if self.kind else None,
                  "reason": self.reason.value if self.reason else None}
        return {k: str(v) for k, v in values.items() if v is not None}

    def conditions(self) -> list:
        conditions = []
        if self.date_from:
            conditions.append(Transaction.created_at >= _midnight(self.date_from))
        if self.date_to and self.date_to < date.max:  # nothing is after the last day
            conditions.append(Transaction.created_at < _midnight(self.date_to + timedelta(1)))
        if self.customer_id:
            conditions.append(Transaction.customer_id == self.customer_id)
        if self.reseller_id:
            conditions.append(Customer.reseller_id == self.reseller_id)
        if self.kind:
            conditions.append(Transaction.kind == self.kind)
        if self.reason:
            conditions.append(Transaction.reason == self.reason)
        return conditions


#: the longest date range the report page totals and lists, in days (both ends included)
MAX_REPORT_DAYS = 366


def within_a_year(filters: ReportFilters, today: date) -> ReportFilters:
    """The filters with a date range of at most MAX_REPORT_DAYS, so the report's totals
    read a bounded slice of the transactions (an index range) at any table size.

    No dates: the current month. Only a start: a year from it; only an end: the year up
    to it. A longer range is refused.
    """
    start, end = filters.date_from, filters.date_to
    if start is None and end is None:
        start = today.replace(day=1)
        end = start + relativedelta(months=1) - timedelta(days=1)
    elif end is None:
        assert start is not None
        end = start + relativedelta(years=1) - timedelta(days=1)
    elif start is None:
        start = end - relativedelta(years=1) + timedelta(days=1)
    if (end - start).days + 1 > MAX_REPORT_DAYS:
        raise InvalidInput(f"Choose dates at most a year apart ({MAX_REPORT_DAYS} days); "
                           "the export takes any range.")
    return replace(filters, date_from=start, date_to=end)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def report_query(filters: ReportFilters) -> Select:
    """The report's rows, oldest first: one per transaction, with who acted."""
    return (
        select(Transaction.id, Transaction.created_at,
               # plain strings: the values are fixed names, and the export reads millions
               type_coerce(Transaction.kind, String).label("kind"),
               type_coerce(Transaction.reason, String).label("reason"),
               Transaction.customer_id, Customer.company_name.label("customer"),
               Reseller.company_name.label("reseller"), Transaction.subscription_id,
               Transaction.refunded_transaction_id, Transaction.amount, Transaction.currency,
               Invoice.number.label("invoice"), StaffUser.email.label("actor"))
        .join(Customer, Customer.id == Transaction.customer_id)
        .outerjoin(Reseller, Reseller.id == Customer.reseller_id)
        .outerjoin(Invoice, Invoice.id == Transaction.invoice_id)
        .outerjoin(StaffUser, StaffUser.id == Transaction.actor_id)
        .where(*filters.conditions())
        .order_by(Transaction.created_at, Transaction.id)
    )


@dataclass(frozen=True)
class CurrencyTotal:
    """A report's totals in one currency, minor units."""

    currency: str
    count: int
    charges: int
    refunds: int  # negative or zero

    @property
    def net(self) -> int:
        return self.charges + self.refunds


def report_totals(filters: ReportFilters) -> list[CurrencyTotal]:
    """Charges, refunds and net per currency for the filtered transactions."""
    charge = Transaction.kind == TransactionKind.CHARGE
    rows = db.session.execute(
        select(Transaction.currency, func.count(Transaction.id),
               func.coalesce(func.sum(case((charge, Transaction.amount), else_=0)), 0),
               func.coalesce(func.sum(case((charge, 0), else_=Transaction.amount)), 0))
        .join(Customer, Customer.id == Transaction.customer_id)
        .where(*filters.conditions())
        .group_by(Transaction.currency).order_by(Transaction.currency)
    ).all()
    return [CurrencyTotal(c, int(n), int(ch), int(rf)) for c, n, ch, rf in rows]


def report_page(filters: ReportFilters, *, where: ColumnElement[bool] | None = None,
                order_by=None, limit: int = 100) -> list:
    """One page of the report for the screen (the export has every row): newest first
    unless ``order_by`` says otherwise, from a position (``where``, e.g. older than a
    given transaction), so any page reads ``limit`` rows off an index."""
    query = report_query(filters).order_by(None).order_by(
        *(order_by or (Transaction.created_at.desc(), Transaction.id.desc())))
    if where is not None:
        query = query.where(where)
    return list(db.session.execute(query.limit(limit)).all())


@lru_cache(maxsize=64)
def _minor_digits(currency: str) -> int:
    return minor_digits(currency)


def _major(amount: int, currency: str) -> str:
    """Minor units as a plain decimal number, e.g. -10000 USD -> ``-100.00``."""
    digits = _minor_digits(currency)
    if not digits:
        return str(amount)
    whole, part = divmod(abs(amount), 10**digits)
    return f"{'-' if amount < 0 else ''}{whole}.{part:0{digits}d}"


def csv_row(row) -> tuple:
    """One report row as CSV cells; every free-text cell is escaped against formulas."""
    (ident, created_at, kind, reason, customer_id, customer, reseller, subscription_id,
     refunded_id, amount, currency, invoice, actor) = row
    return (ident, created_at.isoformat(), kind, reason, customer_id, escape_cell(customer),
            escape_cell(reseller), subscription_id, refunded_id, _major(amount, currency),
            escape_cell(currency), amount, escape_cell(invoice), escape_cell(actor or "system"))


def stream_csv(filters: ReportFilters, *, batch_size: int = 2000) -> Iterator[str]:
    """The report as CSV text, a chunk per batch of rows, never holding every row.

    ``yield_per`` fetches ``batch_size`` rows at a time (a server-side cursor on
    PostgreSQL), and each chunk is written and handed on before the next is read. The
    query runs on the session's connection as plain Core, without ORM row processing.
    The query is built before the first chunk, so filters it cannot use fail here, not
    halfway through a download.
    """
    return _stream_csv(report_query(filters), batch_size)


def _stream_csv(query: Select, batch_size: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    yield buffer.getvalue()
    result = db.session.connection().execute(query,
                                             execution_options={"yield_per": batch_size})
    try:
        for partition in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(map(csv_row, partition))
            yield buffer.getvalue()
    finally:
        result.close()
