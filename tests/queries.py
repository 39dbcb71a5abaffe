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


class SentStatement(str):
    """One statement sent to the database, with ``parameters``: how many it carried (an
    executemany, or a multi-row INSERT, is one statement: what a round trip costs, not
    how many rows it holds)."""

    parameters: int

    def __new__(cls, sql: str, parameters: int) -> SentStatement:
        statement = super().__new__(cls, sql)
        statement.parameters = parameters
        return statement


@contextmanager
def counted_statements() -> Iterator[list[SentStatement]]:
    """The SQL statements every engine runs while the block runs (savepoints left out):
    ``with counted_statements() as sql: client.get(...)``, then ``len(sql)``; each is
    its text, with ``.parameters``."""
    statements: list[SentStatement] = []

    def count(_conn, _cursor, statement, parameters, _context, _executemany):
        if not statement.lstrip().upper().startswith(_HARNESS):
            statements.append(SentStatement(statement, len(parameters or ())))

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)
