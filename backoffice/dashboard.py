"""What the dashboard shows: work waiting for staff and anything that went wrong."""

from __future__ import annotations

from sqlalchemy import func, select

from .extensions import db
from .models import (
    CorporateRequest,
    JobRun,
    JobStatus,
    LegacyAccount,
    RequestStatus,
    Subscription,
    SubscriptionStatus,
)


def summary() -> dict:
    """Counts and recent problems for the dashboard."""
    count = lambda stmt: db.session.scalar(stmt) or 0  # noqa: E731
    return {
        "open_requests": count(
            select(func.count(CorporateRequest.id)).where(
                CorporateRequest.status == RequestStatus.OPEN)),
        "legacy_pending": count(
            select(func.count(LegacyAccount.id)).where(
                LegacyAccount.transferred_at.is_(None), LegacyAccount.credit_balance > 0)),
        "active_subscriptions": count(
            select(func.count(Subscription.id)).where(
                Subscription.status == SubscriptionStatus.ACTIVE)),
        "failed_runs": db.session.scalars(
            select(JobRun).where(JobRun.status == JobStatus.FAILED)
            .order_by(JobRun.started_at.desc()).limit(5)).all(),
        "anomalies": _latest_anomalies(),
        "item_failures": _item_failures(),
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
        .order_by(JobRun.started_at.desc()).limit(1))
    return list((run.details or {}).get("anomalies", [])) if run else []
