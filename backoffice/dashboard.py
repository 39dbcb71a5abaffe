"""What each role's dashboard shows: its own work queue, anything that went wrong, and the
last twelve months of revenue, refunds and renewals. Reads only.

Every query is bounded: counts over indexed conditions, lists of at most ``LIST_SIZE``
rows, sums within a date range or over rows not yet invoiced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import joinedload

from .clock import utcnow
from .extensions import db
from .models import (
    CorporateRequest,
    JobRun,
    JobStatus,
    LegacyAccount,
    RequestStatus,
    Reseller,
    ResellerStatus,
    Subscription,
    SubscriptionStatus,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from .money import to_decimal
from .refunds import REFUND_WINDOW

#: the most rows a dashboard list shows (the page it links to has the rest)
LIST_SIZE = 10
#: how far ahead "closing soon" and "due soon" look
SOON = timedelta(days=7)
#: months in the charts, the current one included
CHART_MONTHS = 12


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
        "closing_count": _count(select(func.count(Transaction.id)).where(*closing)),
        "closing": [ClosingRefund(t, t.created_at + REFUND_WINDOW) for t in rows],
        "uninvoiced": _per_currency(
            select(Transaction.currency, func.sum(Transaction.amount))
            .where(Transaction.invoice_id.is_(None)).group_by(Transaction.currency)),
        "refunds_this_month": _per_currency(
            select(Transaction.currency, -func.sum(Transaction.amount))
            .where(Transaction.kind == TransactionKind.REFUND,
                   Transaction.created_at >= month_start)
            .group_by(Transaction.currency)),
        "renewals_due": _count(select(func.count(Subscription.id)).where(
            Subscription.status == SubscriptionStatus.ACTIVE, Subscription.auto_renew,
            Subscription.end_date <= (now + SOON).date())),
    }


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


def _month_of(column):
    """The UTC month of a timestamp column, as the database can group by it."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def monthly_series(now: datetime | None = None, months: int = CHART_MONTHS) -> MonthlySeries:
    """Revenue (charges), refunds and renewals for the last ``months`` months."""
    now = now or utcnow()
    first = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
             - relativedelta(months=months - 1))
    labels = [f"{(first + relativedelta(months=i)):%Y-%m}" for i in range(months)]
    index = {label: i for i, label in enumerate(labels)}
    month = _month_of(Transaction.created_at).label("month")
    rows = db.session.execute(
        select(month, Transaction.currency, Transaction.kind,
               func.sum(Transaction.amount),
               func.sum(case((Transaction.reason == TransactionReason.RENEWAL, 1), else_=0)))
        .where(Transaction.created_at >= first, Transaction.created_at <= now)
        .group_by(month, Transaction.currency, Transaction.kind)).all()
    series = MonthlySeries(months=labels, renewals=[0] * months)
    for label, currency, kind, amount, renewals in rows:
        if label not in index:
            continue
        i = index[label]
        target = series.revenue if kind == TransactionKind.CHARGE else series.refunds
        target.setdefault(currency, [0] * months)[i] += abs(int(amount or 0))
        if kind == TransactionKind.CHARGE:
            series.renewals[i] += int(renewals or 0)
    return series
