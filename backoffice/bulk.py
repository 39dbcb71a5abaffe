"""Set-based writes and reads for the jobs' chunks: many rows in a few short statements.

- ``insert_rows`` inserts a chunk's rows with one statement per table. On PostgreSQL the
  rows travel as one JSON document (``INSERT ... SELECT ... FROM json_populate_recordset``):
  the statement stays short, so psycopg parses it once and the server plans it once,
  however many rows it carries, and no per-value escaping is done in Python. (Multi-row
  ``INSERT ... VALUES`` with thousands of placeholders is several times slower: psycopg
  re-parses each such long statement.) Elsewhere (SQLite, in process) SQLAlchemy's
  "insertmanyvalues" sends multi-row ``INSERT ... VALUES`` of up to 1,000 rows.
- ``id_in`` matches a column against a chunk's ids: ``= ANY(array)``, one parameter, on
  PostgreSQL; a bounded ``IN`` elsewhere. Chunks are at most a few thousand ids.

Ids of inserted rows come back by RETURNING and are matched to the rows by a ``key``
(columns that tell the rows apart), since no database promises RETURNING's order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, any_, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY

from .extensions import db


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def id_in(column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column`` is one of ``ids``: one array parameter on PostgreSQL."""
    if _postgres():
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))
    return column.in_(list(ids))


def insert_rows(model: type, rows: Sequence[dict], *, key: Sequence[str] = ()) -> list[int]:
    """Insert ``rows`` (dicts by column name, all with the same columns) of ``model``.

    With ``key``, returns the new ids in the order of ``rows`` (the key's values must be
    different in each row); without, returns nothing.
    """
    if not rows:
        return []
    table = model.__table__  # type: ignore[attr-defined]
    returned: Sequence[Any]
    if _postgres():
        returned = _insert_json(table, rows, key)
    else:
        returned = db.session.execute(
            insert(table).returning(table.c.id, *(table.c[name] for name in key)), list(rows)
        ).all()
    if not key:
        return []
    ids = {tuple(row[1:]): row[0] for row in returned}
    if len(ids) != len(rows):
        raise ValueError(f"the key {tuple(key)} does not tell the {model.__name__} rows apart")
    return [ids[tuple(row[name] for name in key)] for row in rows]


def _insert_json(table, rows: Sequence[dict], key: Sequence[str]) -> Sequence[Any]:
    """``INSERT INTO t (a, b) SELECT a, b FROM json_populate_recordset(NULL::t, :rows)``.

    The rows travel as one JSON document (``json.dumps`` is fast, and so is the server's
    parser), typed by the table's own row type on the way in: timestamps keep their
    offset, so an aware UTC time is stored as it is.
    """
    dialect = db.session.get_bind().dialect
    names = list(rows[0])
    document = json.dumps(list(rows), default=_plain, separators=(",", ":"))
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    returning = ", ".join(quote(name) for name in ("id", *key))
    statement = (f"INSERT INTO {quote(table.name)} ({columns}) SELECT {columns} FROM "
                 f"json_populate_recordset(NULL::{quote(table.name)}, CAST(:rows AS JSON)) "
                 f"RETURNING {returning}")
    return db.session.execute(text(statement), {"rows": document}).all()


def _plain(value: Any) -> Any:
    """A column value as JSON: dates and times in ISO form (with their offset), enums by
    value; numbers, strings, None and JSON columns' values are JSON already."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not a column value")
