"""Gap-free counters for document numbers and the audit sequence."""

from __future__ import annotations

from sqlalchemy import select, update

from .clock import utcnow
from .extensions import db
from .models import Counter


def next_value(name: str) -> int:
    """Take the next value of a named counter, locking it until the transaction ends.

    The UPDATE takes the row lock before reading, so two transactions can never get the
    same value, and a rolled-back transaction gives its value back: numbers have no gaps.
    """
    result = db.session.execute(
        update(Counter).where(Counter.name == name).values(value=Counter.value + 1)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]  # an UPDATE's CursorResult
        # First use: create the row. A concurrent creator makes one of us fail on the
        # primary key; that transaction is retried by its caller like any conflict.
        db.session.add(Counter(name=name, value=1))
        db.session.flush()
        return 1
    return db.session.execute(select(Counter.value).where(Counter.name == name)).scalar_one()


def next_number(name: str, prefix: str) -> str:
    """A document number such as ``INV-2026-000042``: prefix, year, counter."""
    return f"{prefix}-{utcnow().year}-{next_value(name):06d}"
