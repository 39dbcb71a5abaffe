"""Transaction reports: filters, totals per currency and a streamed CSV export.

The export streams, so its memory stays flat however many rows match. On PostgreSQL the
database writes the CSV itself (``COPY (SELECT ...) TO STDOUT``): the cells are formatted
and escaped in SQL and the rows are handed on in blocks as they arrive. Elsewhere (SQLite)
Python's csv writer formats rows read in batches through ``yield_per``. Both give the
same bytes: UTF-8 without a BOM, CRLF line ends, minimal quoting. Cells that a
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
from itertools import islice
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    String,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    type_coerce,
)
from sqlalchemy.engine import Dialect

from . import summaries
from .errors import InvalidInput
from .extensions import db
from .models import (
    Customer,
    Invoice,
    MonthlyTotal,
    Reseller,
    StaffUser,
    Transaction,
    TransactionKind,
    TransactionReason,
)
from .money import DEFAULT_MINOR_DIGITS, minor_digits, minor_digits_exceptions

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
    return _report_select(
        filters, Transaction.id, Transaction.created_at,
        # plain strings: the values are fixed names, and the export reads millions
        type_coerce(Transaction.kind, String).label("kind"),
        type_coerce(Transaction.reason, String).label("reason"),
        Transaction.customer_id, Customer.company_name.label("customer"),
        Reseller.company_name.label("reseller"), Transaction.subscription_id,
        Transaction.refunded_transaction_id, Transaction.amount, Transaction.currency,
        Invoice.number.label("invoice"), StaffUser.email.label("actor"))


def _report_select(filters: ReportFilters, *columns) -> Select:
    """``columns`` of the filtered transactions joined to who they concern, oldest first."""
    return (
        select(*columns)
        .select_from(Transaction)
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
    """Charges, refunds and net per currency for the filtered transactions.

    Filtered by dates (and kind) alone, the whole months of the range that the
    summaries hold come from their ``MonthlyTotal`` rows, and only the rest of the range
    (a partial month at either end, the hours since the summaries' mark) is summed from
    the transactions; any other filter sums the transactions of the range.
    """
    totals: dict[str, list[int]] = {}
    conditions = filters.conditions()
    #: the ranges summed from the transactions, each an index range of its own
    live_ranges = [conditions]
    months = _summarized_months(filters)
    if months is not None:
        first, last, covered_from, covered_until = months
        rows = db.session.execute(
            select(MonthlyTotal.currency, MonthlyTotal.kind,
                   func.sum(MonthlyTotal.transactions), func.sum(MonthlyTotal.amount))
            .where(MonthlyTotal.month >= first, MonthlyTotal.month <= last,
                   *([MonthlyTotal.kind == filters.kind] if filters.kind else []))
            .group_by(MonthlyTotal.currency, MonthlyTotal.kind))
        for currency, kind, count, amount in rows:
            total = totals.setdefault(currency, [0, 0, 0])
            total[0] += int(count or 0)
            total[1 if kind == TransactionKind.CHARGE else 2] += int(amount or 0)
        live_ranges = [[*conditions, Transaction.created_at < covered_from],
                       [*conditions, Transaction.created_at >= covered_until]]
    charge = Transaction.kind == TransactionKind.CHARGE
    for live in live_ranges:
        query = (
            select(Transaction.currency, func.count(Transaction.id),
                   func.coalesce(func.sum(case((charge, Transaction.amount), else_=0)), 0),
                   func.coalesce(func.sum(case((charge, 0), else_=Transaction.amount)), 0))
            .where(*live).group_by(Transaction.currency))
        if filters.reseller_id:
            query = query.join(Customer, Customer.id == Transaction.customer_id)
        for currency, count, charges, refunds in db.session.execute(query):
            total = totals.setdefault(currency, [0, 0, 0])
            total[0] += int(count)
            total[1] += int(charges)
            total[2] += int(refunds)
    return [CurrencyTotal(currency, *totals[currency]) for currency in sorted(totals)
            if totals[currency][0]]


def _summarized_months(filters: ReportFilters
                       ) -> tuple[date, date, datetime, datetime] | None:
    """The first and last months whose summary rows lie wholly within the filters' date
    range, and the span they cover (the last one's ends at the summaries' mark if that
    comes first); None when no month does, or another filter than the dates and kind is
    set."""
    if (filters.customer_id or filters.reseller_id or filters.reason
            or filters.date_from is None or filters.date_to is None
            or filters.date_to >= date.max):
        return None
    mark = summaries.summarized_until()
    if mark is None:
        return None
    end = _midnight(filters.date_to + timedelta(days=1))
    month = filters.date_from.replace(day=1)
    if month < filters.date_from:
        month += relativedelta(months=1)
    months: list[date] = []
    while _midnight(month) < mark and min(_midnight(month + relativedelta(months=1)),
                                          mark) <= end:
        months.append(month)
        month += relativedelta(months=1)
    if not months:
        return None
    covered_until = min(_midnight(months[-1] + relativedelta(months=1)), mark)
    return months[0], months[-1], _midnight(months[0]), covered_until


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


def stream_csv(filters: ReportFilters, *, batch_size: int = 2000) -> Iterator[bytes]:
    """The report as CSV bytes, a chunk at a time, never holding every row.

    On PostgreSQL the database writes the file (:func:`copy_csv`); elsewhere Python does
    (:func:`python_csv`). The two give the same bytes. The query is built before the
    first chunk, so filters it cannot use fail here, not halfway through a download.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return copy_csv(filters)
    return python_csv(filters, batch_size=batch_size)


def _header() -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(CSV_HEADER)
    return buffer.getvalue().encode()


def python_csv(filters: ReportFilters, *, batch_size: int = 2000) -> Iterator[bytes]:
    """The report written by Python's csv writer from rows read ``batch_size`` at a time.

    ``yield_per`` fetches the rows in batches (a server-side cursor on PostgreSQL), and
    each chunk is written and handed on before the next is read. The query runs on the
    session's connection as plain Core, without ORM row processing.
    """
    return _python_csv(report_query(filters), batch_size)


def _python_csv(query: Select, batch_size: int) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    yield _header()
    result = db.session.connection().execute(query,
                                             execution_options={"yield_per": batch_size})
    try:
        for partition in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(map(csv_row, partition))
            yield buffer.getvalue().encode()
    finally:
        result.close()


# --------------------------------------------------------------------------- COPY export

#: how many rows the COPY export gathers before handing a chunk on (about 128 KiB)
COPY_CHUNK_ROWS = 1000


def _constant(text: str):
    """A fixed text written into the SQL as a string literal (a constant list, not bound
    parameters)."""
    return literal_column("'" + text.replace("'", "''") + "'", String)


#: the code points of FORMULA_PREFIXES, as SQL constants (``ascii()`` of a text is the
#: code point of its first character)
_FORMULA_CODES: list[Any] = [literal_column(str(ord(prefix))) for prefix in FORMULA_PREFIXES]


def _text_cell(value, *, empty: Any = None):
    """SQL for :func:`escape_cell` of a text value, as the csv writer writes it: formula
    starts get an apostrophe, and an empty text is ``empty`` (NULL by default: COPY would
    quote an empty string as ``""``; the csv writer writes nothing)."""
    empty = null() if empty is None else empty
    return case((value == _constant(""), empty),
                (func.ascii(value).in_(_FORMULA_CODES), _constant("'") + value),
                else_=value)


def _iso_utc(moment):
    """SQL for ``created_at.isoformat()`` of a UTC timestamp: microseconds only when not
    zero, and the ``+00:00`` offset."""
    utc = func.timezone(_constant("UTC"), moment)
    return (func.to_char(utc, _constant('YYYY-MM-DD"T"HH24:MI:SS'), type_=String)
            + case((utc == func.date_trunc(_constant("second"), utc), _constant("")),
                   else_=func.to_char(utc, _constant(".US"), type_=String))
            + _constant("+00:00"))


def _major_sql(amount: Any, currency: Any) -> Any:
    """SQL for :func:`_major`: minor units as a plain decimal in the currency's digits
    (an exact numeric product keeps its scale: -5 x 0.01 is ``-0.05``)."""
    def plain(digits: int):
        if not digits:
            return cast(amount, String)
        return cast(amount * literal_column("0." + "0" * (digits - 1) + "1", Numeric), String)

    groups: dict[int, list[str]] = {}
    for code, digits in sorted(minor_digits_exceptions().items()):
        groups.setdefault(digits, []).append(code)
    if not groups:
        return plain(DEFAULT_MINOR_DIGITS)
    ordered = sorted(groups.items())

    def among(codes: list[str]):
        return currency.in_([_constant(code) for code in codes])

    # one lookup for the common case (the default digits), then which exception it is
    other = case(*((among(codes), plain(digits)) for digits, codes in ordered[:-1]),
                 else_=plain(ordered[-1][0])) if len(ordered) > 1 else plain(ordered[0][0])
    return case((among([code for _digits, codes in ordered for code in codes]), other),
                else_=plain(DEFAULT_MINOR_DIGITS))


def export_query(filters: ReportFilters) -> Select:
    """The report's rows as the CSV cells :func:`csv_row` makes, computed in SQL
    (PostgreSQL), for ``COPY ... TO STDOUT``."""
    return _report_select(
        filters, Transaction.id, _iso_utc(Transaction.created_at),
        type_coerce(Transaction.kind, String), type_coerce(Transaction.reason, String),
        Transaction.customer_id, _text_cell(Customer.company_name),
        _text_cell(Reseller.company_name), Transaction.subscription_id,
        Transaction.refunded_transaction_id, _major_sql(Transaction.amount, Transaction.currency),
        _text_cell(Transaction.currency), Transaction.amount, _text_cell(Invoice.number),
        case((StaffUser.email.is_(None), _constant("system")),
             else_=_text_cell(StaffUser.email, empty=_constant("system"))))


def copy_statement(query: Select, dialect: Dialect) -> tuple[str, dict]:
    """``COPY (query) TO STDOUT`` as CSV, and its parameters, converted as SQLAlchemy
    would bind them (UTC timestamps, enum values), for psycopg to merge client-side."""
    compiled = query.compile(dialect=dialect)
    params = {}
    for name, value in compiled.params.items():
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        params[name] = processor(value) if processor else value
    return f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)", params


def copy_csv(filters: ReportFilters) -> Iterator[bytes]:
    """The report as PostgreSQL writes it with ``COPY ... TO STDOUT``: byte for byte what
    :func:`python_csv` writes.

    The rows arrive one per COPY message; they are gathered into chunks of
    ``COPY_CHUNK_ROWS`` and handed on, so nothing waits for the whole file. The COPY
    runs on the session's own connection and transaction. Closing the stream early (the
    client went away) cancels the COPY and leaves the connection usable once the
    transaction is rolled back, as the end of every request does.
    """
    statement, params = copy_statement(export_query(filters), db.session.get_bind().dialect)
    return _copy_csv(statement, params)


def _copy_csv(statement: str, params: dict) -> Iterator[bytes]:
    yield _header()
    raw: Any = db.session.connection().connection.dbapi_connection  # psycopg's Connection
    encoding = raw.info.encoding
    with raw.cursor() as cursor, cursor.copy(statement, params) as copy:
        rows = iter(copy)
        # each row copied out of libpq's buffer at once: holding hundreds of memoryviews
        # until the chunk is joined costs twice the CPU of the whole read loop
        while chunk := list(map(bytes, islice(rows, COPY_CHUNK_ROWS))):
            yield _crlf(chunk, encoding)


def _crlf(rows: list, encoding: str) -> bytes:
    """COPY's rows (each ending with ``\n``) as the csv writer's lines (``\r\n``), in UTF-8.

    A line feed inside a cell is only ever inside quotes, so a block with no quote at all
    has only row ends, and is converted in one go; otherwise row by row.
    """
    data = b"".join(rows)
    if b'"' not in data:
        data = data.replace(b"\n", b"\r\n")
    else:
        data = b"\r\n".join(row[:-1] for row in rows) + b"\r\n"
    if encoding != "utf-8":
        data = data.decode(encoding).encode()
    return data
