"""Read-only queries the tests use to check what the domain wrote, and a counter of the
SQL statements a block of code runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

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


#: statements that are the test harness's, not the page's (the rolled-back test's
#: savepoints)
_HARNESS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    """The SQL statements every engine runs while the block runs (savepoints left out):
    ``with counted_statements() as sql: client.get(...)``, then ``len(sql)``."""
    statements: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _executemany):
        if not statement.lstrip().upper().startswith(_HARNESS):
            statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


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
