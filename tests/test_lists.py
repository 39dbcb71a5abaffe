"""Lists and record pages that cost the same at any size (views/base.py, views/paging.py).

- Keyset pages: Next and Previous by (sort key, id) skip and repeat no row, ties included,
  under every offered sort; their tokens are checked (a bad one is a message, never a 500).
- Counts: exact on a page that holds the whole list, capped ("10,000+") when filtered,
  the planner's estimate for a big unfiltered table on PostgreSQL.
- Search: a whole email or number is looked up first; fragments use the trigram indexes
  on PostgreSQL.
- Statement counts: list pages and record pages run as many statements for 300 rows as
  for 10 (give or take 2): no query per row.
"""

from __future__ import annotations

import base64
import html as htmllib
import json
import re
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from backoffice import accounts, reports
from backoffice.errors import InvalidInput
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    CreditEntry,
    Customer,
    Invoice,
    Order,
    Organization,
    Profile,
    StaffUser,
    Transaction,
)
from backoffice.views.base import EnumValueEqualFilter, leads_an_index
from backoffice.views.paging import COUNT_CAP, SEARCH_COUNT_CAP, SortKey
from tests import factories, volume
from tests.queries import counted_statements
from tests.test_list_params import filter_arg, flashes, model_views, view_of

#: tolerance of the statement-count comparisons (a count query on a full page, say)
SLACK = 2
NOV_20 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def cells(page: str, column: str) -> list[str]:
    """The text of one column of a list page, row by row."""
    found = re.findall(rf'<td class="col-{re.escape(column)}">\s*(.*?)\s*</td>', page, re.S)
    return [htmllib.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def link(page: str, testid: str) -> str | None:
    """The address of the link with this test id, or None when it is not a link."""
    match = re.search(rf'href="([^"]+)" data-testid="{re.escape(testid)}"', page)
    return htmllib.unescape(match.group(1)) if match else None


def row_count(page: str) -> str:
    match = re.search(r'data-testid="row-count">([^<]*)<', page)
    assert match, "no row count on the list"
    return match.group(1).strip()


def sort_index(app, endpoint: str, column: str) -> str:
    view = view_of(app, endpoint)
    return str([name for name, _ in view._list_columns].index(column))


@pytest.fixture
def world(appctx):
    """A customer with one subscription (through the domain), and a profile."""
    with appctx() as session:
        product = factories.catalog("billing")
        customer = factories.customer("Acme Ltd")
        subscription = factories.subscribe(customer, product, {"DV": 1})
        profile = accounts.create_profile(email="ann@volume.example", name="Ann Example")
        session.commit()
        return {"customer": customer.id, "subscription": subscription.id,
                "profile": profile.id, "charge": factories.charge_of(subscription).id}


def _subscription(ident):
    return db.session.get(factories.Subscription, ident)


# --------------------------------------------------------------------------- keyset


def _add_rows(endpoint: str, world, count: int, ties: int) -> None:
    if endpoint == "transaction":
        volume.transactions(_subscription(world["subscription"]), count, ties=ties)
    elif endpoint == "profile":
        volume.profiles(count, ties=ties)
    elif endpoint in ("order", "invoice"):
        orders = volume.orders(world["profile"], count, ties=ties)
        if endpoint == "invoice":
            volume.invoices(orders)
    elif endpoint == "creditentry":
        volume.credit_entries(world["profile"], count, ties=ties)
    elif endpoint == "auditevent":
        volume.audit_events(count, target=db.session.get(Profile, world["profile"]),
                            ties=ties)


#: (endpoint, model, the column a list row shows its record by, its attribute)
SHOWN = {
    "transaction": (Transaction, "id", "id"),
    "profile": (Profile, "id", "id"),
    "order": (Order, "number", "number"),
    "invoice": (Invoice, "number", "number"),
    "creditentry": (CreditEntry, "id", "id"),
    "auditevent": (AuditEvent, "seq", "seq"),
}

#: (endpoint, sort column or None for the default, descending)
ORDERS = [
    ("transaction", None, True), ("transaction", "created_at", False),
    ("transaction", "id", False),
    ("profile", "name", False), ("profile", "name", True), ("profile", "created_at", True),
    ("profile", "email", False),
    ("order", None, True), ("order", "created_at", False), ("order", "number", True),
    ("invoice", None, True), ("invoice", "issued_at", False),
    ("creditentry", None, True),
    ("auditevent", None, True), ("auditevent", "created_at", False),
]
#: searched lists (their pages are ordered from the matches): the search, and what matches
SEARCHED = {
    "profile": ("bulk", lambda row: "bulk" in row.email),
    "transaction": ("acme", lambda row: True),
    "order": ("ORD-V", lambda row: row.number.startswith("ORD-V")),
}


def _expected(app, endpoint: str, sort: str | None, desc: bool, search: str | None
              ) -> list[str]:
    model, _column, attribute = SHOWN[endpoint]
    view = view_of(app, endpoint)
    name = sort or view.column_default_sort[0]
    key = SortKey.of(name, getattr(model, name), model.id, desc)
    rows = db.session.scalars(select(model).order_by(*key.order_by())).all()
    if search:
        rows = [row for row in rows if SEARCHED[endpoint][1](row)]
    return [str(getattr(row, attribute)) for row in rows]


@pytest.mark.parametrize("endpoint, sort, desc, search", [
    *((*order, None) for order in ORDERS),
    *((*order, SEARCHED[order[0]][0]) for order in ORDERS if order[0] in SEARCHED)])
def test_next_and_previous_skip_and_repeat_no_row(app, appctx, world, client_as, endpoint,
                                                 sort, desc, search):
    client = client_as("admin")
    with appctx() as session:
        _add_rows(endpoint, world, 67, ties=4)  # four rows to each sort key
        session.commit()
        expected = _expected(app, endpoint, sort, desc, search)
    column = SHOWN[endpoint][1]
    query = {"page_size": "20"}
    if search:
        query["search"] = search
    if sort:
        query.update(sort=sort_index(app, endpoint, sort), desc="1" if desc else "0")
    first = client.get(f"/admin/{endpoint}/", query_string=query)
    assert first.status_code == 200
    pages = [first.get_data(as_text=True)]
    assert link(pages[0], "page-prev") is None and link(pages[0], "page-first") is None
    while (following := link(pages[-1], "page-next")) is not None:
        response = client.get(following)
        assert response.status_code == 200, following
        pages.append(response.get_data(as_text=True))
        assert len(pages) < 20
    forward = [cells(page, column) for page in pages]
    assert [row for page in forward for row in page] == expected
    assert all(len(page) == 20 for page in forward[:-1])
    # ...and back again with Previous: the same pages, in reverse
    backward = [forward[-1]]
    current = pages[-1]
    while (preceding := link(current, "page-prev")) is not None:
        current = client.get(preceding).get_data(as_text=True)
        backward.append(cells(current, column))
    assert backward[::-1] == forward
    assert link(current, "page-first") is None  # Previous reached the first page itself


def test_page_links_keep_filters_and_search_and_a_new_sort_starts_over(app, appctx, world,
                                                                      client_as):
    client = client_as("admin")
    with appctx() as session:
        volume.profiles(45, name="Zed Tied")
        session.commit()
    page = client.get("/admin/profile/", query_string={
        "search": "volume", "page_size": "20"}).get_data(as_text=True)
    following = link(page, "page-next")
    assert following is not None
    args = parse_qs(urlsplit(following).query)
    assert args["search"] == ["volume"] and args["page_size"] == ["20"] and "after" in args
    second = client.get(following).get_data(as_text=True)
    assert "ann@volume.example" not in second or "ann@volume.example" not in page
    # The sort links of a later page start at the first page of the new order.
    sort_links = re.findall(r'href="([^"]*sort=[^"]*)"', second)
    assert sort_links and not any("after=" in htmllib.unescape(u) for u in sort_links)


# --------------------------------------------------------------------------- tokens


def _a_token(client, endpoint: str = "transaction", **query) -> str:
    page = client.get(f"/admin/{endpoint}/", query_string={"page_size": "20", **query})
    following = link(page.get_data(as_text=True), "page-next")
    assert following, "the list has no second page"
    return parse_qs(urlsplit(following).query)["after"][0]


def _forged(*parts) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def many_transactions(appctx, world):
    with appctx() as session:
        volume.transactions(_subscription(world["subscription"]), 45)
        session.commit()
    return world


BAD_TOKENS = [
    "", "x", "!!!", "a" * 700, "\x00", "²", "W10", _forged("created_at"),
    _forged("id", 5, 5), _forged("created_at", "2026-01-05T09:00:00", 5),
    _forged("created_at", "2026-01-05T09:00:00+00:00", 0),
    _forged("created_at", "2026-01-05T09:00:00+00:00", 2 ** 63),
    _forged("created_at", "2026-01-05T09:00:00+00:00", True),
    _forged("created_at", "2026-01-05T09:00:00+00:00", "5"),
    _forged("created_at", "2026-02-30T09:00:00+00:00", 5),
    _forged("created_at", 12, 5), _forged("created_at", None, 5),
    _forged("created_at", "2026-01-05T09:00:00+00:00", 5, "more"),
    _forged({"a": 1}, "x", 5),
]


@pytest.mark.parametrize("name", ["after", "before"])
@pytest.mark.parametrize("token", BAD_TOKENS)
def test_a_bad_position_is_a_message_and_the_first_page(app, many_transactions, client_as,
                                                        name, token):
    client = client_as("admin")
    response = client.get("/admin/transaction/", query_string={name: token, "page_size": "20"})
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/admin/transaction/"
    assert parse_qs(location.query) == {"page_size": ["20"]}
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    message = ("Remove the control characters" if "\x00" in token
               else "This page link is not one this list makes")
    assert message in flashes(page)
    assert len(cells(page, "id")) == 20


def test_positions_belong_to_their_order_and_come_once(app, many_transactions, client_as):
    client = client_as("admin")
    token = _a_token(client)  # of the default order, by creation
    by_id = {"sort": sort_index(app, "transaction", "id")}
    for query, message in [
        ({**by_id, "after": token}, "belongs to another order"),
        ({"after": token, "before": token}, "names more than one place"),
        ({"after": [token, token]}, "names more than one place"),
    ]:
        response = client.get("/admin/transaction/", query_string=query)
        assert response.status_code == 303, query
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert message in flashes(page), query
    # The same position under its own order is fine, with a direction of its own.
    assert client.get("/admin/transaction/", query_string={"after": token, "desc": "0"}
                      ).status_code == 200
    # A list with a text key pages by number: a position is left out with a message.
    counter = client.get("/admin/counter/", query_string={"after": token})
    assert counter.status_code == 303
    assert "pages by page number" in flashes(client.get(counter.headers["Location"])
                                             .get_data(as_text=True))


def test_a_deep_page_number_is_the_first_page_with_a_message(many_transactions, client_as):
    client = client_as("admin")
    response = client.get("/admin/transaction/", query_string={"page": "999999"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "further than page numbers reach" in flashes(page)
    assert len(cells(page, "id")) == 46  # 45 + the subscription's own charge, one page
    shallow = client.get("/admin/transaction/", query_string={"page": "1", "page_size": "20"})
    assert len(cells(shallow.get_data(as_text=True), "id")) == 20


def test_a_record_page_ignores_a_bad_position(app, many_transactions, client_as):
    client = client_as("admin")
    customer = many_transactions["customer"]
    for token in BAD_TOKENS[:8]:
        response = client.get(f"/admin/customer/{customer}/transactions", query_string={
            "transactions_after": token})
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert len(re.findall(r'href="/admin/transaction/details/\?id=', page)) == 46


# --------------------------------------------------------------------------- counts


def test_counts_exact_capped_and_from_the_page(app, appctx, world, client_as):
    client = client_as("admin")
    view = view_of(app, "transaction")
    kind = filter_arg(view, "kind", EnumValueEqualFilter)
    with appctx() as session:
        volume.transactions(_subscription(world["subscription"]), COUNT_CAP + 5)
        session.commit()
    unfiltered = client.get("/admin/transaction/").get_data(as_text=True)
    filtered = client.get("/admin/transaction/", query_string={kind: "charge"}
                          ).get_data(as_text=True)
    assert row_count(filtered) == "10,000+ rows"
    assert "List (10,000+)" in filtered
    # SQLite has no estimate: the capped count; PostgreSQL's table is not analysed yet
    assert row_count(unfiltered) in ("10,000+ rows",) or row_count(unfiltered).startswith(
        "about ")
    refunds = client.get("/admin/transaction/", query_string={kind: "refund"})
    assert row_count(refunds.get_data(as_text=True)) == "0 rows"
    # a search counts to SEARCH_COUNT_CAP: its matches are read one by one
    with appctx() as session:
        company = session.scalars(select(Transaction).limit(1)).one().customer.company_name
    searched = client.get("/admin/transaction/", query_string={"search": company}
                          ).get_data(as_text=True)
    assert row_count(searched) == f"{SEARCH_COUNT_CAP:,}+ rows" == "200+ rows"
    one = client.get("/admin/profile/").get_data(as_text=True)
    assert row_count(one) == "1 row"


def test_a_later_page_counts_with_a_capped_count(app, many_transactions, client_as):
    client = client_as("admin")
    page = client.get("/admin/transaction/", query_string={
        "after": _a_token(client), "page_size": "20"}).get_data(as_text=True)
    assert row_count(page) == "46 rows"


@pytest.mark.postgres
def test_a_big_unfiltered_table_shows_the_planner_estimate(app, appctx, world, client_as,
                                                          is_postgres):
    if not is_postgres:
        pytest.skip("PostgreSQL only: SQLite has no row estimate")
    client = client_as("admin")
    with appctx() as session:
        volume.transactions(_subscription(world["subscription"]), 12_000)
        session.commit()
        session.execute(text('ANALYZE "transaction"'))
        session.commit()
    with counted_statements() as statements:
        page = client.get("/admin/transaction/").get_data(as_text=True)
    label = row_count(page)
    assert label.startswith("about "), label
    assert 11_000 <= int(label.split()[1].replace(",", "")) <= 13_000
    assert not any("count(" in s.lower() for s in statements), "an unfiltered list counted"
    view = view_of(app, "transaction")
    filtered = client.get("/admin/transaction/", query_string={
        filter_arg(view, "kind", EnumValueEqualFilter): "charge"}).get_data(as_text=True)
    assert row_count(filtered) == "10,000+ rows"


# --------------------------------------------------------------------------- search


def test_a_whole_email_or_number_is_found_first_and_alone(app, appctx, world, client_as):
    client = client_as("admin")
    with appctx() as session:
        accounts.create_profile(email="joann@volume.example", name="Jo Ann")
        order = volume.orders(world["profile"], 3)[0]
        number = session.get(Order, order).number
        session.commit()
    with counted_statements() as statements:
        exact = client.get("/admin/profile/", query_string={"search": "ANN@volume.example"})
    page = exact.get_data(as_text=True)
    assert cells(page, "email") == ["ann@volume.example"]
    assert 'data-testid="exact-match"' in page
    assert not any(" like " in s.lower() for s in statements), "the fragment search ran"
    fragment = client.get("/admin/profile/", query_string={"search": "ann@"})
    assert sorted(cells(fragment.get_data(as_text=True), "email")) == [
        "ann@volume.example", "joann@volume.example"]
    orders = client.get("/admin/order/", query_string={"search": number.lower()})
    assert cells(orders.get_data(as_text=True), "number") == [number]
    partial = client.get("/admin/order/", query_string={"search": number[:-1]})
    assert len(cells(partial.get_data(as_text=True), "number")) == 3


def test_search_words_are_literal_and_related_columns_are_searched(appctx, world,
                                                                    client_as):
    client = client_as("admin")
    with appctx() as session:
        volume.profiles(3, name="100% Sure_Thing")
        volume.profiles(2, name="1000 Sure Things")
        session.commit()
    found = client.get("/admin/profile/", query_string={"search": "100%"})
    assert cells(found.get_data(as_text=True), "name") == ["100% Sure_Thing"] * 3
    underscore = client.get("/admin/profile/", query_string={"search": "e_t"})
    assert len(cells(underscore.get_data(as_text=True), "name")) == 3
    # Transactions are searched by their customer's name (EXISTS, not a join)
    transactions = client.get("/admin/transaction/", query_string={"search": "acme"})
    assert len(cells(transactions.get_data(as_text=True), "id")) == 1
    assert cells(client.get("/admin/transaction/", query_string={"search": "nobody"})
                 .get_data(as_text=True), "id") == []


@pytest.mark.postgres
@pytest.mark.parametrize("endpoint, index", [
    ("profile", "ix_profile_email_trgm"), ("profile", "ix_profile_name_trgm"),
    ("customer", "ix_customer_company_name_trgm"), ("order", "ix_order_number_trgm"),
    ("invoice", "ix_invoice_number_trgm"), ("organization", "ix_organization_name_trgm"),
    ("license", "ix_license_ca_reference_trgm"), ("reseller", "ix_reseller_company_name_trgm"),
    ("customer", "ix_customer_city_trgm"), ("customeradmin", "ix_customer_admin_email_trgm"),
    ("transaction", "ix_customer_company_name_trgm"),
    ("subscription", "ix_customer_company_name_trgm"),
])
def test_a_fragment_search_is_a_trigram_index_search(app, appctx, is_postgres, endpoint,
                                                     index):
    if not is_postgres:
        pytest.skip("PostgreSQL only: SQLite has no trigram index")
    view = view_of(app, endpoint)
    with appctx() as session, app.test_request_context():
        query = view.apply_search(view.get_query(), "acme")
        sql = str(query.statement.compile(dialect=session.get_bind().dialect,
                                          compile_kwargs={"literal_binds": True}))
        # Whatever the tables hold now (and whatever their statistics say after the suite's
        # other tests): rows are read only through an index condition, and a related
        # column's EXISTS is a join of the filtered rows rather than a probe per row, so
        # the plan shows which index serves the fragment.
        for setting in ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan",
                        "enable_nestloop"):
            session.execute(text(f"SET LOCAL {setting} = off"))
        plan = "\n".join(session.execute(text(f"EXPLAIN {sql}")).scalars())
        session.rollback()
    assert index in plan, plan


# --------------------------------------------------------------------------- sorts


def test_every_offered_and_default_sort_reads_an_index(app):
    for view in model_views(app):
        for name, column in view._sortable_columns.items():
            assert leads_an_index(column), (view.endpoint, name)
        default = view._default_sort()
        if default is not None:
            assert leads_an_index(default[1]), (view.endpoint, default[0])


def test_the_big_lists_page_by_position(app):
    with app.test_request_context():
        for endpoint in ("transaction", "order", "profile", "auditevent", "creditentry",
                         "invoice", "transactionline", "customer", "subscription"):
            view = view_of(app, endpoint)
            assert view.list_sort_key(None, False) is not None, endpoint
            for name in view._sortable_columns:
                assert view.list_sort_key(name, True) is not None, (endpoint, name)


# --------------------------------------------------------------------------- statements


def _statements(client, url: str, **query) -> int:
    with counted_statements() as statements:
        response = client.get(url, query_string=query)
    assert response.status_code == 200, (url, response.data[:500])
    return len(statements)


BIG_LISTS = ["transaction", "order", "profile", "auditevent", "creditentry", "invoice",
             "transactionline"]


def _list_urls(app) -> list[tuple[str, dict]]:
    urls = []
    for endpoint in BIG_LISTS:
        view = view_of(app, endpoint)
        urls.append((f"/admin/{endpoint}/", {}))
        shown = [name for name, _ in view._list_columns]
        for name in (n for n in view._sortable_columns if n in shown):
            urls.append((f"/admin/{endpoint}/", {"sort": sort_index(app, endpoint, name),
                                                 "desc": "1"}))
    return urls


def test_list_pages_run_as_many_statements_for_300_rows_as_for_10(app, appctx, world,
                                                                 client_as):
    client = client_as("admin")

    def add(count: int) -> None:
        with appctx() as session:
            for endpoint in ("transaction", "profile", "invoice", "creditentry",
                             "auditevent"):
                _add_rows(endpoint, world, count, ties=1)
            session.commit()

    add(10)
    small = {(url, tuple(q.items())): _statements(client, url, **q) for url, q in
             _list_urls(app)}
    add(290)
    for (url, query), count in small.items():
        big = _statements(client, url, **dict(query))
        assert abs(big - count) <= SLACK, (url, query, count, big)
        assert big <= 12, (url, query, big)


@pytest.fixture
def accounts_at_size(appctx, world):
    """``add(n)``: n more transactions for the customer's subscription, n ledger entries
    and n orders placed by its profile, n orders of a colleague in its organization."""
    with appctx() as session:
        profile = session.get(Profile, world["profile"])
        organization = accounts.upgrade_to_corporate(
            profile, organization_name="Volume Corp", actor=None)
        colleague = accounts.create_profile(email="bo@volume.example", name="Bo")
        session.flush()
        accounts.link_profile(organization, colleague, actor=None)
        session.commit()
        world = {**world, "organization": organization.id, "colleague": colleague.id}

    def add(count: int) -> None:
        with appctx() as session:
            volume.transactions(_subscription(world["subscription"]), count)
            volume.credit_entries(world["profile"], count)
            volume.orders(world["profile"], count, paid_by=world["colleague"])
            volume.orders(world["colleague"], count)
            session.commit()

    return world, add


def test_record_pages_run_as_many_statements_for_300_rows_as_for_10(
        app, accounts_at_size, client_as):
    world, add = accounts_at_size
    client = client_as("admin")
    urls = [
        (f"/admin/customer/{world['customer']}/", {}),
        (f"/admin/customer/{world['customer']}/subscriptions", {}),
        ("/admin/subscription/details/", {"id": world["subscription"]}),
        (f"/admin/billing/customer/{world['customer']}/transactions", {}),
        ("/admin/profile/details/", {"id": world["profile"]}),
        ("/admin/profile/details/", {"id": world["colleague"]}),
        ("/admin/organization/details/", {"id": world["organization"]}),
        ("/admin/transaction/details/", {"id": world["charge"]}),
    ]
    add(10)
    small = [_statements(client, url, **query) for url, query in urls]
    add(290)
    big = [_statements(client, url, **query) for url, query in urls]
    for (url, query), before, after in zip(urls, small, big, strict=True):
        assert abs(after - before) <= SLACK, (url, query, before, after)


def _subscription_rows(page: str) -> list[int]:
    table = page.split('data-testid="subscriptions"', 1)[1].split("</table>", 1)[0]
    return [int(i) for i in re.findall(r'href="/admin/subscription/details/\?id=(\d+)"', table)]


def test_a_customer_with_many_subscriptions_costs_the_same(app, appctx, world, client_as):
    client = client_as("admin")
    url, query = f"/admin/customer/{world['customer']}/subscriptions", {}
    with appctx() as session:
        customer = session.get(Customer, world["customer"])
        product = _subscription(world["subscription"]).product
        for _ in range(4):
            factories.subscribe(customer, product, {"DV": 1, "OV": 2})
        session.commit()
    few = _statements(client, url, **query)
    with appctx() as session:
        customer = session.get(Customer, world["customer"])
        product = _subscription(world["subscription"]).product
        for _ in range(56):
            factories.subscribe(customer, product, {"DV": 1, "OV": 2})
        session.commit()
    many = _statements(client, url, **query)
    assert abs(many - few) <= SLACK, (few, many)
    page = client.get(url, query_string=query).get_data(as_text=True)
    assert "Subscriptions (61)" in page
    assert len(_subscription_rows(page)) == 50
    older = link(page, "subscriptions-next")
    assert older and older.startswith(f"/admin/customer/{world['customer']}/subscriptions?")
    rest = client.get(older).get_data(as_text=True)
    assert _subscription_rows(rest) == sorted(_subscription_rows(rest))
    assert len(_subscription_rows(rest)) == 11
    assert 'data-testid="tab-subscriptions"' in rest


# --------------------------------------------------------------------------- record pages


def test_record_pages_list_50_rows_a_page_and_keep_the_tab(app, appctx, accounts_at_size,
                                                           client_as):
    world, add = accounts_at_size
    add(55)
    client = client_as("admin")
    details = client.get(f"/admin/customer/{world['customer']}/").get_data(as_text=True)
    assert 'data-testid="tab-details"' in details
    assert 'data-testid="transactions"' not in details  # only the tab shown is read
    customer = client.get(f"/admin/customer/{world['customer']}/transactions").get_data(
        as_text=True)
    assert 'data-testid="tab-transactions"' in customer
    older = link(customer, "transactions-next")
    assert older and older.startswith(f"/admin/customer/{world['customer']}/transactions?")
    second = client.get(older).get_data(as_text=True)
    assert 'data-testid="tab-transactions"' in second
    assert len(re.findall(r'href="/admin/transaction/details/\?id=', second)) == 6
    newer = link(second, "transactions-prev")
    assert newer and newer.startswith(f"/admin/customer/{world['customer']}/transactions")
    first = client.get(newer).get_data(as_text=True)
    assert len(re.findall(r'href="/admin/transaction/details/\?id=', first)) == 50
    with appctx():
        newest = db.session.scalars(
            select(Transaction.id).where(Transaction.customer_id == world["customer"])
            .order_by(Transaction.created_at.desc(), Transaction.id.desc())).all()
    shown = [int(i) for i in re.findall(r'href="/admin/transaction/details/\?id=(\d+)"',
                                        first + second)]
    assert shown == newest
    # A profile's ledger and orders page on their own; each link keeps the other's place.
    profile = client.get("/admin/profile/details/", query_string={"id": world["profile"]}
                         ).get_data(as_text=True)
    ledger_next = link(profile, "ledger-next")
    orders_next = link(profile, "orders-next")
    assert ledger_next.endswith("#ledger") and orders_next.endswith("#orders")
    both = client.get(ledger_next).get_data(as_text=True)
    assert "ledger_after" in (link(both, "orders-next") or "")
    subscription = client.get("/admin/subscription/details/", query_string={
        "id": world["subscription"]}).get_data(as_text=True)
    assert link(subscription, "transactions-next").endswith("#transactions")


def test_the_refund_page_lists_50_transactions_a_page(accounts_at_size, client_as):
    world, add = accounts_at_size
    add(60)
    client = client_as("finance")
    url = f"/admin/billing/customer/{world['customer']}/transactions"
    page = client.get(url).get_data(as_text=True)
    assert len(re.findall(r'data-testid="transaction-\d+"', page)) == 50
    rest = client.get(link(page, "transactions-next")).get_data(as_text=True)
    assert len(re.findall(r'data-testid="transaction-\d+"', rest)) == 11


def test_orders_placed_and_paid_inside_an_organization_are_listed_once(accounts_at_size,
                                                                       appctx):
    world, add = accounts_at_size
    add(7)
    with appctx() as session:
        organization = session.get(Organization, world["organization"])
        everything = accounts.organization_orders(organization)
        assert len(everything) == len({o.id for o in everything}) == 14
        newest = accounts.NEWEST_FIRST
        pages, where = [], None
        while True:
            page = accounts.organization_orders(organization, where=where,
                                                order_by=newest, limit=4)
            if not page:
                break
            pages.append(page)
            last = page[-1]
            where = SortKey.of("created_at", Order.created_at, Order.id, True).beyond(
                (last.created_at, last.id))
        assert [o.id for p in pages for o in p] == [o.id for o in everything]
        profile = session.get(Profile, world["profile"])
        assert accounts.visible_orders(profile) == everything
        colleague = session.get(Profile, world["colleague"])
        assert accounts.count_orders_of(select(Profile.id).where(
            Profile.id == colleague.id)) == 14  # 7 placed, 7 paid


# --------------------------------------------------------------------------- the report


@pytest.mark.parametrize("given, expected", [
    ((None, None), (date(2026, 11, 1), date(2026, 11, 30))),
    ((date(2026, 3, 15), None), (date(2026, 3, 15), date(2027, 3, 14))),
    ((None, date(2026, 3, 15)), (date(2025, 3, 16), date(2026, 3, 15))),
    ((date(2024, 1, 1), date(2024, 12, 31)), (date(2024, 1, 1), date(2024, 12, 31))),
])
def test_the_report_covers_at_most_a_year(given, expected):
    filters = reports.within_a_year(
        reports.ReportFilters(date_from=given[0], date_to=given[1]), date(2026, 11, 20))
    assert (filters.date_from, filters.date_to) == expected


def test_a_report_longer_than_a_year_is_refused():
    with pytest.raises(InvalidInput, match="at most a year apart"):
        reports.within_a_year(reports.ReportFilters(date_from=date(2024, 1, 1),
                                                    date_to=date(2025, 1, 1)),
                              date(2026, 11, 20))


@pytest.mark.clock(NOV_20)
def test_the_report_page_is_bounded_and_pages_by_position(app, appctx, world, client_as):
    client = client_as("finance")
    with appctx() as session:
        volume.transactions(_subscription(world["subscription"]), 130,
                            start=datetime(2026, 11, 2, tzinfo=UTC), )
        volume.transactions(_subscription(world["subscription"]), 5,
                            start=datetime(2026, 10, 2, tzinfo=UTC))
        session.commit()
    page = client.get("/admin/billing/report/").get_data(as_text=True)
    assert 'value="2026-11-01"' in page and 'value="2026-11-30"' in page  # this month
    # the totals count November only: 130 and the subscription's own charge
    assert '<td class="num">131</td>' in page
    assert page.count("<tr><td>T") == 100
    older = link(page, "report-next")
    assert older and "date_from=2026-11-01" in older
    rest = client.get(older).get_data(as_text=True)
    assert rest.count("<tr><td>T") == 31
    too_long = client.get("/admin/billing/report/", query_string={
        "date_from": "2025-01-01", "date_to": "2026-11-20"})
    assert too_long.status_code == 400
    assert "at most a year apart" in too_long.get_data(as_text=True)
    # The export takes any range.
    export = client.get("/admin/billing/report/export.csv", query_string={
        "date_from": "2025-01-01", "date_to": "2026-11-20"})
    assert export.status_code == 200
    assert export.get_data(as_text=True).count("\r\n") == 1 + 1 + 135


def test_the_report_looks_customers_up_by_name(app, appctx, world, client_as):
    client = client_as("support")
    with appctx() as session:
        for name in ("Acme Widgets", "Zenith Acme", "Other Co"):
            factories.customer(name)
        reseller = factories.reseller("Acme Resale")
        session.commit()
        reseller_id = reseller.id
    found = client.get("/admin/billing/report/lookup/customer", query_string={"query": "acm"})
    assert found.status_code == 200
    assert [name for _, name in found.get_json()] == ["Acme Ltd", "Acme Widgets",
                                                      "Zenith Acme"]
    by_id = client.get("/admin/billing/report/lookup/customer",
                       query_string={"query": f"#{world['customer']}"}).get_json()
    assert by_id[0] == [world["customer"], "Acme Ltd"]
    paged = client.get("/admin/billing/report/lookup/customer",
                       query_string={"query": "acm", "offset": "1", "limit": "1"}).get_json()
    assert paged == [[paged[0][0], "Acme Widgets"]]
    resellers = client.get("/admin/billing/report/lookup/reseller",
                           query_string={"query": "resale"}).get_json()
    assert resellers == [[reseller_id, "Acme Resale"]]
    for query in ({"query": "x" * 201}, {"query": "a\x00"}, {"query": "a", "limit": "21"},
                  {"query": "a", "offset": "-1"}, {"query": "a", "offset": "²"}):
        refused = client.get("/admin/billing/report/lookup/customer", query_string=query)
        assert refused.status_code == 400, query
    assert client.get("/admin/billing/report/lookup/staff").status_code == 404
    assert client_as("finance").get("/admin/billing/report/lookup/reseller", query_string={
        "query": "acme"}).get_json() == [[reseller_id, "Acme Resale"]]
    page = client.get("/admin/billing/report/").get_data(as_text=True)
    assert "<option" not in page.split('name="customer_id"')[0].rsplit("<label", 1)[-1]
    assert 'data-role="select2-ajax"' in page


def test_the_report_lookup_needs_a_signed_in_staff_member(app):
    response = app.test_client().get("/admin/billing/report/lookup/customer?query=a")
    assert response.status_code in (302, 303)
    with app.app_context():
        assert db.session.scalar(select(StaffUser.id)) is None
