"""Row locks for read-then-write operations (DESIGN.md, "Concurrency").

On PostgreSQL ``lock`` is ``SELECT ... FOR UPDATE``; on SQLite the write transaction
already began with ``BEGIN IMMEDIATE``, so the row is re-read and nobody else can write.
Either way the returned object holds the values committed last, not a stale copy.
"""

from __future__ import annotations

from typing import TypeVar

from .errors import NotFound
from .extensions import db

T = TypeVar("T")


def lock(model: type[T], ident, what: str | None = None) -> T:
    """Lock and re-read one row; raise NotFound (with ``what`` in the message) if it is gone."""
    row = db.session.get(model, ident, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"{what or model.__name__} {ident} no longer exists.")
    return row
