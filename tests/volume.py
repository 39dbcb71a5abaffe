"""Many rows at once, for the tests of lists and pages at size (statement counts, keyset
pages, capped counts): plain INSERTs of rows shaped like the domain's, one statement per
table, where building them one by one through the domain verbs would take minutes.

They keep every constraint of the schema, not the books: no audit events for them, no
ledger arithmetic across entries (audit events themselves are written by
``audit.record``, so the chain holds). Use them where the test is about reading, never for
rules (those go through ``tests/factories.py``). Call inside an app context.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import insert, select

from backoffice import audit
from backoffice.extensions import db
from backoffice.models import (
    CreditEntry,
    Invoice,
    Order,
    Profile,
    Subscription,
    Transaction,
    TransactionLine,
)

#: when bulk rows start, unless a test says otherwise
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _insert(model, rows: list[dict]) -> list[int]:
    """Insert ``rows`` into ``model``'s table in one statement; their ids, in order."""
    if not rows:
        return []
    table = model.__table__
    result = db.session.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [row.id for row in result]


def moments(count: int, *, start: datetime = START, step: timedelta = timedelta(minutes=1),
            ties: int = 1) -> list[datetime]:
    """``count`` moments from ``start``, ``step`` apart, each one ``ties`` times in a row
    (so rows share a sort key and their order comes from their ids)."""
    return [start + step * (i // ties) for i in range(count)]


def transactions(subscription: Subscription, count: int, *, ties: int = 1,
                 start: datetime = START, amount: int = 1_000) -> list[int]:
    """``count`` charges of ``subscription`` (one DV line each), ``ties`` to a moment."""
    certificate_type = subscription.inventory[0].certificate_type_id
    ids = _insert(Transaction, [
        {"customer_id": subscription.customer_id, "subscription_id": subscription.id,
         "kind": "charge", "reason": "renewal", "amount": amount, "currency": "USD",
         "created_at": at}
        for at in moments(count, start=start, ties=ties)])
    _insert(TransactionLine, [
        {"transaction_id": ident, "certificate_type_id": certificate_type, "quantity": 1,
         "amount": amount, "full_amount": amount, "days_charged": 365, "days_in_term": 365,
         "refunded_quantity": 0, "refunded_amount": 0}
        for ident in ids])
    return ids


def profiles(count: int, *, name: str = "Bulk Person", prefix: str = "bulk",
             ties: int = 1) -> list[int]:
    """``count`` storefront profiles named ``name`` (so a sort by name ties)."""
    tag = secrets.token_hex(3)
    return _insert(Profile, [
        {"email": f"{prefix}{i}.{tag}@volume.example", "name": name, "currency": "USD",
         "credit_balance": 0, "created_at": at}
        for i, at in enumerate(moments(count, ties=ties))])


def orders(placed_by: int, count: int, *, paid_by: int | None = None,
           ties: int = 1) -> list[int]:
    """``count`` orders placed by profile ``placed_by`` (paid by ``paid_by``: paid)."""
    tag = secrets.token_hex(3).upper()
    return _insert(Order, [
        {"number": f"ORD-V{tag}-{i:06d}", "placed_by_id": placed_by, "paid_by_id": paid_by,
         "status": "paid" if paid_by else "awaiting_payment",
         "payment_method": "card" if paid_by else None, "paid_at": at if paid_by else None,
         "payment_token": secrets.token_hex(16), "billing": {"name": "Bulk"},
         "currency": "USD", "total": 5_000, "created_at": at}
        for i, at in enumerate(moments(count, ties=ties))])


def invoices(order_ids: list[int]) -> list[int]:
    """An order invoice for each of these orders."""
    tag = secrets.token_hex(3).upper()
    created = db.session.execute(select(Order.id, Order.created_at)
                                 .where(Order.id.in_(order_ids))).all()
    return _insert(Invoice, [
        {"number": f"INV-V{tag}-{i:06d}", "kind": "order", "order_id": ident,
         "billing": {"name": "Bulk"}, "currency": "USD", "total": 5_000, "issued_at": at}
        for i, (ident, at) in enumerate(created)])


def credit_entries(profile: int, count: int, *, ties: int = 1) -> list[int]:
    """``count`` top-ups of 1.00 on profile ``profile``'s ledger."""
    return _insert(CreditEntry, [
        {"profile_id": profile, "amount": 100, "balance_after": 100 * (i + 1),
         "kind": "top_up", "memo": "", "created_at": at}
        for i, at in enumerate(moments(count, ties=ties))])


def audit_events(count: int, *, target, ties: int = 1) -> None:
    """``count`` audit events about ``target`` (a model instance), written by
    ``audit.record`` (the chain stays whole), ``ties`` to a moment."""
    for at in moments(count, ties=ties):
        with time_machine.travel(at, tick=False):
            audit.record(None, "volume.row", target, {}, actor_label="volume")
