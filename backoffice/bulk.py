"""Set-based writes for the jobs' chunks: many rows in a few statements.

SQLAlchemy batches an executemany INSERT into multi-row ``INSERT ... VALUES`` statements
("insertmanyvalues", up to 1,000 rows each) when the statement has RETURNING; without it,
psycopg would send one INSERT per row. So every insert here returns the ids, which also
come back in the order of the rows given.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert

from .extensions import db


def insert_rows(model: type, rows: Sequence[dict]) -> list[int]:
    """Insert ``rows`` (dicts by column name) of ``model``; their new ids, in order."""
    if not rows:
        return []
    table = model.__table__  # type: ignore[attr-defined]
    return list(db.session.scalars(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), list(rows)))
