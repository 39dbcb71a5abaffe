"""Gap-free counters for document numbers and the audit sequence."""

from __future__ import annotations

from sqlalchemy import select, update

from .clock import utcnow
from .extensions import db
from .models import Counter


def reserve_block(name: str, count: int) -> int:
    """Take the next ``count`` values of a named counter at once; returns the first.

    The values are ``first .. first + count - 1``. One UPDATE takes the row lock before
    reading, so two transactions can never get the same value, and the lock is held until
    the transaction ends: a rolled-back transaction gives its whole block back, so numbers
    have no gaps. A block costs the same two statements whatever its size.
    """
    if count < 1:
        raise ValueError("a block holds at least one value")
    result = db.session.execute(
        update(Counter).where(Counter.name == name).values(value=Counter.value + count)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]  # an UPDATE's CursorResult
        # First use: create the row. A concurrent creator makes one of us fail on the
        # primary key; that transaction is retried by its caller like any conflict.
        db.session.add(Counter(name=name, value=count))
        db.session.flush()
        return 1
    last = db.session.execute(select(Counter.value).where(Counter.name == name)).scalar_one()
    return last - count + 1


def next_value(name: str) -> int:
    """Take the next value of a named counter, locking it until the transaction ends."""
    return reserve_block(name, 1)


def format_number(prefix: str, value: int) -> str:
    """A document number such as ``INV-2026-000042``: prefix, year of issue, counter."""
    return f"{prefix}-{utcnow().year}-{value:06d}"


def next_number(name: str, prefix: str) -> str:
    """The next document number of a counter (see :func:`format_number`)."""
    return format_number(prefix, next_value(name))
