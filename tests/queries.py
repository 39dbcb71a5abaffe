"""Read-only queries the tests use to check what the domain wrote, and a statement counter."""

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
def statements() -> Iterator[list[tuple[str, int]]]:
    """Record every SQL statement the block sends, with its number of parameters.

    An executemany, or a batch of multi-row INSERT, counts once per statement sent to the
    database: what a round trip costs, not how many rows it carries.
    """
    seen: list[tuple[str, int]] = []
    bind = db.session.get_bind()

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        seen.append((statement, len(parameters or ())))

    event.listen(bind, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(bind, "before_cursor_execute", record)
