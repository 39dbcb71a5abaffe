"""Sums of finished days, read instead of their transactions.

A finished UTC day never changes: transactions are dated when made and keep their
amount. So each day's transactions are added once to per-month rows, ``SETTLE`` after the
day ended (a transaction dated just before midnight and committed just after is in
them), by :func:`summarize_finished_days`, which the nightly ledger check job,
``flask seed-scale`` and the demo seed run:

- ``MonthlyTotal``, per month, currency and kind: the dashboard's twelve-month charts
  and the transaction report's totals;
- ``CustomerMonthTotal``, per partner customer, month, currency and invoice: what is
  still to invoice (the Monthly invoices page, the review of a month, the dashboard).
  Issuing an invoice marks the rows it carries (:func:`mark_invoiced`).

``SummaryMark`` says how far they go: readers sum the rows, then only the transactions
made since the mark (:func:`summarized_until`), at most a day and a bit when the nightly
job runs. A run locks the mark, adds the days after it and moves it, in one transaction,
so each day is added exactly once whatever runs at the same time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple, cast

from sqlalchemy import Date, bindparam, case, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult

from .clock import utcnow
from .extensions import db
from .models import (
    CustomerMonthTotal,
    MonthlyTotal,
    SummaryMark,
    Transaction,
    TransactionReason,
)

#: how long after a day ends its transactions are summed
SETTLE = timedelta(hours=1)


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _insert():
    return pg_insert if _postgresql() else sqlite_insert


def month_of(column):
    """The UTC month of a timestamp column as ``YYYY-MM``, as the database can group by it."""
    if _postgresql():
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _first_day_of(column):
    """The UTC month of a timestamp column as a date, its first day."""
    if _postgresql():
        return func.date_trunc("month", func.timezone("UTC", column)).cast(Date)
    return func.strftime("%Y-%m-01", column)


def first_of_month(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def totals_by_month(*conditions) -> list[tuple]:
    """(``YYYY-MM``, currency, kind, signed sum, renewals) of the transactions matching
    ``conditions``, per month, currency and kind."""
    month = month_of(Transaction.created_at).label("month")
    return [tuple(row) for row in db.session.execute(
        select(month, Transaction.currency, Transaction.kind,
               func.sum(Transaction.amount),
               func.sum(case((Transaction.reason == TransactionReason.RENEWAL, 1), else_=0)))
        .where(*conditions)
        .group_by(month, Transaction.currency, Transaction.kind)).all()]


def summarized_until() -> datetime | None:
    """The summaries hold every transaction made before this instant and none after;
    None before the first run."""
    return db.session.scalar(select(SummaryMark.until).where(SummaryMark.id == 1))


def _lock_mark() -> SummaryMark:
    """The mark's row, created if need be and locked until the transaction ends."""
    db.session.execute(_insert()(SummaryMark).values(id=1, until=None)
                       .on_conflict_do_nothing())
    return db.session.scalars(select(SummaryMark).where(SummaryMark.id == 1)
                              .with_for_update()).one()


class Written(NamedTuple):
    """How many rows :func:`summarize_finished_days` added or added to, per table."""

    monthly_totals: int
    customer_month_totals: int


def summarize_finished_days(now: datetime | None = None) -> Written:
    """Add the transactions of every day finished ``SETTLE`` ago or more and not summed
    yet (all of them the first time) to the month rows, and move the mark past them.
    Running it again adds nothing; it does not commit.
    """
    until = midnight(((now or utcnow()) - SETTLE).date())
    mark = _lock_mark()
    if mark.until is not None and mark.until >= until:
        return Written(0, 0)
    days = [Transaction.created_at < until]
    if mark.until is not None:
        days.append(Transaction.created_at >= mark.until)
    written = Written(_add_monthly_totals(days), _add_customer_month_totals(days))
    mark.until = until
    db.session.flush()
    return written


def _count(statement) -> int:
    """Run an INSERT … SELECT; how many rows it wrote or added to, counted in the
    database on PostgreSQL rather than every row's key sent back."""
    if not _postgresql():
        return cast(CursorResult, db.session.execute(statement)).rowcount
    written = statement.returning(literal(1)).cte("written")
    return db.session.scalar(select(func.count()).select_from(written)) or 0


def _add_monthly_totals(days: list) -> int:
    month = _first_day_of(Transaction.created_at)
    grouped = (
        select(month, Transaction.currency, Transaction.kind, func.sum(Transaction.amount),
               func.sum(case((Transaction.reason == TransactionReason.RENEWAL, 1), else_=0)),
               func.count(Transaction.id))
        .where(*days).group_by(month, Transaction.currency, Transaction.kind))
    insert = _insert()(MonthlyTotal).from_select(
        ["month", "currency", "kind", "amount", "renewals", "transactions"], grouped)
    return _count(insert.on_conflict_do_update(
        index_elements=["month", "currency", "kind"],
        set_={"amount": MonthlyTotal.amount + insert.excluded.amount,
              "renewals": MonthlyTotal.renewals + insert.excluded.renewals,
              "transactions": MonthlyTotal.transactions + insert.excluded.transactions}))


def _add_customer_month_totals(days: list) -> int:
    """Two INSERT … SELECT: the days' transactions not invoiced, and those invoiced
    already (a day summed after its month was issued), each against its own unique
    index, grouped in the database."""
    month = _first_day_of(Transaction.created_at)
    columns = ["customer_id", "month", "currency", "invoice_id", "transactions", "amount"]
    written = 0
    for invoiced in (False, True):
        carried = (Transaction.invoice_id.is_not(None) if invoiced
                   else Transaction.invoice_id.is_(None))
        grouped = (
            select(Transaction.customer_id, month, Transaction.currency,
                   Transaction.invoice_id, func.count(Transaction.id),
                   func.sum(Transaction.amount))
            .where(*days, carried)
            .group_by(Transaction.customer_id, month, Transaction.currency,
                      Transaction.invoice_id))
        insert = _insert()(CustomerMonthTotal).from_select(columns, grouped)
        row_carried = (CustomerMonthTotal.invoice_id.is_not(None) if invoiced
                       else CustomerMonthTotal.invoice_id.is_(None))
        written += _count(insert.on_conflict_do_update(
            index_elements=["customer_id", "month", "currency",
                            *(["invoice_id"] if invoiced else [])],
            index_where=row_carried,
            set_={"transactions": CustomerMonthTotal.transactions
                  + insert.excluded.transactions,
                  "amount": CustomerMonthTotal.amount + insert.excluded.amount}))
    return written


def mark_invoiced(month: date, carried: list[tuple[int, int]]) -> None:
    """Give the rows each (customer, invoice) of ``carried`` still had to invoice, for
    ``month`` and before, that invoice: it carries every transaction of the customer not
    invoiced and made before ``month`` ended. Runs with the invoices' own writes, under
    the mark's lock, so that no summary run adds to the rows meanwhile."""
    if not carried:
        return
    _lock_mark()
    table = CustomerMonthTotal.__table__
    db.session.execute(
        update(table)
        .where(table.c.customer_id == bindparam("carried_customer"),
               table.c.invoice_id.is_(None), table.c.month <= month)
        .values(invoice_id=bindparam("carrying_invoice")),
        [{"carried_customer": customer_id, "carrying_invoice": invoice_id}
         for customer_id, invoice_id in carried])
