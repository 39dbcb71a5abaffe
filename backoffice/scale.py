"""A large data set that obeys the rules, for measuring the console at scale
(``flask seed-scale``).

It fills the database up to a number of rows of each kind (by default 10 million partner
transactions with about 11.6 million lines, 1 million profiles and orders, 100,000
partner customers and 200,000 subscriptions) in stages, each one in chunks:

1. the catalog (the demo's certificate types and products), through the domain verbs;
2. resellers and partner customers (a customer-administered one has its administrator);
3. subscriptions with their whole history: inventory, one term per term had, the first
   charge, a renewal charge per later term, certificates added over the terms (prorated
   by the days left), and refunds of some additions a day or three after the charge;
   the current inventory is what the current term's charges and refunds leave;
4. storefront profiles, one in a hundred a corporate account with three secondary users;
5. orders with their items, one licence per certificate, the order's invoice, and the
   payment: by card, from prepaid credit (a top-up, then the payment, each ledger entry
   carrying its running balance and the profile's balance moving with them), or not yet.

The rows follow the rules the nightly ledger check verifies (balances equal ledgers, no
line refunded beyond its quantity or amount) and the database's constraints; prices come
from the catalog as the quotes price them. The bulk rows write no audit events (the
verbs of stage 1 write theirs), so the audit chain stays whole; the order and invoice
counters are moved past the numbers used, so the console keeps numbering after them.

Each stage counts the rows there are and adds the rest: a second run adds nothing, and a
run stopped in the middle of a stage carries on from its last whole chunk. The caller
commits after every chunk (:meth:`Stage.run` yields between chunks). On PostgreSQL the
rows go in with binary ``COPY ... FROM STDIN``, the subscriptions' additions and refunds
(most of the transactions) are drawn set-based in SQL, ids are taken from the tables'
sequences in blocks, and a big load builds indexes and foreign keys after its rows; on
SQLite rows go in as Core ``executemany`` batches. The same starting state and clock
give the same data, but for the orders' payment tokens (random secrets). It expects to
be the only writer while it runs.
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Integer,
    String,
    Table,
    bindparam,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex
from sqlalchemy.types import TypeDecorator

from . import subscriptions
from .accounts import ACME_DIRECTORY_URL
from .clock import utcnow
from .demo import CATALOG, COMPANIES, FIRST, LAST, PLACES, PRODUCTS, SUFFIXES
from .extensions import db
from .models import (
    CertificateType,
    Counter,
    CreditEntry,
    Customer,
    CustomerAdmin,
    Inventory,
    Invoice,
    InvoiceLine,
    License,
    Order,
    OrderItem,
    Organization,
    Profile,
    Reseller,
    Subscription,
    SubscriptionProduct,
    SubscriptionTerm,
    Transaction,
    TransactionLine,
)
from .pricing import term_end

SCALE_DOMAIN = "scale.example"

#: rows per chunk (one commit each), by stage
CHUNKS = {"customers": 20_000, "subscriptions": 10_000, "profiles": 50_000, "orders": 20_000}

#: how many ids are taken from a sequence at a time (PostgreSQL)
ID_BLOCK = 50_000

#: from how many rows a stage loads PostgreSQL tables without their secondary indexes and
#: foreign keys (see :meth:`Stage.run`)
BULK_ROWS = 100_000

#: the customer with the most transactions has this many (the console's worst case)
LARGEST_CUSTOMER_TRANSACTIONS = 10_000

#: customers per reseller; one customer in five is a direct customer
CUSTOMERS_PER_RESELLER = 2_500

#: one addition in this many is partly refunded
REFUND_EVERY = 17

#: how far back the partner history and the storefront go
HISTORY_DAYS = 3 * 365

#: how far back the orders go (the profiles are made in the time before)
ORDER_DAYS = 2 * 365

RETAIL_CODES = ("DV", "OV", "EV", "WC-DV", "MD-OV", "DV-CAAS")

#: how many certificates one addition adds
QUANTITIES = (1, 1, 2, 3, 5)


@dataclass(frozen=True)
class Targets:
    """How many rows of each kind the database should hold (at least) when seeded.

    Transactions come with their subscriptions' histories: every subscription has at
    least its first charge and a renewal per later term, so a target below that is
    overtaken.
    """

    transactions: int = 10_000_000
    profiles: int = 1_000_000
    orders: int = 1_000_000
    customers: int = 100_000
    subscriptions: int = 200_000


def stages(targets: Targets) -> Iterator[Stage]:
    """The stages in order; each is made when it is reached, after the ones before it
    were committed, so it counts what they added."""
    for stage in (CatalogStage, CustomerStage, SubscriptionStage, ProfileStage, OrderStage):
        yield stage(targets)


class Stage:
    """One kind of rows: how many are missing, and a run that adds them in chunks."""

    name = ""
    label = ""
    #: the tables the stage loads
    models: tuple[Any, ...] = ()

    def __init__(self, targets: Targets):
        self.targets = targets
        self.now = utcnow().astimezone(UTC)
        self.today = self.now.date()
        self.writer = _Writer()
        self.missing = max(0, self.target() - self.count())

    def target(self) -> int:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def rows(self) -> int:
        """About how many rows the stage will write (what decides a bulk load)."""
        return self.missing

    def run(self) -> Iterator[int]:
        """Add the missing rows a chunk at a time, yielding how many each chunk added;
        the caller commits before asking for the next.

        A big load on PostgreSQL (``BULK_ROWS`` rows or more) goes into the tables
        without their secondary indexes and foreign keys, which are built again at the
        end (and by the next run, for a run stopped before): building an index over
        millions of rows at once is many times faster than updating it row by row, and
        adding a foreign key checks every row in one pass.
        """
        if self.writer.postgres and self.rows() >= BULK_ROWS:
            self.writer.drop_secondary(self.models)
        if self.missing:
            yield from self._chunks()
        if self.writer.restore_secondary(self.models):
            yield 0

    def _chunks(self) -> Iterator[int]:
        raise NotImplementedError


# --------------------------------------------------------------------------- writing


class _Writer:
    """Bulk inserts and ids: COPY and sequences on PostgreSQL, Core batches on SQLite."""

    def __init__(self) -> None:
        self.postgres = db.session.get_bind().dialect.name == "postgresql"

    def _raw(self) -> Any:
        return db.session.connection().connection.dbapi_connection

    def insert(self, model: Any, columns: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        table: Table = model.__table__
        if not self.postgres:
            db.session.execute(table.insert(), [dict(zip(columns, row, strict=True))
                                                for row in rows])
            return
        quote = db.session.get_bind().dialect.identifier_preparer.quote
        statement = (f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                     "FROM STDIN (FORMAT BINARY)")
        with self._raw().cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types([_binary_type(table.c[name].type) for name in columns])
            for row in rows:
                copy.write_row(row)

    def ids(self, model: Any) -> Iterator[int]:
        """New ids for ``model``'s table, endlessly."""
        table: Table = model.__table__
        if not self.postgres:
            start = (db.session.scalar(select(func.max(table.c.id))) or 0) + 1
            yield from itertools.count(start)
            return
        while True:
            # A block at once: the sequence moves past it, so later rows (ours or the
            # console's) never take its ids. (A nextval by another writer in the instant
            # between the two calls would share one: the seeder runs alone.)
            first = self.block(model, ID_BLOCK)
            yield from range(first, first + ID_BLOCK)

    def json(self, value: dict) -> Any:
        """A value for a JSON column: the dict, or on PostgreSQL its JSON text, made once
        for the rows that share it (a binary COPY sends JSON as its text)."""
        return json.dumps(value) if self.postgres else value

    def block(self, model: Any, count: int) -> int:
        """The first of ``count`` consecutive new ids of ``model``'s table (PostgreSQL)."""
        sequence = self._sequence(model.__table__)
        last = db.session.scalar(text("SELECT setval(CAST(:s AS regclass), "
                                      "nextval(CAST(:s AS regclass)) + :n - 1)"),
                                 {"s": sequence, "n": max(1, count)})
        return int(last or 0) - max(1, count) + 1

    def _sequence(self, table: Table) -> str:
        quoted = db.session.get_bind().dialect.identifier_preparer.format_table(table)
        return str(db.session.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"),
                                     {"t": quoted}))

    def insert_plain(self, table: str, columns: Sequence[str], rows: list) -> None:
        """Rows into a work table of the seeder's (PostgreSQL, text COPY)."""
        with self._raw().cursor() as cursor, cursor.copy(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def drop_secondary(self, models: Sequence[Any]) -> None:
        """Drop the tables' non-unique indexes and foreign keys (those the models define)."""
        connection = db.session.connection()
        for model in models:
            table: Table = model.__table__
            indexes, foreign_keys = _existing(table)
            for index in table.indexes:
                if not index.unique and index.name in indexes:
                    connection.execute(DropIndex(index))
            for constraint in table.foreign_key_constraints:
                if constraint.name in foreign_keys:
                    connection.execute(DropConstraint(constraint))

    def restore_secondary(self, models: Sequence[Any]) -> bool:
        """Build every index and foreign key the models define that the tables lack;
        True when there was one to build."""
        if not self.postgres:
            return False
        connection = db.session.connection()
        built = False
        for model in models:
            table: Table = model.__table__
            indexes, foreign_keys = _existing(table)
            missing = ([CreateIndex(i) for i in table.indexes if i.name not in indexes]
                       + [AddConstraint(c) for c in table.foreign_key_constraints
                          if c.name not in foreign_keys])
            if missing and not built:  # sorts for the indexes, joins checking the keys
                connection.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
                connection.execute(text("SET LOCAL work_mem = '512MB'"))
            for ddl in missing:
                connection.execute(ddl)
                built = True
        return built

    def reserve(self, name: str, count: int) -> int:
        """Take ``count`` values of a named counter at once; returns the first."""
        counter = Counter.__table__
        moved = db.session.execute(update(counter).where(counter.c.name == name)
                                   .values(value=counter.c.value + count))
        if moved.rowcount == 0:  # type: ignore[attr-defined]  # an UPDATE's CursorResult
            db.session.execute(counter.insert().values(name=name, value=count))
        value = db.session.scalar(select(counter.c.value).where(counter.c.name == name))
        return (value or 0) - count + 1


def _binary_type(column_type: Any) -> str:
    """The PostgreSQL type a column's values are sent as in a binary COPY."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl
    for kind, name in ((Boolean, "bool"), (BigInteger, "int8"), (Integer, "int4"),
                       (DateTime, "timestamptz"), (Date, "date"), (JSON, "text"),
                       (String, "text")):
        if isinstance(column_type, kind):
            return name
    raise TypeError(f"no binary COPY type for {column_type!r}")


def _existing(table: Table) -> tuple[set[str | None], set[str | None]]:
    """The names of the indexes and foreign keys ``table`` has in the database."""
    inspector = inspect(db.session.connection())
    return ({i["name"] for i in inspector.get_indexes(table.name)},
            {f["name"] for f in inspector.get_foreign_keys(table.name)})


def _count(model: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model.__table__)) or 0


def _prorated(amount: int, numerator: int, denominator: int) -> int:
    """:func:`money.prorate` of a non-negative amount, in integers (it is the same
    half-up rounding, without building a Fraction for each of millions of lines)."""
    return (2 * amount * numerator + denominator) // (2 * denominator)


_EPOCH = date(1970, 1, 1).toordinal()


def _day(day: date) -> int:
    """Days since 1970-01-01."""
    return day.toordinal() - _EPOCH


def _at(seconds: int) -> datetime:
    """The UTC moment ``seconds`` after the epoch."""
    return datetime.fromtimestamp(seconds, UTC)


@lru_cache(maxsize=1 << 14)
def _term_end(start: date, months: int) -> date:
    return term_end(start, months)


# --------------------------------------------------------------------------- 1. catalog


class CatalogStage(Stage):
    """The demo's certificate types and products, made by the verbs (audited) if missing."""

    name = "catalog"
    label = "catalog"

    def target(self) -> int:
        return len(CATALOG) + len(PRODUCTS)

    def count(self) -> int:
        codes = set(db.session.scalars(select(CertificateType.code)))
        names = set(db.session.scalars(select(SubscriptionProduct.name)))
        return (sum(code in codes for code, *_ in CATALOG)
                + sum(name in names for name, *_ in PRODUCTS))

    def _chunks(self) -> Iterator[int]:
        codes = set(db.session.scalars(select(CertificateType.code)))
        names = set(db.session.scalars(select(SubscriptionProduct.name)))
        added = 0
        for code, name, kind, price in CATALOG:
            if code not in codes:
                subscriptions.create_certificate_type(code=code, name=name, kind=kind,
                                                      yearly_price=price)
                added += 1
        for name, type_codes, terms in PRODUCTS:
            if name not in names:
                subscriptions.create_product(name=name, certificate_types=type_codes,
                                             terms_months=terms)
                added += 1
        yield added


# --------------------------------------------------------------------------- 2. customers


class CustomerStage(Stage):
    """Resellers (one per ``CUSTOMERS_PER_RESELLER`` customers) and partner customers."""

    name = "customers"
    label = "partner customers"
    models = (Reseller, Customer, CustomerAdmin)

    def target(self) -> int:
        return self.targets.customers

    def count(self) -> int:
        return _count(Customer)

    def _chunks(self) -> Iterator[int]:
        resellers = self._resellers()
        ids, admin_ids = self.writer.ids(Customer), self.writer.ids(CustomerAdmin)
        left = self.missing
        while left:
            size = min(left, CHUNKS["customers"])
            customers, admins = [], []
            rng = random.Random(f"customers:{left}")  # one generator a chunk: seeding costs
            for _ in range(size):
                ident = next(ids)
                city, postal, state, country, currency = rng.choice(PLACES)
                created = self.now - timedelta(days=HISTORY_DAYS + rng.randint(1, 180),
                                               seconds=rng.randint(0, 86_399))
                admin_email = None
                if rng.random() < 0.3:
                    admin_email = f"it-admin{ident}@{SCALE_DOMAIN}"
                    admins.append((next(admin_ids), ident, admin_email, created))
                reseller = rng.choice(resellers) if resellers and rng.random() < 0.8 else None
                customers.append((
                    ident, reseller, "customer" if admin_email else "partner", admin_email,
                    currency, created,
                    f"{COMPANIES[ident % len(COMPANIES)]} {rng.choice(SUFFIXES)} {ident}",
                    f"{rng.randint(1, 300)} Market Street", city, postal, state, country))
            self.writer.insert(Customer, (
                "id", "reseller_id", "administrative_responsibility", "customer_admin_email",
                "currency", "created_at", "company_name", "address1", "city", "postal_code",
                "state", "country"), customers)
            self.writer.insert(CustomerAdmin, ("id", "customer_id", "email", "created_at"),
                               admins)
            left -= size
            yield size

    def _resellers(self) -> list[int]:
        """The active resellers, after adding those the customer count calls for."""
        wanted = -(-self.targets.customers // CUSTOMERS_PER_RESELLER)
        have = _count(Reseller)
        if have < wanted:
            ids = self.writer.ids(Reseller)
            rows = []
            for index in range(have, wanted):
                ident = next(ids)
                rng = random.Random(-ident)
                city, postal, state, country, _currency = rng.choice(PLACES)
                rows.append((ident, f"{rng.choice(COMPANIES)} Partners {index + 1}",
                             f"{rng.randint(1, 99)} Commerce Way", city, postal, state,
                             country, "active",
                             self.now - timedelta(days=HISTORY_DAYS + 200)))
            self.writer.insert(Reseller, ("id", "company_name", "address1", "city",
                                          "postal_code", "state", "country", "status",
                                          "created_at"), rows)
        return list(db.session.scalars(select(Reseller.id).where(Reseller.status == "active")
                                       .order_by(Reseller.id)))


# --------------------------------------------------------------------------- 3. subscriptions


@dataclass(frozen=True)
class _Product:
    id: int
    terms: tuple[int, ...]
    types: tuple[tuple[int, int], ...]  # (certificate type id, yearly price)


@dataclass
class _Chunk:
    """The rows of one chunk of subscriptions, by table, and (PostgreSQL) the additions
    the database draws itself."""

    subscriptions: list[tuple] = field(default_factory=list)
    inventory: list[tuple] = field(default_factory=list)
    terms: list[tuple] = field(default_factory=list)
    transactions: list[tuple] = field(default_factory=list)
    lines: list[tuple] = field(default_factory=list)
    plans: list[list] = field(default_factory=list)
    #: transactions the plans were counted for (refunds the database cannot date are not
    #: made, so fewer may come)
    planned: int = 0


SUBSCRIPTION_COLUMNS = ("id", "customer_id", "product_id", "term_months", "start_date",
                        "end_date", "auto_renew", "status", "created_at")
INVENTORY_COLUMNS = ("id", "subscription_id", "certificate_type_id", "quantity",
                     "renewal_quantity")
TERM_COLUMNS = ("id", "subscription_id", "start_date", "end_date", "created_at")
TRANSACTION_COLUMNS = ("id", "customer_id", "subscription_id", "kind", "reason",
                       "refunded_transaction_id", "amount", "currency", "created_at")
LINE_COLUMNS = ("id", "transaction_id", "certificate_type_id", "quantity", "amount",
                "full_amount", "days_charged", "days_in_term", "refunded_quantity",
                "refunded_amount", "refunded_line_id")

#: what the database needs to draw one subscription's additions (PostgreSQL)
PLAN_COLUMNS = ("subscription_id", "customer_id", "currency", "months", "first_day", "span",
                "bounds", "type_ids", "prices", "additions", "refund_every", "tx_base",
                "line_base")

PLAN_TABLE = """CREATE TEMPORARY TABLE IF NOT EXISTS scale_plan (
    subscription_id integer, customer_id integer, currency text, months integer,
    first_day integer, span integer, bounds integer[], type_ids integer[], prices bigint[],
    additions integer, refund_every integer, tx_base bigint, line_base bigint
) ON COMMIT DELETE ROWS"""

#: The additions (and their refunds) of every planned subscription, drawn and priced by
#: the database as :meth:`SubscriptionStage._python_additions` does in Python: each
#: addition of one or two certificate types on a day of the subscription's life, priced
#: for the days left of the term that day falls in; every ``refund_every``-th addition
#: refunded (one certificate of its first line) one to three days later when that is
#: still in its term and not in the future; the current term's additions and refunds
#: move the current inventory. Random draws are hashes of the transaction's id. Addition
#: ``g`` has transaction ids ``tx_base + 2g`` (+1 for its refund) and line ids
#: ``line_base + 3g`` (+1 for a second type, +2 for the refund's line); the ids left
#: unused are gaps, as sequences leave. Answers how many transactions were made.
ADDITIONS_SQL = """
WITH draw AS (
    SELECT p.subscription_id, p.customer_id, p.currency, p.months, p.bounds, p.type_ids,
           p.prices, cardinality(p.bounds) - 1 AS current_term, t.tid,
           p.line_base + 3 * t.g AS lid, cardinality(p.type_ids) AS types,
           t.g % NULLIF(p.refund_every, 0) = p.refund_every - 1 AS refund_wanted,
           p.first_day + abs(hashint8extended(t.tid, 1) % 1000003) % p.span AS day,
           abs(hashint8extended(t.tid, 2) % 1000003) AS r2,
           abs(hashint8extended(t.tid, 3) % 1000003) AS r3,
           abs(hashint8extended(t.tid, 4) % 1000003) AS r4,
           abs(hashint8extended(t.tid, 5) % 1000003) AS r5,
           abs(hashint8extended(t.tid, 6) % 1000003) AS r6,
           abs(hashint8extended(t.tid, 7) % 1000003) AS r7,
           abs(hashint8extended(t.tid, 8) % 1000003) AS r8,
           abs(hashint8extended(t.tid, 9) % 1000003) AS r9
    FROM scale_plan p
    CROSS JOIN LATERAL (SELECT g, p.tx_base + 2 * g AS tid
                        FROM generate_series(0, p.additions - 1) g) t
    OFFSET 0  -- each step computed once a row, not inlined into the next
),
picked AS (
    SELECT d.*, width_bucket(d.day, d.bounds) AS term,
           d.day::bigint * 86400 + d.r2 % 86400 AS moment,
           d.types > 1 AND d.r3 % 100 < 16 AS two,
           1 + d.r4 % d.types AS i1,
           CASE WHEN d.types > 1
                THEN 1 + (d.r4 % d.types + 1 + d.r5 % (d.types - 1)) % d.types
                ELSE 1 END AS i2,
           (ARRAY[1, 1, 2, 3, 5])[1 + d.r6 % 5] AS qty1,
           (ARRAY[1, 1, 2, 3, 5])[1 + d.r7 % 5] AS qty2
    FROM draw d
    OFFSET 0  -- each step computed once a row, not inlined into the next
),
termed AS (
    SELECT k.*, k.bounds[k.term + 1] - k.bounds[k.term] AS days_in_term,
           k.bounds[k.term + 1] - k.day AS days_left,
           k.moment + 86400 * (1 + k.r8 % 3) + k.r9 % 3600 AS refund_at,
           (2 * k.prices[k.i1] * k.qty1 * k.months + 12) / 24 AS full1,
           (2 * k.prices[k.i2] * k.qty2 * k.months + 12) / 24 AS full2
    FROM picked k
    OFFSET 0  -- each step computed once a row, not inlined into the next
),
priced AS (
    SELECT m.*, m.type_ids[m.i1] AS type1, m.type_ids[m.i2] AS type2,
           (2 * m.full1 * m.days_left + m.days_in_term) / (2 * m.days_in_term) AS amount1,
           (2 * m.full2 * m.days_left + m.days_in_term) / (2 * m.days_in_term) AS amount2,
           m.refund_wanted AND m.refund_at <= :now
               AND m.refund_at < m.bounds[m.term + 1]::bigint * 86400 AS refunded,
           (2 * m.full1 + m.qty1) / (2 * m.qty1) AS refund_full
    FROM termed m
    OFFSET 0  -- each step computed once a row, not inlined into the next
),
backed AS MATERIALIZED (
    SELECT q.subscription_id, q.customer_id, q.currency, q.current_term, q.tid, q.lid,
           q.term, q.moment, q.two, q.qty1, q.qty2, q.days_in_term, q.days_left,
           q.refund_at, q.full1, q.full2, q.type1, q.type2, q.amount1, q.amount2,
           q.refunded, q.refund_full,
           CASE WHEN q.qty1 = 1 THEN q.amount1
                ELSE least((2 * q.amount1 + q.qty1) / (2 * q.qty1), q.amount1) END AS back
    FROM priced q
),
charges AS (
    INSERT INTO transaction (id, customer_id, subscription_id, kind, reason,
                             refunded_transaction_id, amount, currency, created_at)
    SELECT tid, customer_id, subscription_id, 'charge', 'inventory_added', NULL::bigint,
           amount1 + CASE WHEN two THEN amount2 ELSE 0 END, currency, to_timestamp(moment)
    FROM backed
    UNION ALL
    SELECT tid + 1, customer_id, subscription_id, 'refund', 'refund', tid, -back, currency,
           to_timestamp(refund_at)
    FROM backed WHERE refunded
),
lines AS (
    INSERT INTO transaction_line (id, transaction_id, certificate_type_id, quantity, amount,
                                  full_amount, days_charged, days_in_term, refunded_quantity,
                                  refunded_amount, refunded_line_id)
    SELECT lid, tid, type1, qty1, amount1, full1, days_left, days_in_term,
           CASE WHEN refunded THEN 1 ELSE 0 END, CASE WHEN refunded THEN back ELSE 0 END,
           NULL::bigint
    FROM backed
    UNION ALL
    SELECT lid + 1, tid, type2, qty2, amount2, full2, days_left, days_in_term, 0, 0, NULL
    FROM backed WHERE two
    UNION ALL
    SELECT lid + 2, tid + 1, type1, 1, -back, -refund_full, days_left, days_in_term, 0, 0, lid
    FROM backed WHERE refunded
),
stock AS (
    UPDATE inventory i SET quantity = i.quantity + moved.quantity
    FROM (SELECT subscription_id, type_id, sum(quantity) AS quantity FROM (
              SELECT subscription_id, type1 AS type_id, qty1 AS quantity
              FROM backed WHERE term = current_term
              UNION ALL
              SELECT subscription_id, type2, qty2 FROM backed WHERE two AND term = current_term
              UNION ALL
              SELECT subscription_id, type1, -1 FROM backed WHERE refunded
                                                              AND term = current_term
          ) parts GROUP BY subscription_id, type_id) moved
    WHERE i.subscription_id = moved.subscription_id AND i.certificate_type_id = moved.type_id
)
SELECT count(*) + count(*) FILTER (WHERE refunded) FROM backed
"""


class SubscriptionStage(Stage):
    """Subscriptions, each with its whole history, sharing the transactions target.

    The first customer's subscriptions carry ``LARGEST_CUSTOMER_TRANSACTIONS`` (or a
    twentieth of the target, if less); the other subscriptions go round the customers
    and share what is left of the target evenly, so it is met exactly.

    The subscriptions, their terms, inventory, first charges and renewals are made in
    Python. Their additions and refunds (most of the transactions) too on SQLite; on
    PostgreSQL the database draws them from a plan per subscription, set-based
    (``ADDITIONS_SQL``).
    """

    name = "subscriptions"
    label = "subscriptions and their transactions"
    models = (Subscription, Inventory, SubscriptionTerm, Transaction, TransactionLine)
    #: transactions the first (largest) customer is to have
    largest_wanted = 0

    def target(self) -> int:
        return self.targets.subscriptions

    def count(self) -> int:
        return _count(Subscription)

    def rows(self) -> int:
        return max(self.missing, self.targets.transactions - _count(Transaction))

    def _chunks(self) -> Iterator[int]:
        customers = db.session.execute(select(Customer.id, Customer.currency,
                                              Customer.created_at)
                                       .order_by(Customer.id)).all()
        products = self._products()
        if not customers or not products:
            return
        if self.writer.postgres:
            db.session.execute(text(PLAN_TABLE))
        ids = {model: self.writer.ids(model) for model in
               (Subscription, Inventory, SubscriptionTerm, Transaction, TransactionLine)}
        made = self.count()
        subscriptions_left = self.missing
        transactions_left = max(0, self.targets.transactions - _count(Transaction))
        plan = self._largest_customer_plan(customers[0].id, transactions_left)
        largest_wanted = self.largest_wanted if plan else 0
        while subscriptions_left:
            size = min(subscriptions_left, CHUNKS["subscriptions"])
            chunk = _Chunk()
            largest_plan = None
            for _ in range(size):
                largest = bool(plan)
                if largest:
                    customer, quota = customers[0], plan.pop()
                else:
                    others = customers[1:] or customers
                    customer = others[made % len(others)]
                    quota = transactions_left // subscriptions_left
                    made += 1
                planned = len(chunk.plans)
                written = self._history(chunk, ids, customer, products, quota)
                transactions_left -= written
                subscriptions_left -= 1
                if largest and len(chunk.plans) > planned:
                    largest_plan = chunk.plans[-1]
                elif largest and self.writer.postgres and written < quota and subscriptions_left:
                    # no plan: added too late for any addition (the day before today), so
                    # the next subscription is the largest customer's too, with what this
                    # one could not take
                    plan.append(quota - written)
            for model, columns, rows in (
                    (Subscription, SUBSCRIPTION_COLUMNS, chunk.subscriptions),
                    (Inventory, INVENTORY_COLUMNS, chunk.inventory),
                    (SubscriptionTerm, TERM_COLUMNS, chunk.terms),
                    (Transaction, TRANSACTION_COLUMNS, chunk.transactions),
                    (TransactionLine, LINE_COLUMNS, chunk.lines)):
                self.writer.insert(model, columns, rows)
            if chunk.plans:
                transactions_left += chunk.planned - self._draw(chunk.plans)
                # Refunds the database could not date (in the future, or past their
                # term) were not made: the largest customer's last subscription, then the
                # stage's last, take as many more additions.
                if largest_plan is not None and not plan:
                    short = min(transactions_left, largest_wanted - (db.session.scalar(
                        select(func.count(Transaction.id))
                        .where(Transaction.customer_id == customers[0].id)) or 0))
                    transactions_left -= self._top_up([largest_plan], short)
                if not subscriptions_left:
                    transactions_left -= self._top_up(
                        [p for p in chunk.plans if p is not largest_plan], transactions_left)
            yield size

    def _top_up(self, plans: list[list], count: int) -> int:
        """``count`` more additions, none refunded, shared by planned subscriptions."""
        if count <= 0 or not plans:
            return 0
        more = []
        for index, plan in enumerate(plans):
            share = count // len(plans) + (index < count % len(plans))
            if share:
                more.append([*plan[:9], share, 0, *plan[11:]])
        return self._draw(more)

    def _draw(self, plans: list[list]) -> int:
        """Let the database make the planned additions; returns how many transactions."""
        tx_base = self.writer.block(Transaction, 2 * sum(p[9] for p in plans))
        line_base = self.writer.block(TransactionLine, 3 * sum(p[9] for p in plans))
        for plan in plans:
            plan[11], plan[12] = tx_base, line_base
            tx_base += 2 * plan[9]
            line_base += 3 * plan[9]
        self.writer.insert_plain("scale_plan", PLAN_COLUMNS, plans)
        db.session.execute(text("SET LOCAL work_mem = '256MB'"))  # the drawn rows, in memory
        made = db.session.execute(text(ADDITIONS_SQL).bindparams(now=int(self.now.timestamp())))
        db.session.execute(text("DELETE FROM scale_plan"))
        return int(made.scalar_one())

    def _products(self) -> list[_Product]:
        rows = db.session.scalars(select(SubscriptionProduct)
                                  .where(SubscriptionProduct.active.is_(True))
                                  .order_by(SubscriptionProduct.id)).all()
        products = []
        for product in rows:
            types = tuple((t.id, t.yearly_price) for t in product.certificate_types if t.active)
            if types and product.terms_months:
                products.append(_Product(product.id, tuple(product.terms_months), types))
        return products

    def _largest_customer_plan(self, customer_id: int, transactions_left: int) -> list[int]:
        """Quotas of the subscriptions the first customer still needs to be the largest."""
        wanted = min(LARGEST_CUSTOMER_TRANSACTIONS, self.targets.transactions // 20)
        self.largest_wanted = wanted
        has = db.session.scalar(select(func.count(Transaction.id))
                                .where(Transaction.customer_id == customer_id)) or 0
        needed = min(wanted - has, transactions_left)
        count = min(2, self.missing)
        if needed <= 0 or not count:
            return []
        return [needed // count + (index < needed % count) for index in range(count)]

    def _history(self, chunk: _Chunk, ids: dict, customer: Any, products: list[_Product],
                 quota: int) -> int:
        """One subscription and its history; returns how many transactions it has (or,
        on PostgreSQL, will have once its planned additions are drawn).

        Times are worked in whole seconds and days since the epoch (a few million
        transactions go through here on SQLite).
        """
        ident = next(ids[Subscription])
        rng = random.Random(ident)
        product = products[ident % len(products)]
        months = rng.choice(product.terms)
        today = _day(self.today)
        # no earlier than the day after the customer was created
        since = min(HISTORY_DAYS, today - _day(customer.created_at.date()) - 1)
        first_start = self.today - timedelta(days=rng.randint(2, max(2, since)))
        dates = [first_start, _term_end(first_start, months)]
        auto_renew = rng.random() < 0.7
        while auto_renew and dates[-1] <= self.today:
            dates.append(_term_end(dates[-1], months))
        bounds = [_day(d) for d in dates]  # term i is [bounds[i], bounds[i + 1])
        terms = len(bounds) - 1
        added_on = min(bounds[0] + rng.choice((0, 0, 0, rng.randint(1, 60))), bounds[1] - 1,
                       today - 1)
        status = "active"
        if bounds[-1] <= today:
            status = "expired"
        elif rng.random() < 0.01:
            status = "suspended"
        quantities = {type_id: rng.choice((0, 5, 10, 25)) for type_id, _price in product.types}
        if not any(quantities.values()):
            quantities[product.types[0][0]] = 10
        history = _History(self, chunk, ids, ident, customer.id, customer.currency, months,
                           bounds, dict(product.types))
        first_moment = added_on * 86_400 + rng.randint(8 * 3600, 18 * 3600)
        parts = [(type_id, quantity) for type_id, quantity in quantities.items() if quantity]
        chunk.lines.extend(history.charge("new_subscription", first_moment, parts, 0,
                                          added_on)[1])
        for term in range(1, terms):  # renewals: the renewal inventory, at full price
            chunk.lines.extend(history.charge("renewal", bounds[term] * 86_400, parts, term,
                                              bounds[term])[1])
        count = terms
        extra = max(0, quota - count)
        # additions from the day after the subscription was added
        first_day, last_day = added_on + 1, min(today - 1, bounds[-1] - 1)
        current = dict(quantities)
        if extra and last_day >= first_day:
            if self.writer.postgres:
                additions = extra - extra // (REFUND_EVERY + 1)
                chunk.plans.append([ident, customer.id, customer.currency, months, first_day,
                                    last_day - first_day + 1, bounds, list(quantities),
                                    [history.prices[t] for t in quantities], additions,
                                    REFUND_EVERY, None, None])
                chunk.planned += additions + additions // REFUND_EVERY
                count += additions + additions // REFUND_EVERY
            else:
                count += history.additions(rng, extra, first_day, last_day, current)
        created = _at(first_moment)
        chunk.subscriptions.append((ident, customer.id, product.id, months, dates[-2],
                                    dates[-1], auto_renew, status, created))
        chunk.inventory.extend((next(ids[Inventory]), ident, type_id, current[type_id],
                                quantities[type_id]) for type_id in quantities)
        chunk.terms.extend((next(ids[SubscriptionTerm]), ident, dates[term], dates[term + 1],
                            _at(bounds[term] * 86_400) if term else created)
                           for term in range(terms))
        return count


class _History:
    """The transactions of one subscription as they are made (in Python)."""

    def __init__(self, stage: SubscriptionStage, chunk: _Chunk, ids: dict, subscription: int,
                 customer: int, currency: str, months: int, bounds: list[int],
                 prices: dict[int, int]):
        self.chunk, self.subscription, self.customer = chunk, subscription, customer
        self.currency, self.months, self.bounds, self.prices = currency, months, bounds, prices
        self.transaction_ids, self.line_ids = ids[Transaction], ids[TransactionLine]
        self.now = int(stage.now.timestamp())

    def charge(self, reason: str, moment: int, parts: list[tuple[int, int]], term: int,
               day: int) -> tuple[int, list[tuple]]:
        """A charge of ``parts`` (type, quantity) priced for the days left of a term, and
        its lines (for the caller to add)."""
        transaction = next(self.transaction_ids)
        bounds = self.bounds
        days_in_term = bounds[term + 1] - bounds[term]
        days_left = bounds[term + 1] - max(day, bounds[term])
        total = 0
        lines = []
        for type_id, quantity in parts:
            full = _prorated(self.prices[type_id] * quantity, self.months, 12)
            amount = _prorated(full, days_left, days_in_term)
            total += amount
            lines.append((next(self.line_ids), transaction, type_id, quantity, amount, full,
                          days_left, days_in_term, 0, 0, None))
        self.chunk.transactions.append((transaction, self.customer, self.subscription,
                                        "charge", reason, None, total, self.currency,
                                        _at(moment)))
        return transaction, lines

    def additions(self, rng: random.Random, count: int, first_day: int, last_day: int,
                  current: dict[int, int]) -> int:
        """``count`` transactions: additions on days from ``first_day`` to ``last_day``, one
        in ``REFUND_EVERY`` partly refunded a few days later when that is in its term and
        not in the future; the current term's move ``current``. Returns ``count``."""
        rnd = rng.random
        bounds, lines, transactions = self.bounds, self.chunk.lines, self.chunk.transactions
        type_ids = list(self.prices)
        span = last_day - first_day + 1
        current_term = len(bounds) - 2
        made = 0
        while made < count:
            day = first_day + int(rnd() * span)
            term = bisect_right(bounds, day) - 1
            moment = day * 86_400 + int(rnd() * 86_400)
            if len(type_ids) > 1 and rnd() < 0.16:
                added = rng.sample(type_ids, 2)
            else:
                added = [type_ids[int(rnd() * len(type_ids))]]
            parts = [(type_id, QUANTITIES[int(rnd() * len(QUANTITIES))]) for type_id in added]
            transaction, made_lines = self.charge("inventory_added", moment, parts, term, day)
            made += 1
            if term == current_term:
                for type_id, quantity in parts:
                    current[type_id] += quantity
            refund_at = moment + 86_400 * (1 + int(rnd() * 3)) + int(rnd() * 3600)
            if (made % REFUND_EVERY or made >= count or refund_at > self.now
                    or refund_at >= bounds[term + 1] * 86_400):
                lines.extend(made_lines)
                continue
            line = made_lines[0]
            quantity, amount, full = line[3], line[4], line[5]
            back = amount if quantity == 1 else min(_prorated(amount, 1, quantity), amount)
            lines.append(line[:8] + (1, back, None))
            lines.extend(made_lines[1:])
            refund = next(self.transaction_ids)
            transactions.append((refund, self.customer, self.subscription, "refund", "refund",
                                 transaction, -back, self.currency, _at(refund_at)))
            lines.append((next(self.line_ids), refund, line[2], 1, -back,
                          -_prorated(full, 1, quantity), line[6], line[7], 0, 0, line[0]))
            if term == current_term:
                current[line[2]] -= 1
            made += 1
        return made


# --------------------------------------------------------------------------- 4. profiles


class ProfileStage(Stage):
    """Storefront profiles; in every hundred, four form a corporate account."""

    name = "profiles"
    label = "profiles"
    models = (Organization, Profile)

    def target(self) -> int:
        return self.targets.profiles

    def count(self) -> int:
        return _count(Profile)

    def _chunks(self) -> Iterator[int]:
        ids, organization_ids = self.writer.ids(Profile), self.writer.ids(Organization)
        left = self.missing
        while left:
            size = min(left, CHUNKS["profiles"])
            profiles, organizations = [], []
            organization = None
            rng = random.Random(f"profiles:{left}")
            spread = max(0, HISTORY_DAYS - ORDER_DAYS - 1)
            for offset in range(size):
                ident = next(ids)
                first, last = rng.choice(FIRST), rng.choice(LAST)
                created = self.now - timedelta(days=HISTORY_DAYS - rng.randint(0, spread),
                                               seconds=rng.randint(0, 86_399))
                role, linked = None, None
                if offset % 100 == 0:
                    organization = None
                if offset % 100 == 0 and offset + 4 <= size:
                    organization = next(organization_ids)
                    organizations.append((organization, f"{rng.choice(COMPANIES)} "
                                          f"{rng.choice(SUFFIXES)} Group {organization}",
                                          created))
                    role, linked = "main", created
                elif offset % 100 < 4 and organization is not None:
                    role, linked = "secondary", created + timedelta(days=1)
                profiles.append((ident, f"{first}.{last}.{ident}@{SCALE_DOMAIN}".lower(),
                                 f"{first} {last}", rng.choice(PLACES)[4],
                                 organization if role else None, role, 0, created, linked))
            self.writer.insert(Organization, ("id", "name", "created_at"), organizations)
            self.writer.insert(Profile, ("id", "email", "name", "currency", "organization_id",
                                         "org_role", "credit_balance", "created_at",
                                         "linked_at"), profiles)
            left -= size
            yield size


# --------------------------------------------------------------------------- 5. orders


@dataclass(frozen=True)
class _RetailType:
    id: int
    code: str
    name: str
    kind: str
    price: int


ORDER_COLUMNS = ("id", "number", "placed_by_id", "paid_by_id", "status", "payment_method",
                 "payment_token", "billing", "currency", "total", "created_at", "paid_at")
INVOICE_COLUMNS = ("id", "number", "kind", "order_id", "billing", "currency", "total",
                   "issued_at")
CREDIT_COLUMNS = ("id", "profile_id", "amount", "balance_after", "kind", "order_id", "memo",
                  "created_at")


class OrderStage(Stage):
    """Orders over the last two years, placed by the profiles in turn."""

    name = "orders"
    label = "orders"
    models = (Order, OrderItem, License, Invoice, InvoiceLine, CreditEntry)

    def target(self) -> int:
        return self.targets.orders

    def count(self) -> int:
        return _count(Order)

    def rows(self) -> int:
        return self.missing * 6  # items, licences, the invoice and its lines, credit

    def _chunks(self) -> Iterator[int]:
        profile_ids = list(db.session.scalars(select(Profile.id).order_by(Profile.id)))
        types = [_RetailType(t.id, t.code, t.name, t.kind.value, t.yearly_price)
                 for t in db.session.scalars(select(CertificateType)
                                             .where(CertificateType.code.in_(RETAIL_CODES),
                                                    CertificateType.active.is_(True))
                                             .order_by(CertificateType.code))]
        if not profile_ids or not types:
            return
        ids = {model: self.writer.ids(model) for model in
               (Order, OrderItem, License, Invoice, InvoiceLine, CreditEntry)}
        made = self.count()
        left = self.missing
        start = self.now - timedelta(days=min(ORDER_DAYS, HISTORY_DAYS))
        step = (self.now - timedelta(hours=2) - start) / max(1, self.targets.orders)
        while left:
            size = min(left, CHUNKS["orders"])
            placers = [profile_ids[(made + j) % len(profile_ids)] for j in range(size)]
            people = self._profiles(placers)
            order_numbers = self.writer.reserve("order", size)
            invoice_numbers = self.writer.reserve("invoice", size)
            rows: dict[str, list[tuple]] = {"orders": [], "items": [], "licenses": [],
                                            "invoices": [], "invoice_lines": [],
                                            "credit": []}
            rng = random.Random(f"orders:{made}")
            for j, placer in enumerate(placers):
                moment = max(start + step * (made + j), people[placer]["created_at"]
                             + timedelta(hours=1))
                self._order(rng, rows, ids, types, people, placer,
                            placers[(j + 1) % len(placers)], moment, order_numbers + j,
                            invoice_numbers + j)
            self.writer.insert(Order, ORDER_COLUMNS, rows["orders"])
            self.writer.insert(OrderItem, ("id", "order_id", "certificate_type_id", "quantity",
                                           "unit_price", "amount"), rows["items"])
            self.writer.insert(License, ("id", "order_item_id", "ca_reference", "kind",
                                         "acme_directory_url", "eab_key_id", "created_at"),
                               rows["licenses"])
            self.writer.insert(Invoice, INVOICE_COLUMNS, rows["invoices"])
            self.writer.insert(InvoiceLine, ("id", "invoice_id", "position", "description",
                                             "quantity", "amount", "order_item_id"),
                               rows["invoice_lines"])
            self.writer.insert(CreditEntry, CREDIT_COLUMNS, rows["credit"])
            moved = [{"profile": ident, "balance": person["balance"]}
                     for ident, person in people.items() if person["moved"]]
            if moved:
                table = Profile.__table__
                db.session.execute(update(table).where(table.c.id == bindparam("profile"))
                                   .values(credit_balance=bindparam("balance")), moved)
            made += size
            left -= size
            yield size

    def _profiles(self, ids: list[int]) -> dict[int, dict]:
        """What the orders need of their placers: read by id range (the placers are taken
        in id order), with the balance each order's credit moves."""
        wanted = set(ids)
        people: dict[int, dict] = {}
        for low, high in _runs(sorted(wanted)):
            for row in db.session.execute(
                    select(Profile.id, Profile.email, Profile.name, Profile.currency,
                           Profile.created_at, Profile.credit_balance)
                    .where(Profile.id >= low, Profile.id <= high)):
                if row.id in wanted:
                    people[row.id] = {"email": row.email, "name": row.name,
                                      "currency": row.currency, "created_at": row.created_at,
                                      "balance": row.credit_balance, "moved": False}
        return people

    def _order(self, rng: random.Random, rows: dict, ids: dict, types: list[_RetailType],
               people: dict, placer: int, other: int, moment: datetime, order_number: int,
               invoice_number: int) -> None:
        order, invoice = next(ids[Order]), next(ids[Invoice])
        person = people[placer]
        city, postal, state, country, _currency = rng.choice(PLACES)
        billing = {"name": person["name"], "address1": f"{rng.randint(1, 240)} "
                   f"{rng.choice(LAST)} Street", "city": city, "postal_code": postal,
                   "country": country, "email": person["email"]}
        if state:
            billing["state"] = state
        billing_value = self.writer.json(billing)
        moment += timedelta(seconds=rng.randint(0, 600))
        total = 0
        picks = {int(rng.random() * len(types))}
        if len(types) > 1 and rng.random() < 0.25:  # a second type, listed in code order
            picks.add((min(picks) + 1 + int(rng.random() * (len(types) - 1))) % len(types))
        for position, kind in enumerate((types[i] for i in sorted(picks)), start=1):
            item, quantity = next(ids[OrderItem]), rng.choice((1, 1, 2, 3))
            amount = kind.price * quantity
            total += amount
            rows["items"].append((item, order, kind.id, quantity, kind.price, amount))
            caas = kind.kind == "caas"
            for _ in range(quantity):
                licence = next(ids[License])
                rows["licenses"].append((
                    licence, item, f"CA{licence:012d}", kind.kind,
                    ACME_DIRECTORY_URL.format(code=kind.code) if caas else None,
                    f"eab_{licence:016x}" if caas else None, moment))
            rows["invoice_lines"].append((next(ids[InvoiceLine]), invoice, position,
                                          f"{kind.name} ({kind.code}), 12 months", quantity,
                                          amount, item))
        number = f"SO-{moment.year}-{order_number:06d}"
        roll = rng.random()
        status, method, payer, paid_at = "awaiting_payment", None, None, None
        if roll < 0.85:
            status, paid_at = "paid", min(moment + timedelta(minutes=rng.randint(1, 120)),
                                          self.now)
            if roll < 0.70:
                method, payer = "card", other if rng.random() < 0.05 else placer
            else:
                method, payer = "prepaid_credit", placer
                top_up = total + rng.choice((0, 5000, 20000))
                balance = person["balance"] + top_up
                rows["credit"].append((next(ids[CreditEntry]), placer, top_up, balance,
                                       "top_up", None, "Storefront top-up", moment))
                balance -= total
                rows["credit"].append((next(ids[CreditEntry]), placer, -total, balance,
                                       "order_payment", order, f"Payment of order {number}",
                                       paid_at))
                person["balance"], person["moved"] = balance, True
        rows["orders"].append((order, number, placer, payer, status, method,
                               secrets.token_urlsafe(18), billing_value, person["currency"],
                               total, moment, paid_at))
        rows["invoices"].append((invoice, f"INV-{moment.year}-{invoice_number:06d}", "order",
                                 order, billing_value, person["currency"], total, moment))


def _runs(ids: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted ids as (low, high) ranges, split where they jump far."""
    low = high = ids[0]
    for ident in ids[1:]:
        if ident - high > 1000:
            yield low, high
            low = ident
        high = ident
    yield low, high


def table_counts() -> dict[str, int]:
    """Rows per table the seeder fills, for its summary."""
    models = (Customer, Subscription, Transaction, TransactionLine, Profile, Organization,
              Order, License, Invoice, CreditEntry)
    return {model.__table__.name: _count(model) for model in models}


def analyze() -> None:
    """Refresh the planner's statistics after a big load (PostgreSQL; nothing elsewhere)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("ANALYZE"))
