"""The global search: whole values open their record, fragments list hits by kind."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from backoffice import search
from backoffice.extensions import db
from backoffice.models import Customer, Invoice, License, Order, Profile, Transaction
from tests import factories
from tests.queries import counted_statements


@pytest.fixture
def finance(demo, client_as):
    return client_as("finance")


def _first(model, *order):
    return db.session.scalars(select(model).order_by(*order).limit(1)).one()


def test_a_whole_ca_reference_opens_its_licence(demo, appctx, finance):
    with appctx():
        licence = _first(License, License.id)
        ref, lid = licence.ca_reference, licence.id
    response = finance.get("/admin/search/", query_string={"q": f"  {ref} "})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/admin/license/details/?id={lid}")


@pytest.mark.parametrize("shape", [str, str.lower])
def test_a_whole_invoice_or_order_number_opens_it_in_any_case(demo, appctx, finance, shape):
    with appctx():
        invoice = _first(Invoice, Invoice.id)
        order = _first(Order, Order.id)
        invoice_number, invoice_id = invoice.number, invoice.id
        order_number, order_id = order.number, order.id
    response = finance.get("/admin/search/", query_string={"q": shape(invoice_number)})
    assert response.headers["Location"].endswith(f"/admin/billing/invoice/{invoice_id}")
    response = finance.get("/admin/search/", query_string={"q": shape(order_number)})
    assert response.headers["Location"].endswith(f"/admin/order/details/?id={order_id}")


def test_a_whole_email_opens_the_profile(demo, appctx, finance):
    with appctx():
        profile = _first(Profile, Profile.id)
        email, pid = profile.email, profile.id
    response = finance.get("/admin/search/", query_string={"q": email.upper()})
    assert response.headers["Location"].endswith(f"/admin/profile/details/?id={pid}")


def test_a_transaction_reference_opens_the_transaction(demo, appctx, finance):
    with appctx():
        tid = _first(Transaction, Transaction.id).id
    response = finance.get("/admin/search/", query_string={"q": f"T{tid}"})
    assert response.headers["Location"].endswith(f"/admin/transaction/details/?id={tid}")


def test_an_email_fragment_lists_profiles_grouped_by_kind(demo, appctx, finance):
    with appctx():
        emails = db.session.scalars(select(Profile.email).where(
            Profile.email.like("%.schmidt.%")).order_by(Profile.email)).all()
    assert emails, "the demo data has Schmidts"
    page = finance.get("/admin/search/", query_string={"q": "schmidt."})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-testid="results-profile"' in html
    shown = emails[:search.DEFAULT_LIMIT]
    for email in shown:
        assert email in html
    assert ("type more to narrow" in html) == (len(emails) > search.DEFAULT_LIMIT)


def test_fragments_reach_every_kind(appctx, ctx):
    reseller = factories.reseller("Zebra Distribution")
    factories.customer("Zebra Hosting", reseller=reseller, admin_email="ops@zebra.example")
    db.session.flush()
    results = search.search("zebra")
    assert [h.label for h in results.groups["reseller"]] == ["Zebra Distribution"]
    assert [h.label for h in results.groups["customer"]] == ["Zebra Hosting"]
    assert results.exact is None
    exact = search.search("OPS@zebra.example")
    assert exact.exact is not None and exact.exact.kind == "customer"


def test_like_wildcards_are_searched_as_text(ctx):
    factories.customer("100% Uptime Ltd")
    factories.customer("Uptime_Co")
    factories.customer("Plain Uptime")
    db.session.flush()
    assert [h.label for h in search.search("100%").groups["customer"]] == ["100% Uptime Ltd"]
    assert [h.label for h in search.search("e_c").groups["customer"]] == ["Uptime_Co"]


def test_two_records_with_the_same_whole_value_list_both(ctx):
    factories.customer("North Ltd", admin_email="it@shared.example")
    factories.customer("South Ltd", admin_email="it@shared.example")
    db.session.flush()
    results = search.search("it@shared.example")
    assert results.exact is None
    assert sorted(h.label for h in results.groups["customer"]) == ["North Ltd", "South Ltd"]


def test_short_long_and_hostile_queries_get_a_message_not_an_error(demo, finance):
    short = finance.get("/admin/search/", query_string={"q": "x"}).get_data(as_text=True)
    assert "Type at least 2 characters" in short
    long = finance.get("/admin/search/", query_string={"q": "a" * 201})
    assert long.status_code == 200
    assert "at most 200 characters" in long.get_data(as_text=True)
    hostile = finance.get("/admin/search/", query_string={"q": "a\x00b"})
    assert hostile.status_code == 200 and "no-results" not in hostile.get_data(as_text=True)
    huge_ref = finance.get("/admin/search/", query_string={"q": "T99999999999"})
    assert huge_ref.status_code == 200


def test_search_needs_a_signed_in_staff_member(app):
    response = app.test_client().get("/admin/search/", query_string={"q": "smith"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_search_costs_one_statement_per_kind_whatever_matches(demo, appctx):
    with appctx():
        with counted_statements() as few:
            search.search("zzqq")
        with counted_statements() as many:
            search.search("example")
    selects = [[s for s in seen if s.lstrip().upper().startswith("SELECT")]
               for seen in (few, many)]
    assert len(selects[0]) == len(selects[1]) <= 2 * len(search.KINDS)


def test_the_search_box_is_on_every_page(demo, finance):
    for url in ("/admin/", "/admin/customer/", "/admin/billing/monthly-invoices/"):
        html = finance.get(url).get_data(as_text=True)
        assert 'id="global-search"' in html, url
        assert "search.js" in html, url


def test_the_customer_search_matches_company_and_admin_email(ctx):
    factories.customer("Bluefin Hosting", admin_email="admin@bluefin.example")
    db.session.flush()
    by_email = search.search("bluefin.exa").groups["customer"]
    assert [h.label for h in by_email] == ["Bluefin Hosting"]
    assert db.session.scalar(select(Customer.id)) == by_email[0].id
