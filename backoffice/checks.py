"""The nightly self-check of the books: balances against ledgers, refunds against
charges, and the audit chain against its checkpoints. It changes nothing in the books;
anomalies go into the job's run record. It ends by writing a checkpoint of the audit
chain's head, which the job commits."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from . import audit
from .extensions import db
from .models import CreditEntry, Profile, TransactionLine


def ledger_check() -> dict:
    """Every balance equals its ledger, no line is over-refunded, the audit chain holds;
    then a checkpoint of the chain head (``audit.write_checkpoint``), flushed, not
    committed.

    Returns counts, a list of anomalies and the checkpoint written ("event N", or "none"
    when the log is empty).
    """
    anomalies = balance_anomalies() + refund_anomalies()
    anomalies += [f"audit event {p.seq}: {p.problem}" for p in audit.verify_chain()]
    profiles = db.session.scalar(select(func.count(Profile.id)))
    lines = db.session.scalar(select(func.count(TransactionLine.id)))
    checkpoint = audit.write_checkpoint(actor_label="job:ledger_check")
    return {"profiles_checked": profiles, "lines_checked": lines, "anomalies": anomalies,
            "checkpoint": f"event {checkpoint.seq}" if checkpoint else "none"}


def balance_anomalies() -> list[str]:
    """Profiles whose credit balance differs from the sum of their ledger."""
    ledger = (
        select(CreditEntry.profile_id, func.coalesce(func.sum(CreditEntry.amount), 0).label("sum"))
        .group_by(CreditEntry.profile_id)
        .subquery()
    )
    mismatches = db.session.execute(
        select(Profile.id, Profile.email, Profile.credit_balance, ledger.c.sum)
        .outerjoin(ledger, ledger.c.profile_id == Profile.id)
        .where(Profile.credit_balance != func.coalesce(ledger.c.sum, 0))
    ).all()
    return [
        f"profile {row.email}: balance {row.credit_balance} but ledger sums to {row.sum or 0}"
        for row in mismatches
    ]


def refund_anomalies() -> list[str]:
    """Charge lines refunded beyond their quantity or amount.

    Both the line's own counters and the refund lines that point at it are checked, so a
    counter that drifted from the refunds actually recorded is found too.
    """
    refund = aliased(TransactionLine)
    refunded = (
        select(refund.refunded_line_id.label("line_id"),
               func.sum(refund.quantity).label("quantity"),
               func.sum(-refund.amount).label("amount"))
        .where(refund.refunded_line_id.is_not(None))
        .group_by(refund.refunded_line_id)
        .subquery()
    )
    charge = TransactionLine
    rows = db.session.execute(
        select(charge.id, charge.transaction_id, charge.quantity, charge.amount,
               charge.refunded_quantity, charge.refunded_amount,
               refunded.c.quantity.label("refund_quantity"),
               refunded.c.amount.label("refund_amount"))
        .outerjoin(refunded, refunded.c.line_id == charge.id)
        .where(charge.refunded_line_id.is_(None), charge.amount >= 0)
        .where((charge.refunded_quantity > charge.quantity)
               | (charge.refunded_amount > charge.amount)
               | (func.coalesce(refunded.c.quantity, 0) > charge.quantity)
               | (func.coalesce(refunded.c.amount, 0) > charge.amount))
        .order_by(charge.id)
    ).all()
    return [
        f"transaction T{r.transaction_id} line {r.id}: {r.quantity} certificates for "
        f"{r.amount}, but refunded {max(r.refunded_quantity, r.refund_quantity or 0)} "
        f"certificates for {max(r.refunded_amount, r.refund_amount or 0)}"
        for r in rows
    ]
