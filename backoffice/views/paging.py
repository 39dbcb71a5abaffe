"""Pages of rows that cost the same at any depth, and counts that never scan a big table.

- **Keyset pages.** A page is the rows after (or before) one position of its order: the
  sort key and the id of a row, carried in the address as a token (``after=…`` /
  ``before=…``). The query is ``WHERE (key, id) < (:key, :id) ORDER BY key DESC, id DESC
  LIMIT n + 1`` on an index of ``(key, id)``, so the thousandth page costs what the first
  does, and rows with equal keys are neither skipped nor repeated (ties go by id).
- **Tokens are checked strictly:** URL-safe base64 of ``[sort name, key, id]``, the key of
  the column's own type (an aware timestamp, a date, a whole number in the column's
  range, a string no longer than the column); anything else is no token.
- **Counts.** A filtered list counts at most :data:`COUNT_CAP` + 1 rows
  (``SELECT count(*) FROM (… LIMIT 10001)``) and shows "10,000+" beyond, a searched one
  :data:`SEARCH_COUNT_CAP` + 1 ("200+"); an unfiltered
  list of a big table on PostgreSQL shows the planner's estimate ("about 10,234,567");
  a first page that is not full is its own exact count.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from babel.numbers import format_decimal
from flask import current_app, request
from sqlalchemy import Integer, String, func, literal, select, text, tuple_
from sqlalchemy.orm import Query
from sqlalchemy.sql import Select, operators

from ..extensions import db
from .forms import has_control_characters

#: a filtered list counts this many rows at most, then says "10,000+"
COUNT_CAP = 10_000
#: a searched list counts this many at most, then says "200+": a fragment common enough
#: to match more is typed further, and counting a search's matches reads each of them
#: (ILIKE row by row when they are common: 16 ms for 200 of 1M profiles, 51 ms for 1,000)
SEARCH_COUNT_CAP = 200
#: a page number of a keyset list may reach this many rows deep (OFFSET); deeper pages
#: are reached with Next
MAX_OFFSET_ROWS = 10_000
#: the longest token an address may carry
MAX_TOKEN = 600

#: the arguments that carry a keyset position
KEYSET_ARGS = ("after", "before")

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,600}")
_BIGGEST_ID = 2 ** 63 - 1


# --------------------------------------------------------------------------- counts


class RowCount(int):
    """How many rows a list has, as staff read it: exact ("1,234"), at least ("10,000+",
    a capped count) or about ("about 10,234,567", the planner's estimate).

    An ``int`` (Flask-Admin divides it into pages) that shows as its label in templates.
    """

    kind: str
    #: a capped count's cap: it shows as "<cap>+"
    cap: int

    def __new__(cls, value: int, kind: str = "exact", cap: int = COUNT_CAP) -> RowCount:
        count = super().__new__(cls, value)
        count.kind = kind
        count.cap = cap
        return count

    @classmethod
    def up_to(cls, value: int, cap: int = COUNT_CAP) -> RowCount:
        """A count taken over at most ``cap`` + 1 rows: exact up to ``cap``, "<cap>+" over."""
        return cls(cap + 1, "capped", cap) if value > cap else cls(value, cap=cap)

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    @property
    def label(self) -> str:
        locale = current_app.config.get("DISPLAY_LOCALE", "en_US")
        if self.kind == "capped":
            return f"{format_decimal(self.cap, locale=locale)}+"
        number = format_decimal(int(self), locale=locale)
        return f"about {number}" if self.kind == "estimate" else number

    def __str__(self) -> str:
        return self.label

    def __html__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"RowCount({int(self)}, {self.kind!r})"


def capped_count(query: Query | Select, id_column, cap: int = COUNT_CAP) -> RowCount:
    """The rows of ``query`` counted up to ``cap`` + 1: exact below the cap, "10,000+"
    at it. One statement, reading at most cap + 1 rows whatever the table's size."""
    if isinstance(query, Query):
        inner = query.with_entities(id_column).order_by(None).limit(cap + 1).subquery()
    else:
        inner = query.with_only_columns(id_column).order_by(None).limit(cap + 1).subquery()
    value = db.session.scalar(select(func.count()).select_from(inner)) or 0
    return RowCount.up_to(value, cap)


def estimated_rows(table_name: str) -> int | None:
    """The planner's estimate of a table's rows on PostgreSQL (``reltuples`` scaled to the
    table's current size, as the planner does), or None elsewhere or before the table
    was ever analysed."""
    if db.session.get_bind().dialect.name != "postgresql":
        return None
    estimate = db.session.scalar(text(
        "SELECT CASE WHEN c.reltuples < 0 THEN NULL"
        " WHEN c.relpages > 0 THEN c.reltuples / c.relpages"
        " * (pg_relation_size(c.oid) / current_setting('block_size')::int)"
        " ELSE c.reltuples END"
        " FROM pg_class c WHERE c.oid = to_regclass(quote_ident(:name))"),
        {"name": table_name})
    return None if estimate is None else int(estimate)


def table_count(query: Query | Select, id_column, table_name: str) -> RowCount:
    """The count of an unfiltered list: the planner's estimate for a big table, a
    capped (so for a small table exact) count otherwise."""
    estimate = estimated_rows(table_name)
    if estimate is not None and estimate > COUNT_CAP:
        return RowCount(estimate, "estimate")
    return capped_count(query, id_column)


# --------------------------------------------------------------------------- keyset


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _column_range(column) -> tuple[int, int]:
    column_type = getattr(column.type, "impl", column.type)
    name = type(column_type).__name__
    if name == "SmallInteger":
        return -(2 ** 15), 2 ** 15 - 1
    if name == "BigInteger":
        return -(2 ** 63), 2 ** 63 - 1
    return -(2 ** 31), 2 ** 31 - 1


def _python_type(column) -> type | None:
    column_type: Any
    for column_type in (column.type, getattr(column.type, "impl", None)):
        try:
            return column_type.python_type
        except (NotImplementedError, AttributeError):
            continue
    return None


def keyset_type(column) -> type | None:
    """The Python type a keyset token carries for ``column``: datetime, date, int or str;
    None when the column cannot be a keyset sort key (nullable, or another type)."""
    if getattr(column, "nullable", True):
        return None
    kind = _python_type(column)
    if kind is bool or kind not in (datetime, date, int, str):
        return None
    if kind is int and not isinstance(getattr(column.type, "impl", column.type), Integer):
        return None
    if kind is str and not isinstance(column.type, String):
        return None
    return kind


def _decode_value(column, kind: type, raw: Any) -> Any:
    """``raw`` as a key of ``column``, or raise ValueError."""
    if kind is datetime:
        if not isinstance(raw, str) or len(raw) > 40:
            raise ValueError
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            raise ValueError
        return moment.astimezone(UTC)
    if kind is date:
        if not isinstance(raw, str) or len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    if kind is int:
        low, high = _column_range(column)
        if type(raw) is not int or not low <= raw <= high:
            raise ValueError
        return raw
    length = getattr(column.type, "length", None) or 10_000
    if not isinstance(raw, str) or len(raw) > length or has_control_characters(raw):
        raise ValueError
    return raw


def as_column(attribute) -> Any:
    """The table column behind a mapped attribute (``Order.created_at``), or itself."""
    columns = getattr(getattr(attribute, "property", None), "columns", None)
    return columns[0] if columns else attribute


@dataclass(frozen=True)
class SortKey:
    """An order of rows for keyset pages: ``column`` (NOT NULL) then ``id``, both
    descending or both ascending; ``name`` goes in its tokens. Columns are table columns
    (see :func:`as_column`) whose keys are the mapped attributes' names."""

    name: str
    column: Any
    id_column: Any
    desc: bool

    @classmethod
    def of(cls, name: str, column, id_column, desc: bool) -> SortKey:
        return cls(name, as_column(column), as_column(id_column), desc)

    @property
    def by_id(self) -> bool:
        return self.column is self.id_column

    @property
    def kind(self) -> type:
        kind = keyset_type(self.column)
        assert kind is not None, f"{self.name} cannot be a keyset sort key"
        return kind

    def order_by(self, *, reverse: bool = False) -> list:
        descending = self.desc != reverse
        columns = [self.id_column] if self.by_id else [self.column, self.id_column]
        return [c.desc() if descending else c.asc() for c in columns]

    def beyond(self, position: tuple[Any, int], *, reverse: bool = False):
        """The rows after ``position`` in this order (before it with ``reverse``)."""
        value, ident = position
        descending = self.desc != reverse
        if self.by_id:
            return self.id_column < ident if descending else self.id_column > ident
        left = tuple_(self.column, self.id_column)
        right = tuple_(literal(value, self.column.type), literal(ident, self.id_column.type))
        return left < right if descending else left > right

    def position_of(self, row) -> tuple[Any, int]:
        ident = getattr(row, self.id_column.key)
        return (ident if self.by_id else getattr(row, self.column.key)), ident

    def token(self, row) -> str:
        value, ident = self.position_of(row)
        raw = json.dumps([self.name, _encode(value), ident], separators=(",", ":"),
                         ensure_ascii=False)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def parse(self, token: str | None) -> tuple[Any, int] | None:
        """The position a token names in this order, or None for anything else: another
        sort's token, a key of the wrong type or range, an id no row can have."""
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            name, value, ident = json.loads(raw)
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
            return None
        if name != self.name or type(ident) is not int or not 0 < ident <= _BIGGEST_ID:
            return None
        if self.by_id:
            return (ident, ident) if type(value) is int and value == ident else None
        try:
            return _decode_value(self.column, self.kind, value), ident
        except (ValueError, TypeError, OverflowError):
            return None


@dataclass
class KeysetPage:
    """One page of rows in a keyset order, and the tokens of its neighbours."""

    rows: list
    #: the token of the next page (after the last row), None on the last page
    next_token: str | None
    #: the token of the previous page (before the first row), None on the first page
    prev_token: str | None

    @property
    def is_first(self) -> bool:
        return self.prev_token is None


#: what a keyset page reads rows with, when not from a query: (condition or None,
#: ORDER BY clauses, LIMIT, OFFSET) -> rows
Fetch = Callable[[Any, list, int, int], Sequence]


def keyset_page(source: Query | Select | Fetch, key: SortKey, *, size: int,
                after: tuple[Any, int] | None = None, before: tuple[Any, int] | None = None,
                offset: int = 0) -> KeysetPage:
    """The ``size`` rows after ``after``, before ``before``, or from the start (skipping
    ``offset`` rows), in ``key``'s order: of a query, or read by a :data:`Fetch` (for a
    UNION that cuts each side itself). Reads ``size + 1`` rows to know whether there is
    more; a Previous that reaches the start is the first page itself."""
    fetch = source if callable(source) else _query_fetch(source)

    def rows_of(condition, reverse: bool, skip: int = 0) -> list:
        return list(fetch(condition, key.order_by(reverse=reverse), size + 1, skip))

    if before is not None:
        rows = rows_of(key.beyond(before, reverse=True), True)
        if len(rows) > size:
            rows = rows[:size][::-1]
            return KeysetPage(rows, key.token(rows[-1]), key.token(rows[0]))
        after, offset = None, 0  # nothing before these: the first page
    rows = rows_of(key.beyond(after) if after is not None else None, False, offset)
    more = len(rows) > size
    rows = rows[:size]
    started = after is not None or offset > 0
    return KeysetPage(rows, key.token(rows[-1]) if more and rows else None,
                      key.token(rows[0]) if started and rows else None)


def within_matches(query: Query, key: SortKey, model, options: Sequence = ()) -> Fetch:
    """A :data:`Fetch` for a filtered or searched list whose matches are at most
    COUNT_CAP (its capped count is exact): the matches are found first (the filter's or
    search's own index, say a trigram index), at most COUNT_CAP + 1 of them, and only
    then ordered and cut to a page, then loaded with ``options``.

    Left to itself, the planner may read the sort index from its end and test every row
    against the search until a page is full, which for a rare match means most of the
    table; ordering the bounded set of matches costs what the matches cost, wherever the
    page is.
    """

    def fetch(condition, order_by: list, limit: int, offset: int) -> Sequence:
        matching = query.filter(condition) if condition is not None else query
        columns = [key.id_column.label("match_id")]
        if not key.by_id:
            columns.append(key.column.label("match_key"))
        matches = matching.with_entities(*columns).order_by(None).limit(
            COUNT_CAP + 1).subquery()
        descending = getattr(order_by[0], "modifier", None) is operators.desc_op

        def ordered(source) -> list:
            keys = [source.c.match_id] if key.by_id else [source.c.match_key,
                                                           source.c.match_id]
            return [c.desc() if descending else c.asc() for c in keys]

        # the page's ids, ordered and cut from the matches; then their rows, by id
        cut = select(matches).order_by(*ordered(matches)).limit(limit)
        if offset:
            cut = cut.offset(offset)
        page = cut.subquery()
        statement = (select(model).join(page, key.id_column == page.c.match_id)
                     .order_by(*ordered(page)).options(*options))
        return db.session.scalars(statement).all()

    return fetch


def _query_fetch(query: Query | Select) -> Fetch:
    def fetch(condition, order_by: list, limit: int, offset: int) -> Sequence:
        page = query.where(condition) if condition is not None else query
        page = page.order_by(None).order_by(*order_by).limit(limit)
        if offset:
            page = page.offset(offset)
        if isinstance(page, Query):
            return page.all()
        return db.session.scalars(page).all()

    return fetch


# --------------------------------------------------------------------------- a record's rows


@dataclass
class RowsPage:
    """One page of a record's rows (a customer's transactions, a profile's ledger...) with
    the addresses of the first, newer and older pages; they keep the page's tab."""

    rows: list
    first_url: str | None
    prev_url: str | None
    next_url: str | None

    @property
    def paged(self) -> bool:
        return bool(self.first_url or self.next_url)


def record_rows(source: Select | Fetch, key: SortKey, *, prefix: str | None,
                url: Callable[..., str], size: int = 50, tab: str | None = None,
                anchor: str | None = None) -> RowsPage:
    """A page of rows for a page that shows them (a query, or a :data:`Fetch`): the
    position comes from the address (``<prefix>_after`` / ``<prefix>_before``, or
    ``after`` / ``before`` without a prefix), and a token that is not one of this order's
    is ignored (the first page). ``url(**args)`` makes the page's address from its other
    arguments and the position; the links open on ``tab`` (``tab=``) and scroll to
    ``anchor`` (the tab's, by default)."""
    after_name, before_name = (f"{prefix}_after", f"{prefix}_before") if prefix \
        else KEYSET_ARGS
    anchor = anchor or tab
    after = key.parse(request.args.get(after_name))
    before = None if after else key.parse(request.args.get(before_name))
    page = keyset_page(source, key, size=size, after=after, before=before)
    others = {k: v for k, v in request.args.items()
              if k not in (after_name, before_name, "tab")}
    if tab:
        others["tab"] = tab

    def address(**position) -> str:
        return url(**others, **position) + (f"#{anchor}" if anchor else "")

    return RowsPage(
        rows=page.rows,
        first_url=address() if not page.is_first else None,
        prev_url=address(**{before_name: page.prev_token}) if page.prev_token else None,
        next_url=address(**{after_name: page.next_token}) if page.next_token else None)
