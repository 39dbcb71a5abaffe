"""The console's pages at scale, through the app, signed in, on a seeded PostgreSQL database.

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_scale \\
        .venv/bin/python bench/bench_pages.py [--requests 20] [--only lists,search,...]

Every page is requested by a signed-in client (Flask's test client on the production
settings, the whole app in the process: sessions, permissions, templates, headers); after
one request to warm it, ``--requests`` (20) are timed and their p50 and p95 printed, in
milliseconds and as ratios to the floor measured first in the same run: a bare endpoint
of the same app, behind the same sign-in, that reads a keyset page of 50 transactions
(``WHERE (created_at, id) < (…) ORDER BY created_at DESC, id DESC LIMIT 50``) and writes
them out as plain text. One more request counts the page's SQL statements. A trivial
signed-in page (Your account) is shown beside the floor.

- **lists**: transactions, orders, profiles, audit events, credit entries and invoices,
  under every sort each offers (both directions), at the first page and at keyset
  positions in the middle and 99% of the way down the order (tokens of real rows, found
  from a sample of the table); a list that pages by number goes to pages 100 and 200;
- **search**: list searches by fragment (profile email, customer company, transactions by
  their customer's company) and the global search;
- **records**: a small customer's and the largest customer's pages (each tab, and its
  Transactions & Refunds page), a small and the largest subscription's, with their
  statement counts side by side; and the largest one's transactions 99% of the way down;
- **dashboard**: the home page as admin, finance and support; the transaction report
  (its default month and one year);
- **invoices**: the Monthly invoices page (the preview) for the month due.

Targets, each printed PASS or MISS: a big list at any position under any sort p95 ≤ 150 ms
(100 ms is the aim: over it is marked); a search by fragment p95 ≤ 50 ms; the largest
customer's and subscription's pages within 2 statements of a small one's and p95 ≤ 150
ms; the Monthly invoices page answers 200 within 1 s. It exits 1 when a page answers
anything but 200 (a refused page link included).

It signs in as ``bench-pages-<role>@bench.example`` (admin, finance and support accounts
made, audited, on the first run; their passwords are set anew each run). With
``--audit-events N`` it first adds audit events (``bench.filler``, written by
``audit.record_many``, so the chain holds) until the log has N, since the seeded database
has almost none. A database whose transactions were never vacuumed (a fresh load, or a
server without autovacuum) is first vacuumed and analysed, as production's autovacuum
would have (``--no-vacuum`` to measure it as it is). Nothing else is written.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dateutil.relativedelta import relativedelta
from flask import url_for
from sqlalchemy import func, literal, select, text, tuple_

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from seeded import add_database_argument, seeded_app  # noqa: E402

from backoffice import audit, invoicing, staff  # noqa: E402
from backoffice.clock import today  # noqa: E402
from backoffice.extensions import db  # noqa: E402
from backoffice.models import (  # noqa: E402
    AuditEvent,
    CreditEntry,
    Customer,
    Invoice,
    Order,
    Profile,
    StaffUser,
    Subscription,
    Transaction,
)
from backoffice.views.finance import NEWEST_TRANSACTIONS  # noqa: E402
from backoffice.views.paging import SortKey, estimated_rows  # noqa: E402
from tests.queries import counted_statements  # noqa: E402

ROLES = ("admin", "finance", "support")
#: the big lists, in the order they are printed
LISTS = (Transaction, Order, Profile, AuditEvent, CreditEntry, Invoice)
#: rows read from a table to place the middle and deep positions
SAMPLE_ROWS = 30_000
#: a page slower than this gets fewer timed requests (at least MIN_REQUESTS)
SLOW_SECONDS = 60.0
MIN_REQUESTS = 5
GROUPS = ("lists", "search", "records", "dashboard", "invoices")
#: how a page shows an error: flashed (a refused argument, say) or on a form's field
ERROR_MARKS = (b"alert-danger alert-dismissable", b'data-testid="error-')

#: targets, in milliseconds of p95
LIST_MS, LIST_AIM_MS, SEARCH_MS, RECORD_MS, PREVIEW_MS = 150, 100, 50, 150, 1000
SLACK = 2
#: what each target's short name (printed on its pages' lines) says
TARGETS = {
    f"≤{LIST_MS} ms": f"a big list, any position, any sort: p95 ≤ {LIST_MS} ms "
                      f"(aim {LIST_AIM_MS} ms)",
    f"≤{SEARCH_MS} ms": f"a search by fragment: p95 ≤ {SEARCH_MS} ms",
    f"±{SLACK}, ≤{RECORD_MS} ms": f"the largest customer's pages: a small one's statements "
                                 f"±{SLACK}, p95 ≤ {RECORD_MS} ms",
    f"200, ≤{PREVIEW_MS} ms": f"the Monthly invoices preview: 200, p95 ≤ {PREVIEW_MS} ms",
}


def email(role: str) -> str:
    return f"bench-pages-{role}@bench.example"


# --------------------------------------------------------------------------- measuring


@dataclass
class Figure:
    label: str
    status: int
    statements: int
    times: list[float]
    target: str = ""
    verdict: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.times, 50)

    @property
    def p95(self) -> float:
        return percentile(self.times, 95)


def percentile(values: list[float], rank: int) -> float:
    """The nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


@dataclass
class Bench:
    clients: dict[str, Any]
    requests: int
    floor: Figure | None = None
    figures: list[Figure] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def measure(self, label: str, url: str, *, role: str = "admin") -> Figure:
        client = self.clients[role]
        started = time.perf_counter()
        response = client.get(url)
        warm = time.perf_counter() - started
        count = self.requests
        if warm * self.requests > SLOW_SECONDS:
            count = max(MIN_REQUESTS, int(SLOW_SECONDS / max(warm, 1e-6)))
        times = []
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        with counted_statements() as sql:
            response = client.get(url)
        figure = Figure(label, response.status_code, len(sql), times)
        if response.status_code != 200:
            self.failures.append(f"{label}: {response.status_code} for {url}")
        elif any(mark in response.data for mark in ERROR_MARKS):
            self.failures.append(f"{label}: the page shows an error message ({url})")
        if count != self.requests:
            figure.label += f" [{count} requests]"
        return figure

    def show(self, figure: Figure, target: str = "", verdict: str = "") -> Figure:
        figure.target, figure.verdict = target, verdict
        self.figures.append(figure)
        if self.floor is not None and figure is not self.floor:
            ratio = f"{figure.p50 / self.floor.p50:6.1f}x {figure.p95 / self.floor.p95:6.1f}x"
        else:
            ratio = f"{'(floor)':>14}"
        print(f"  {figure.label:58} {figure.status:3} {figure.statements:3} stmts "
              f"{figure.p50:8.1f} {figure.p95:8.1f} ms {ratio}  {target:13} {verdict}",
              flush=True)
        return figure


def verdict(p95: float, limit: float, aim: float | None = None) -> str:
    if p95 > limit:
        return "MISS"
    return "PASS (over the aim)" if aim is not None and p95 > aim else "PASS"


# --------------------------------------------------------------------------- setting up


def bench_passwords(app) -> dict[str, str]:
    """A fresh password for each bench account, made (audited) when missing."""
    passwords = {}
    with app.app_context():
        for role in ROLES:
            password = secrets.token_urlsafe(16)
            user = db.session.scalar(select(StaffUser).where(StaffUser.email == email(role)))
            if user is None:
                staff.create_staff(email=email(role), name=f"Page benchmark ({role})",
                                   role=role, password=password, actor=None)
            else:
                user.password_hash = staff.hash_password(password)
            passwords[role] = password
        db.session.commit()
    return passwords


def signed_in(app, role: str, password: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    fields = {"email": email(role), "password": password,
              **({"csrf_token": token.group(1)} if token else {})}
    response = client.post("/login", data=fields)
    if response.status_code not in (302, 303) or "/login" in response.headers.get(
            "Location", "/login"):
        raise SystemExit(f"could not sign in as {email(role)}: {response.status_code}")
    return client


def fill_audit_log(wanted: int) -> None:
    """Audit events (``bench.filler``) until the log has ``wanted``, 10,000 a commit."""
    have = db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    if have >= wanted:
        return
    print(f"adding {wanted - have:,} audit events (the log has {have:,})", flush=True)
    started = time.perf_counter()
    actions = ("subscription.add", "inventory.add", "transaction.refund", "credit.adjust",
               "staff.sign_in", "invoice.issue_monthly")
    while have < wanted:
        size = min(10_000, wanted - have)
        entries = [audit.Entry(action=f"bench.filler.{actions[(have + i) % len(actions)]}",
                               target_type="Customer", target_id=str((have + i) % 100_000 + 1),
                               details={"n": have + i})
                   for i in range(size)]
        audit.record_many(None, entries, actor_label="bench")
        db.session.commit()
        have += size
    db.session.execute(text(f'ANALYZE "{AuditEvent.__table__.name}"'))
    db.session.commit()
    print(f"  in {time.perf_counter() - started:.0f} s", flush=True)


def vacuum_once(app) -> None:
    """``VACUUM (ANALYZE)`` the database when its transactions were never vacuumed (a
    fresh load, or a server without autovacuum): a production database is, and without
    its visibility map no index-only scan skips the table."""
    with app.app_context():
        done = db.session.execute(text(
            "SELECT last_vacuum IS NOT NULL OR last_autovacuum IS NOT NULL"
            " FROM pg_stat_user_tables WHERE relname = :table"),
            {"table": Transaction.__table__.name}).scalar()
        db.session.rollback()
        if done is not False:
            return
        print("vacuuming the database (never vacuumed since it was loaded)", flush=True)
        started = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as raw:
            raw.execute(text("VACUUM (ANALYZE)"))
        print(f"  in {time.perf_counter() - started:.0f} s", flush=True)


def add_floor(app, position: tuple[Any, int]) -> None:
    """The floor: a bare endpoint behind the sign-in that reads a keyset page of 50
    transactions and writes them out as text, no template."""
    at, ident = position

    def floor():
        rows = db.session.execute(
            select(Transaction.id, Transaction.created_at, Transaction.amount,
                   Transaction.currency)
            .where(tuple_(Transaction.created_at, Transaction.id)
                   < tuple_(literal(at, Transaction.created_at.type),
                            literal(ident, Transaction.id.type)))
            .order_by(Transaction.created_at.desc(), Transaction.id.desc()).limit(50)).all()
        return "\n".join(f"{r.id} {r.created_at:%Y-%m-%d %H:%M} {r.amount} {r.currency}"
                         for r in rows), 200, {"Content-Type": "text/plain"}

    app.add_url_rule("/admin/bench-floor", "bench_floor", floor)


def sample(table: str, column: str, id_column: str) -> list[tuple[Any, int]]:
    """(key, id) of about SAMPLE_ROWS rows of ``table``, in the key's order."""
    estimate = estimated_rows(table) or 0
    share = 100.0 if estimate <= 3 * SAMPLE_ROWS else 100.0 * SAMPLE_ROWS / estimate
    rows = db.session.execute(text(
        f'SELECT "{column}", "{id_column}" FROM "{table}" '  # noqa: S608  # the schema's names
        f"TABLESAMPLE SYSTEM ({share:.6f}) REPEATABLE (7)")).all()
    if not rows:
        rows = db.session.execute(text(
            f'SELECT "{column}", "{id_column}" FROM "{table}" LIMIT {SAMPLE_ROWS}')).all()  # noqa: S608
    return sorted((row[0], row[1]) for row in rows)


def position_token(key: SortKey, rows: list[tuple[Any, int]], share: float) -> str | None:
    """The token of the row ``share`` of the way along the order of ``key``."""
    if not rows:
        return None
    if key.desc:
        share = 1 - share
    value, ident = rows[min(len(rows) - 1, int(share * len(rows)))]
    row = SimpleNamespace(**{key.column.key: value, key.id_column.key: ident})
    return key.token(row)


# --------------------------------------------------------------------------- the pages


def list_views(app) -> list:
    views = {v.model: v for v in app.extensions["admin"][0]._views if hasattr(v, "model")}
    return [views[model] for model in LISTS]


def bench_lists(bench: Bench, app) -> None:
    print("lists (first page, middle and 99% of the way, every sort):")
    for view in list_views(app):
        table = view.model.__table__.name
        with app.app_context():
            rows = estimated_rows(table) or db.session.scalar(
                select(func.count()).select_from(view.model))
        with app.test_request_context():
            base = view.get_url(f"{view.endpoint}.index_view")
        names = [name for name, _ in view._list_columns]
        default = view._default_sort()
        # the sorts an address can ask for: the list's columns that sort
        sorts = [(name, desc) for name in view._sortable_columns if name in names
                 for desc in (True, False)]
        if default and (default[0], default[2]) not in sorts:
            sorts.insert(0, (default[0], default[2]))
        print(f" {view.name} (about {rows:,} rows):")
        for name, desc in sorts:
            is_default = default is not None and (name, desc) == (default[0], default[2])
            args = "" if is_default else f"sort={names.index(name)}" + ("&desc=1" if desc
                                                                        else "")
            label = f"{view.name}: {name} {'desc' if desc else 'asc'}" + (
                " (default)" if is_default else "")
            key = view.list_sort_key(name, desc)
            positions: list[tuple[str, str]] = [("first", args)]
            if key is not None:
                with app.app_context():
                    keys = sample(table, key.column.name, key.id_column.name)
                for where, share in (("middle", 0.5), ("99%", 0.99)):
                    token = position_token(key, keys, share)
                    if token:
                        positions.append((where, "&".join(filter(None, (args,
                                                                         f"after={token}")))))
            else:
                positions += [("page 100", "&".join(filter(None, (args, "page=99")))),
                              ("page 200", "&".join(filter(None, (args, "page=199"))))]
            for where, query in positions:
                url = f"{base}?{query}" if query else base
                figure = bench.measure(f"{label}, {where}", url)
                bench.show(figure, f"≤{LIST_MS} ms", verdict(figure.p95, LIST_MS, LIST_AIM_MS))


def bench_search(bench: Bench, app, fragments: dict[str, str]) -> None:
    print("search by fragment:")
    with app.test_request_context():
        cases = [
            ("profiles, email fragment (one match)", url_for(
                "profile.index_view", search=fragments["email_rare"])),
            ("profiles, email fragment (many)", url_for(
                "profile.index_view", search=fragments["email_common"])),
            ("customers, company fragment (a few)", url_for(
                "customer.index_view", search=fragments["company_rare"])),
            ("customers, company fragment (many)", url_for(
                "customer.index_view", search=fragments["company_common"])),
            ("transactions, customer company fragment (a few)", url_for(
                "transaction.index_view", search=fragments["company_rare"])),
            ("transactions, customer company fragment (many)", url_for(
                "transaction.index_view", search=fragments["company_common"])),
            ("global search, email fragment", url_for(
                "search.index", q=fragments["email_common"], all=1)),
            ("global search, company fragment", url_for(
                "search.index", q=fragments["company_common"], all=1)),
            ("global search, number fragment", url_for(
                "search.index", q=fragments["number"], all=1)),
        ]
    for label, url in cases:
        figure = bench.measure(label, url)
        bench.show(figure, f"≤{SEARCH_MS} ms", verdict(figure.p95, SEARCH_MS))


def bench_records(bench: Bench, app, small: dict[str, int], huge: dict[str, int]) -> None:
    print(f"record pages: a small customer (#{small['customer']}, {small['transactions']:,} "
          f"transactions) and the largest (#{huge['customer']}, {huge['transactions']:,}):")
    with app.test_request_context():
        def pages(ids: dict[str, int]) -> list[tuple[str, str]]:
            customer, subscription = ids["customer"], ids["subscription"]
            return [
                ("customer, Details tab", url_for("customer.details_view", id=customer)),
                ("customer, Subscriptions tab", url_for("customer.details_view",
                                                        id=customer, tab="subscriptions")),
                ("customer, Transactions tab", url_for("customer.details_view",
                                                       id=customer, tab="transactions")),
                ("customer, Transactions & Refunds", url_for(
                    "billing.customer_transactions", customer_id=customer)),
                (f"subscription ({ids['subscription_transactions']:,} transactions)",
                 url_for("subscription.details_view", id=subscription)),
            ]

        small_pages, huge_pages = pages(small), pages(huge)
    small_figures = []
    for (label, small_url), (_, huge_url) in zip(small_pages, huge_pages, strict=True):
        one = bench.show(bench.measure(f"small: {label}", small_url))
        small_figures.append(one)
        big = bench.measure(f"largest: {label.split(' (')[0]}", huge_url)
        record_verdict(bench, big, one)
    # the largest customer's transactions 99% of the way down (Older, many times over),
    # against the small customer's first page
    with app.app_context():
        customer_token = deep_transaction_token(Transaction.customer_id, huge["customer"])
        subscription_token = deep_transaction_token(Transaction.subscription_id,
                                                    huge["subscription"])
    with app.test_request_context():
        deep = [
            ("customer, Transactions tab", 2, url_for(
                "customer.details_view", id=huge["customer"], tab="transactions",
                transactions_after=customer_token)),
            ("customer, Transactions & Refunds", 3, url_for(
                "billing.customer_transactions", customer_id=huge["customer"],
                transactions_after=customer_token)),
            ("subscription", 4, url_for("subscription.details_view", id=huge["subscription"],
                                        transactions_after=subscription_token)),
        ]
    for label, index, url in deep:
        record_verdict(bench, bench.measure(f"largest: {label}, 99% down", url),
                       small_figures[index])


def record_verdict(bench: Bench, big: Figure, small: Figure) -> None:
    same = abs(big.statements - small.statements) <= SLACK
    bench.show(big, f"±{SLACK}, ≤{RECORD_MS} ms",
               "PASS" if same and big.p95 <= RECORD_MS else
               "MISS" + ("" if same else f" ({big.statements} vs {small.statements} stmts)"))


def deep_transaction_token(column, ident: int) -> str:
    """The Older token of a record page's transactions (newest first) 99% of the way."""
    total = db.session.scalar(select(func.count()).select_from(Transaction)
                              .where(column == ident)) or 0
    row = db.session.execute(
        select(Transaction.created_at, Transaction.id).where(column == ident)
        .order_by(*NEWEST_TRANSACTIONS.order_by()).offset(total * 99 // 100).limit(1)).one()
    return NEWEST_TRANSACTIONS.token(row)


def bench_dashboard(bench: Bench, app) -> None:
    print("dashboard and transaction report:")
    for role in ROLES:
        if role in bench.clients:
            bench.show(bench.measure(f"dashboard as {role}", "/admin/", role=role))
    with app.test_request_context():
        day = today()
        month = url_for("transaction_report.index")
        year = url_for("transaction_report.index",
                       date_from=(day - relativedelta(years=1) + timedelta(days=1)).isoformat(),
                       date_to=day.isoformat())
    bench.show(bench.measure("transaction report, this month (default)", month))
    bench.show(bench.measure("transaction report, one year", year))


def bench_invoices(bench: Bench, app) -> None:
    """The month due; and, when earlier months are uninvoiced too (the seeded database
    invoices nothing), the first month whose preview carries as many transactions as the
    month due has of its own: what the due month's preview is once the others are
    invoiced."""
    print("monthly invoices:")
    month = today().replace(day=1) - relativedelta(months=1)
    with app.app_context():
        summary = invoicing.pending_summary(month=month)
        own = db.session.scalar(select(func.count()).select_from(Transaction).where(
            Transaction.invoice_id.is_(None), Transaction.created_at >= _moment(month),
            Transaction.created_at < _moment(month + relativedelta(months=1)))) or 0
        like = _month_carrying(own, month)
    due = sum(n for _c, n, _t in summary.totals)
    print(f" due for {month:%Y-%m}: {summary.invoices:,} invoices of {due:,} transactions, "
          f"{own:,} of them made in the month")
    months = [(month, f"Monthly invoices, preview of {month:%Y-%m} (the month due)")]
    if like is not None and due > 2 * own:
        months.append((like, f"Monthly invoices, preview of {like:%Y-%m} "
                             f"(a month's worth due)"))
    for shown, label in months:
        with app.test_request_context():
            url = url_for("monthly_invoices.index", month=f"{shown:%Y-%m}")
        figure = bench.measure(label, url, role="finance")
        bench.show(figure, f"200, ≤{PREVIEW_MS} ms",
                   verdict(figure.p95, PREVIEW_MS) if figure.status == 200 else "MISS")


def _moment(day):
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month_carrying(count: int, before) -> Any:
    """The first month before ``before`` whose preview carries at least ``count``
    uninvoiced transactions (all made up to its end), or None."""
    month = func.date_trunc("month", func.timezone("UTC", Transaction.created_at))
    rows = db.session.execute(select(month, func.count()).where(
        Transaction.invoice_id.is_(None), Transaction.created_at < _moment(before))
        .group_by(month).order_by(month)).all()
    carried = 0
    for start, made in rows:
        carried += made
        if carried >= count:
            return start.date()
    return None


# --------------------------------------------------------------------------- the data


def customers_to_show() -> tuple[dict[str, int], dict[str, int]]:
    """A small customer (the newest subscription's) and the largest one (the seeder's
    first customer, which it gives the most transactions), each with its subscription
    that has the most transactions."""

    def transactions_of(column, ident: int) -> int:
        return db.session.scalar(select(func.count()).select_from(Transaction)
                                 .where(column == ident)) or 0

    def described(customer: int) -> dict[str, int]:
        subscriptions = db.session.scalars(select(Subscription.id).where(
            Subscription.customer_id == customer)).all()
        counted = sorted(((transactions_of(Transaction.subscription_id, s), s)
                          for s in subscriptions), reverse=True)
        most, subscription = counted[0] if counted else (0, 0)
        return {"customer": customer, "subscription": subscription,
                "transactions": transactions_of(Transaction.customer_id, customer),
                "subscription_transactions": most}

    first = db.session.scalar(select(func.min(Subscription.customer_id)))
    newest = db.session.scalar(select(Subscription.customer_id)
                               .order_by(Subscription.id.desc()).limit(1))
    if first is None or newest is None:
        raise SystemExit("the database has no subscriptions: seed it with flask seed-scale")
    return described(newest), described(first)


def search_fragments() -> dict[str, str]:
    """Fragments that find something in a seeded database."""
    profile = db.session.scalar(select(Profile.email).order_by(Profile.id.desc()).limit(1))
    customer = db.session.scalar(select(Customer.company_name)
                                 .order_by(Customer.id.desc()).limit(1)) or "x"
    order = db.session.scalar(select(Order.number).order_by(Order.id.desc()).limit(1)) or "1"
    local = (profile or "x@").split("@")[0]
    digits = re.sub(r"[^0-9]", "", order)
    return {
        "email_rare": local.split(".")[-1] + "@",  # the id in first.last.<id>@…
        "email_common": local.split(".")[1] if "." in local else local,  # a last name
        "company_rare": customer.split()[-1],  # the id ending the company name
        "company_common": customer.split()[0],  # one of the demo's company names
        "number": digits[-6:] or order,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="timed requests a page")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"the groups to run, of {', '.join(GROUPS)}")
    parser.add_argument("--audit-events", type=int, default=0,
                        help="add audit events until the log has this many first")
    parser.add_argument("--no-vacuum", action="store_true",
                        help="measure a database never vacuumed as it is")
    add_database_argument(parser)
    options = parser.parse_args()
    groups = {g.strip() for g in options.only.split(",") if g.strip()}
    if groups - set(GROUPS):
        parser.error(f"unknown groups: {', '.join(sorted(groups - set(GROUPS)))}")
    app = seeded_app(options.database_url)
    with app.app_context():
        if options.audit_events:
            fill_audit_log(options.audit_events)
    if not options.no_vacuum:
        vacuum_once(app)
    with app.app_context():
        small, huge = customers_to_show()
        fragments = search_fragments()
        floor_rows = sample(Transaction.__table__.name, "created_at", "id")
        middle = floor_rows[len(floor_rows) // 2] if floor_rows else (None, 0)
        counts = {model.__table__.name: estimated_rows(model.__table__.name)
                  for model in LISTS}
        # how closely the transactions' rows lie in time order (1: appended as they
        # happen; the seeder writes a subscription's history at once, near 0)
        order = db.session.scalar(text(
            "SELECT correlation FROM pg_stats WHERE tablename = :table"
            " AND attname = 'created_at'"), {"table": Transaction.__table__.name})
    if middle[0] is None:
        raise SystemExit("the database has no transactions: seed it with flask seed-scale")
    add_floor(app, middle)
    passwords = bench_passwords(app)
    clients = {role: signed_in(app, role, password) for role, password in passwords.items()}
    bench = Bench(clients, options.requests)

    print(f"Pages on {app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          + ", ".join(f"{table} ~{rows or 0:,}" for table, rows in counts.items())
          + (f"; transactions' heap order by time {order:.2f}" if order is not None else ""))
    print(f"  {'page':58} {'':3} {'SQL':>9} {'p50':>8} {'p95':>8}    {'x floor p50, p95':>14}"
          f"  {'target':13}")
    print("floor:")
    bench.floor = bench.show(bench.measure("bare endpoint, keyset LIMIT 50 of transactions",
                                           "/admin/bench-floor"))
    bench.show(bench.measure("a trivial signed-in page (Your account)", "/admin/account/"))
    runs: dict[str, Callable[[], None]] = {
        "lists": lambda: bench_lists(bench, app),
        "search": lambda: bench_search(bench, app, fragments),
        "records": lambda: bench_records(bench, app, small, huge),
        "dashboard": lambda: bench_dashboard(bench, app),
        "invoices": lambda: bench_invoices(bench, app),
    }
    for group in GROUPS:
        if group in groups:
            runs[group]()

    print("targets:")
    judged = [f for f in bench.figures if f.verdict]
    for target in dict.fromkeys(f.target for f in judged):
        ours = [f for f in judged if f.target == target]
        missed = [f for f in ours if f.verdict.startswith("MISS")]
        worst = max(ours, key=lambda f: f.p95)
        print(f"  {TARGETS[target]}: {'MISS' if missed else 'PASS'}, "
              f"{len(ours) - len(missed)} of {len(ours)} pages; the slowest p95 "
              f"{worst.p95:.0f} ms ({worst.label})")
        for figure in missed:
            print(f"    missed: {figure.label}, p95 {figure.p95:.0f} ms {figure.verdict[4:]}")
    if bench.failures:
        print("pages that went wrong:")
        for failure in bench.failures:
            print(f"  {failure}")
        sys.exit(1)


if __name__ == "__main__":
    main()
