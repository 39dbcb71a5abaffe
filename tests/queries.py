"""Read-only queries the tests use to check what the domain wrote."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, func, select

from backoffice.extensions import db
from backoffice.models import CreditEntry, Profile


def profile_by_email(email: str) -> Profile | None:
    """The profile with this email (any case), or None."""
    return db.session.scalar(select(Profile).where(Profile.email == (email or "").strip().lower()))


def ledger_sum(profile: Profile) -> int:
    """The sum of a profile's ledger entries (what its balance must equal)."""
    return db.session.scalar(
        select(func.coalesce(func.sum(CreditEntry.amount), 0))
        .where(CreditEntry.profile_id == profile.id)) or 0


@contextmanager
def count_statements() -> Iterator[list[str]]:
    """``with count_statements() as seen:`` collects every SQL statement the block runs on
    ``db.engine`` (inside an app context), for N+1 guards that do not time anything."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _executemany):
        seen.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
