"""The console's global search: one query over every kind of record staff look up.

A whole email, document number, CA Reference or transaction reference is tried first on
its unique (or indexed) column; when exactly one record has it, the console opens that
record. Otherwise each kind is searched by fragment (``ILIKE '%x%'``, served by trigram
indexes on PostgreSQL), at most ``limit`` hits per kind, so the cost does not grow with
the tables. Reads only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, or_, select

from .extensions import db
from .models import (
    Customer,
    Invoice,
    License,
    Order,
    Organization,
    Profile,
    Reseller,
    Transaction,
)

#: shortest fragment searched (one character would match most of every table)
MIN_FRAGMENT = 2
#: longest query taken (longer input is refused with a message, not searched)
MAX_QUERY = 200
#: hits shown per kind; "more" says when there are others
DEFAULT_LIMIT = 10

_TRANSACTION_REF = re.compile(r"[Tt]?([0-9]{1,10})")


@dataclass(frozen=True)
class Hit:
    """One record found: its kind, id, what it is called and a line about it."""

    kind: str
    id: int
    label: str
    detail: str = ""


@dataclass
class SearchResults:
    """Hits grouped by kind (in :data:`KINDS` order), and the single exact match if any."""

    query: str
    groups: dict[str, list[Hit]] = field(default_factory=dict)
    more: dict[str, bool] = field(default_factory=dict)
    exact: Hit | None = None

    @property
    def total(self) -> int:
        return sum(len(hits) for hits in self.groups.values())


@dataclass(frozen=True)
class Kind:
    """How one kind of record is found and shown."""

    name: str
    title: str
    #: the query for a fragment (an ILIKE pattern), or None when the kind has none
    fragment: Callable[[str], Select] | None
    #: the query for a whole value (an email, a number), or None when the text cannot be one
    exact: Callable[[str], Select | None]
    #: (label, detail) for a row
    describe: Callable[[Any], tuple[str, str]]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column, pattern: str):
    return column.ilike(pattern, escape="\\")


def _email(text: str) -> str | None:
    text = text.strip().lower()
    return text if re.fullmatch(r"[^@\s]+@[^@\s]+", text) else None


def _profile_exact(text: str) -> Select | None:
    email = _email(text)
    return select(Profile).where(Profile.email == email) if email else None


def _customer_exact(text: str) -> Select | None:
    email = _email(text)
    return (select(Customer).where(func.lower(Customer.customer_admin_email) == email)
            if email else None)


def _number_exact(model) -> Callable[[str], Select | None]:
    def exact(text: str) -> Select | None:
        number = text.strip().upper()
        return select(model).where(model.number == number) if "-" in number else None
    return exact


def _license_exact(text: str) -> Select | None:
    return select(License).where(License.ca_reference == text.strip())


def _transaction_exact(text: str) -> Select | None:
    match = _TRANSACTION_REF.fullmatch(text.strip())
    if match is None or int(match.group(1)) > 2 ** 31 - 1:
        return None
    return select(Transaction).where(Transaction.id == int(match.group(1)))


def _none(_text: str) -> Select | None:
    return None


KINDS: tuple[Kind, ...] = (
    Kind("profile", "Profiles",
         lambda p: select(Profile).where(or_(_contains(Profile.email, p),
                                             _contains(Profile.name, p))),
         _profile_exact,
         lambda r: (r.email, r.name)),
    Kind("organization", "Organizations",
         lambda p: select(Organization).where(_contains(Organization.name, p)),
         _none,
         lambda r: (r.name, "")),
    Kind("customer", "Customers",
         lambda p: select(Customer).where(or_(_contains(Customer.company_name, p),
                                              _contains(Customer.customer_admin_email, p))),
         _customer_exact,
         lambda r: (r.company_name, r.customer_admin_email or r.city)),
    Kind("reseller", "Resellers",
         lambda p: select(Reseller).where(_contains(Reseller.company_name, p)),
         _none,
         lambda r: (r.company_name, r.status.value)),
    Kind("order", "Orders",
         lambda p: select(Order).where(_contains(Order.number, p)),
         _number_exact(Order),
         lambda r: (r.number, r.status.value)),
    Kind("invoice", "Invoices",
         lambda p: select(Invoice).where(_contains(Invoice.number, p)),
         _number_exact(Invoice),
         lambda r: (r.number, r.kind.value)),
    Kind("license", "Licences",
         lambda p: select(License).where(_contains(License.ca_reference, p)),
         _license_exact,
         lambda r: (r.ca_reference, r.kind.value)),
    Kind("transaction", "Transactions",
         None,
         _transaction_exact,
         lambda r: (str(r), f"{r.kind.value} {r.reason.value}")),
)

KIND_TITLES = {kind.name: kind.title for kind in KINDS}


def search(query: str, *, limit: int = DEFAULT_LIMIT) -> SearchResults:
    """Every kind's hits for ``query``; ``exact`` is set when one record has it whole.

    The caller checks the length (:data:`MIN_FRAGMENT`, :data:`MAX_QUERY`) first; a
    shorter query is only tried whole.
    """
    text = query.strip()
    results = SearchResults(query=text)
    if not text:
        return results
    exact_hits: list[Hit] = []
    for kind in KINDS:
        statement = kind.exact(text)
        if statement is None:
            continue
        rows = db.session.scalars(statement.limit(2)).all()
        exact_hits += [_hit(kind, row) for row in rows]
    if len(exact_hits) == 1:
        results.exact = exact_hits[0]
    pattern = f"%{_escape_like(text)}%"
    for kind in KINDS:
        hits: list[Hit] = []
        if kind.fragment is not None and len(text) >= MIN_FRAGMENT:
            # No ORDER BY: the planner can stop at the first ``limit`` matches of its
            # index scan; the few rows are put in order here.
            rows = db.session.scalars(kind.fragment(pattern).limit(limit + 1)).all()
            results.more[kind.name] = len(rows) > limit
            hits = sorted((_hit(kind, row) for row in rows[:limit]),
                          key=lambda hit: (hit.label.lower(), hit.id))
        for hit in exact_hits:
            if hit.kind == kind.name and hit not in hits:
                hits.insert(0, hit)
        if hits:
            results.groups[kind.name] = hits
    return results


def _hit(kind: Kind, row) -> Hit:
    label, detail = kind.describe(row)
    return Hit(kind=kind.name, id=row.id, label=label, detail=detail or "")
