"""What each role's dashboard shows: its own work queue, anything that went wrong, and the
last twelve months of revenue, refunds and renewals. Reads only.

Every query is bounded: counts over indexed conditions (the refund windows closing, over
``CLOSING_CAP`` + 1 rows at most), lists of at most ``LIST_SIZE`` rows, sums within a date
range. Sums over many months read the finished months' rows (``summaries``): the charts
their ``MonthlyTotal`` rows, what is not invoiced yet the ``CustomerMonthTotal`` rows
still to invoice. Only the rest is summed live, by the partial indexes of migrations 0007
and 0008: the current month, and a finished month the nightly job has not summarized yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import exists, func, select, union_all
from sqlalchemy.orm import joinedload

from .clock import utcnow
from .extensions import db
from .models import (
    CorporateRequest,
    CustomerMonthTotal,
    JobRun,
    JobStatus,
    LegacyAccount,
    MonthlyTotal,
    RequestStatus,
    Reseller,
    ResellerStatus,
    Subscription,
    SubscriptionStatus,
    Transaction,
    TransactionKind,
    TransactionLine,
)
from .money import to_decimal
from .refunds import REFUND_WINDOW
from .summaries import first_of_month, summarized_until, totals_by_month

#: the most rows a dashboard list shows (the page it links to has the rest)
LIST_SIZE = 10
#: how far ahead "closing soon" and "due soon" look
SOON = timedelta(days=7)
#: months in the charts, the current one included
CHART_MONTHS = 12
#: the refund windows closing are counted up to this many, then shown as "1,000+"
CLOSING_CAP = 1_000


def _count(statement) -> int:
    return db.session.scalar(statement) or 0


def _per_currency(statement) -> dict[str, int]:
    """``{currency: amount}`` from a (currency, sum) query, largest first."""
    rows = db.session.execute(statement).all()
    return dict(sorted(((c, int(a or 0)) for c, a in rows), key=lambda r: (-abs(r[1]), r[0])))


# --------------------------------------------------------------------------- support


def support_queue() -> dict:
    """Open corporate requests (oldest first) and legacy balances still to move."""
    open_requests = CorporateRequest.status == RequestStatus.OPEN
    pending = (LegacyAccount.transferred_at.is_(None), LegacyAccount.credit_balance > 0)
    return {
        "open_requests": _count(select(func.count(CorporateRequest.id)).where(open_requests)),
        "oldest_requests": db.session.scalars(
            select(CorporateRequest).where(open_requests)
            .order_by(CorporateRequest.created_at, CorporateRequest.id).limit(LIST_SIZE)).all(),
        "legacy_pending": _count(select(func.count(LegacyAccount.id)).where(*pending)),
        "legacy_pending_total": _per_currency(
            select(LegacyAccount.currency, func.sum(LegacyAccount.credit_balance))
            .where(*pending).group_by(LegacyAccount.currency)),
    }


# --------------------------------------------------------------------------- finance


@dataclass(frozen=True)
class ClosingRefund:
    """A charge whose refund window closes soon and that still has something to refund."""

    transaction: Transaction
    closes_at: datetime


def _refundable_charges(since: datetime, until: datetime):
    """Charges made in [since, until] with a line not fully refunded."""
    open_line = exists().where(TransactionLine.transaction_id == Transaction.id,
                               TransactionLine.refunded_quantity < TransactionLine.quantity)
    return (Transaction.kind == TransactionKind.CHARGE, Transaction.created_at >= since,
            Transaction.created_at <= until, open_line)


def finance_queue(now: datetime | None = None) -> dict:
    """Refund windows closing within a week, what is not invoiced yet, refunds this month,
    and renewals due within a week."""
    now = now or utcnow()
    # A charge made at t can be refunded until t + 30 days (inclusive): closing within a
    # week means made between 30 days ago (still open) and 23 days ago.
    since, until = now - REFUND_WINDOW, now - REFUND_WINDOW + SOON
    closing = _refundable_charges(since, until)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rows = db.session.scalars(
        select(Transaction).where(*closing).options(joinedload(Transaction.customer))
        .order_by(Transaction.created_at, Transaction.id).limit(LIST_SIZE)).all()
    return {
        "closing_count": _count(select(func.count()).select_from(
            select(Transaction.id).where(*closing).limit(CLOSING_CAP + 1).subquery())),
        "closing": [ClosingRefund(t, t.created_at + REFUND_WINDOW) for t in rows],
        "uninvoiced": _uninvoiced(),
        "refunds_this_month": _per_currency(
            select(Transaction.currency, -func.sum(Transaction.amount))
            .where(Transaction.kind == TransactionKind.REFUND,
                   Transaction.created_at >= month_start)
            .group_by(Transaction.currency)),
        "renewals_due": _count(select(func.count(Subscription.id)).where(
            Subscription.status == SubscriptionStatus.ACTIVE, Subscription.auto_renew,
            Subscription.end_date <= (now + SOON).date())),
    }


def _uninvoiced() -> dict[str, int]:
    """What no invoice carries yet, per currency: the customer totals still to invoice,
    and the transactions made since the summaries' mark."""
    since = summarized_until()
    live = select(Transaction.currency, Transaction.amount).where(
        Transaction.invoice_id.is_(None))
    if since is None:
        rows = live.subquery()
    else:
        rows = union_all(
            select(CustomerMonthTotal.currency, CustomerMonthTotal.amount)
            .where(CustomerMonthTotal.invoice_id.is_(None)),
            live.where(Transaction.created_at >= since)).subquery()
    return _per_currency(select(rows.c.currency, func.sum(rows.c.amount))
                         .group_by(rows.c.currency))


# --------------------------------------------------------------------------- admin


def admin_queue() -> dict:
    """Failed or abandoned job runs, items that failed, ledger anomalies, disabled resellers."""
    disabled = Reseller.status == ResellerStatus.DISABLED
    return {
        "failed_runs": db.session.scalars(
            select(JobRun).where(JobRun.status.in_((JobStatus.FAILED, JobStatus.ABANDONED)))
            .order_by(JobRun.id.desc()).limit(5)).all(),
        "item_failures": _item_failures(),
        "anomalies": _latest_anomalies(),
        "disabled_count": _count(select(func.count(Reseller.id)).where(disabled)),
        "disabled_resellers": db.session.scalars(
            select(Reseller).where(disabled)
            .order_by(Reseller.status_changed_at.desc(), Reseller.id.desc())
            .limit(LIST_SIZE)).all(),
    }


def _item_failures() -> list[JobRun]:
    """Each job's latest run when it finished but some of its items failed (retried later)."""
    latest = (
        select(JobRun.job, func.max(JobRun.id).label("id"))
        .where(JobRun.status == JobStatus.SUCCEEDED)
        .group_by(JobRun.job)
        .subquery()
    )
    runs = db.session.scalars(
        select(JobRun).join(latest, latest.c.id == JobRun.id).order_by(JobRun.job)).all()
    return [run for run in runs if (run.details or {}).get("failed")]


def _latest_anomalies() -> list[str]:
    """Anomalies reported by the most recent ledger check."""
    run = db.session.scalar(
        select(JobRun).where(JobRun.job == "ledger_check", JobRun.status == JobStatus.SUCCEEDED)
        .order_by(JobRun.id.desc()).limit(1))
    return list((run.details or {}).get("anomalies", [])) if run else []


# --------------------------------------------------------------------------- charts


@dataclass
class MonthlySeries:
    """Per month (``YYYY-MM``, oldest first): revenue and refunds per currency in minor
    units, and how many renewals were charged."""

    months: list[str]
    revenue: dict[str, list[int]] = field(default_factory=dict)
    refunds: dict[str, list[int]] = field(default_factory=dict)
    renewals: list[int] = field(default_factory=list)

    def for_chart(self) -> dict:
        """The series as the charts take them: amounts in major units (display only)."""
        def major(series: dict[str, list[int]]) -> dict[str, list[str]]:
            return {currency: [str(to_decimal(a, currency)) for a in amounts]
                    for currency, amounts in series.items()}
        return {"months": self.months, "revenue": major(self.revenue),
                "refunds": major(self.refunds), "renewals": self.renewals}


def monthly_series(now: datetime | None = None, months: int = CHART_MONTHS, *,
                   summaries: bool = True) -> MonthlySeries:
    """Revenue (charges), refunds and renewals for the last ``months`` months.

    The days summarized come from the ``MonthlyTotal`` rows, and only the transactions
    made since the summaries' mark (the current day, when the nightly job has run) are
    summed live. ``summaries=False`` sums every month from the transactions. Three
    statements (one with ``summaries=False``), whatever the number of transactions.
    """
    now = now or utcnow()
    this_month = first_of_month(now)
    first = this_month - relativedelta(months=months - 1)
    labels = [f"{(first + relativedelta(months=i)):%Y-%m}" for i in range(months)]
    index = {label: i for i, label in enumerate(labels)}
    summarized: list[tuple] = []
    live_from = first
    if summaries:
        since = summarized_until()
        rows = db.session.execute(
            select(MonthlyTotal.month, MonthlyTotal.currency, MonthlyTotal.kind,
                   MonthlyTotal.amount, MonthlyTotal.renewals)
            .where(MonthlyTotal.month >= first.date())).all()
        if since is not None and since <= now:  # else a past moment: all of it live
            summarized = [(f"{month:%Y-%m}", *rest) for month, *rest in rows]
            live_from = max(first, since)
    live = totals_by_month(Transaction.created_at >= live_from,
                           Transaction.created_at <= now)
    series = MonthlySeries(months=labels, renewals=[0] * months)
    for label, currency, kind, amount, renewals in summarized + live:
        if label not in index:
            continue
        i = index[label]
        target = series.revenue if kind == TransactionKind.CHARGE else series.refunds
        target.setdefault(currency, [0] * months)[i] += abs(int(amount or 0))
        if kind == TransactionKind.CHARGE:
            series.renewals[i] += int(renewals or 0)
    return series
