"""The next-invoice preview: built by the code that issues, it equals what is then issued;
the current month's page and a customer's preview page show it; it costs the same whatever
the number of transactions."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import select

from backoffice import subscriptions
from backoffice.errors import InvalidInput
from backoffice.extensions import db
from backoffice.invoicing import issue_monthly_invoices, next_invoice_month, preview_invoice
from backoffice.models import Customer, Invoice
from backoffice.money import format_money
from backoffice.refunds import refund
from tests import factories
from tests.queries import counted_statements

NOV_10 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
NOV_20 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
NOVEMBER = date(2026, 11, 1)
DECEMBER = date(2026, 12, 1)
MONTHLY = "/admin/billing/monthly-invoices/"


def _preview_url(customer_id: int, month: str | None = None) -> str:
    query = f"?month={month}" if month else ""
    return f"/admin/billing/customer/{customer_id}/next-invoice{query}"


def _activity() -> dict:
    """Acme: a 12-month subscription on 11-10 (3 DV, 1 OV), 1 DV refunded on 11-12 and
    2 DV added on 11-18 (prorated for the days left); Globex: 1 DV on 11-10. Committed."""
    with time_machine.travel(NOV_10, tick=False):
        product = factories.catalog("billing")
        acme = factories.customer("Acme Ltd")
        globex = factories.customer("Globex")
        subscription = factories.subscribe(acme, product, {"DV": 3, "OV": 1})
        charge = factories.charge_of(subscription)
        factories.subscribe(globex, product, {"DV": 1})
    with time_machine.travel(datetime(2026, 11, 12, tzinfo=UTC), tick=False):
        partial = refund(charge, {"DV": 1}, actor=None)
    with time_machine.travel(datetime(2026, 11, 18, tzinfo=UTC), tick=False):
        added = subscriptions.add_inventory(subscription, {"DV": 2}, actor=None)
    db.session.commit()
    return {"acme": acme.id, "globex": globex.id, "charge": charge.id, "refund": partial.id,
            "added": added.id, "added_amount": added.amount}


def _lines(lines) -> list[tuple]:
    return [(line.position, line.description, line.quantity, line.amount,
             line.transaction_id) for line in lines]


@pytest.fixture
def activity(ctx):
    return _activity()


@pytest.fixture
def activity_committed(appctx):
    with appctx():
        return _activity()


def test_the_preview_is_what_issuing_the_month_then_writes(activity, ctx):
    ids = activity
    with time_machine.travel(NOV_20, tick=False):
        so_far = preview_invoice(ids["acme"])
    assert (so_far.month, so_far.over, so_far.issued) == (NOVEMBER, False, None)
    draft = so_far.draft
    assert [line.transaction_id for line in draft.lines] == [
        ids["charge"], ids["charge"], ids["refund"], ids["added"]]
    assert [line.amount for line in draft.lines] == [30000, 12000, -10000, ids["added_amount"]]
    assert 0 < ids["added_amount"] < 2 * 10000  # prorated
    assert re.search(r", \d+/365 days \(T\d+\)$", draft.lines[3].description)
    assert draft.lines[2].description.startswith(f"Refund of T{ids['charge']}")
    assert draft.total == 32000 + ids["added_amount"] == sum(line.amount for line in draft.lines)

    with time_machine.travel(DEC_1, tick=False):
        due = preview_invoice(ids["acme"])  # November is over and not issued yet
        assert (due.month, due.over) == (NOVEMBER, True)
        assert due.draft == draft
        issued = issue_monthly_invoices(month=NOVEMBER)
        ctx.commit()
        invoice = next(i for i in issued if i.customer_id == ids["acme"])
        assert _lines(invoice.lines) == _lines(draft.lines)
        assert (invoice.total, invoice.currency, invoice.billing) == (
            draft.total, draft.currency, draft.billing)
        # after the issue: November's shows the invoice, the next one is December's
        after = preview_invoice(ids["acme"], month=NOVEMBER)
        assert after.issued.id == invoice.id and after.draft is None
        assert next_invoice_month(ids["acme"]) == DECEMBER
        assert preview_invoice(ids["acme"]).draft is None


def test_one_customers_preview_holds_only_its_own_transactions(activity):
    with time_machine.travel(NOV_20, tick=False):
        globex = preview_invoice(activity["globex"]).draft
    assert [(line.quantity, line.amount) for line in globex.lines] == [(1, 10000)]
    assert globex.total == 10000 and globex.customer_name == "Globex"


def test_the_next_month_is_this_one_once_last_months_invoice_is_issued_or_not_due(ctx):
    with time_machine.travel(NOV_10, tick=False):
        customer = factories.customer()
        ctx.commit()
    with time_machine.travel(DEC_1, tick=False):
        assert next_invoice_month(customer.id) == DECEMBER  # nothing before December
        assert preview_invoice(customer.id).draft is None
        with pytest.raises(InvalidInput, match="January 2027 has not started yet"):
            preview_invoice(customer.id, month=date(2027, 1, 1))
        with pytest.raises(InvalidInput, match="first day"):
            preview_invoice(customer.id, month=date(2026, 11, 2))


# --------------------------------------------------------------------------- pages


@pytest.mark.clock(NOV_20)
def test_the_current_month_page_shows_what_is_not_invoiced_so_far(activity_committed,
                                                                  client_as):
    ids = activity_committed
    html = client_as("finance").get(MONTHLY, query_string={"month": "2026-11"}).get_data(
        as_text=True)
    assert "so far; charges until the end of the month will be added" in html
    assert "November 2026 is not over yet" in html
    assert "Nothing to invoice" not in html
    assert 'data-testid="issue-form"' not in html
    acme_total = 32000 + ids["added_amount"]
    acme_row = f'data-testid="pending-total-of-{ids["acme"]}">'
    assert f"{acme_row}{format_money(acme_total, 'USD')}<" in html
    assert f'href="{_preview_url(ids["acme"], "2026-11")}"' in html
    total = re.search(r'data-testid="pending-total-USD">.*?</tr>', html, re.S).group(0)
    assert format_money(acme_total + 10000, "USD") in total and "All 2 customers" in total


@pytest.mark.clock(NOV_20)
def test_a_month_with_nothing_so_far_says_so(client_as):
    html = client_as("finance").get(MONTHLY, query_string={"month": "2026-11"}).get_data(
        as_text=True)
    assert "Nothing to invoice for this month so far." in html


@pytest.mark.clock(NOV_20)
def test_the_customer_preview_page_is_the_invoice_marked_not_issued(activity_committed,
                                                                    client_as, appctx):
    ids = activity_committed
    client = client_as("finance")
    customer_page = client.get(f"/admin/customer/{ids['acme']}/").get_data(
        as_text=True)
    assert f'href="{_preview_url(ids["acme"])}"' in customer_page
    response = client.get(_preview_url(ids["acme"]))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.count("Preview — not issued") == 2  # the banner and the heading
    assert "November 2026, so far; charges until the end of the month will be added" in html
    assert 'data-testid="invoice-pdf"' not in html and ".pdf" not in html
    assert "1 Main Street" in html and "-$100.00" in html
    with appctx(), time_machine.travel(NOV_20, tick=False):
        draft = preview_invoice(ids["acme"]).draft
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td>", html)
    assert [(int(n), text.replace("&#39;", "'")) for n, text in rows] == [
        (line.position, line.description) for line in draft.lines]
    assert re.search(r'data-testid="invoice-total">([^<]+)<', html).group(1) == format_money(
        draft.total, "USD")


@pytest.mark.clock(DEC_1)
def test_an_issued_month_links_to_its_invoice_and_nothing_is_a_message(activity_committed,
                                                                       client_as, appctx):
    ids = activity_committed
    with appctx() as session:
        invoice = next(i for i in issue_monthly_invoices(month=NOVEMBER)
                       if i.customer_id == ids["acme"])
        number, invoice_id = invoice.number, invoice.id
        session.commit()
    client = client_as("finance")
    issued = client.get(_preview_url(ids["acme"], "2026-11")).get_data(as_text=True)
    assert number in issued and f'href="/admin/billing/invoice/{invoice_id}"' in issued
    nothing = client.get(_preview_url(ids["acme"]))
    assert nothing.status_code == 200
    assert "Nothing to invoice yet" in nothing.get_data(as_text=True)


@pytest.mark.clock(NOV_20)
@pytest.mark.parametrize(("month", "message"), [
    ("2026-13", "Enter the month as YYYY-MM"), ("garbage", "Enter the month as YYYY-MM"),
    ("2026-12", "December 2026 has not started yet"),
])
def test_bad_months_are_a_message_on_the_preview_page(activity_committed, client_as, month,
                                                      message):
    response = client_as("finance").get(_preview_url(activity_committed["acme"], month))
    assert response.status_code == 400 and message in response.get_data(as_text=True)


def test_unknown_customers_are_404_inside_the_console(client_as):
    client = client_as("finance")
    for url in (_preview_url(999999), _preview_url(int("9" * 30))):
        response = client.get(url)
        assert response.status_code == 404
        assert "<nav" in response.get_data(as_text=True)  # the console's own page


@pytest.mark.clock(NOV_20)
def test_support_reads_the_preview_but_cannot_issue(activity_committed, client_as, app):
    """Invoices are readable by every console role (console:page:read); issuing is not."""
    ids = activity_committed
    support = client_as("support")
    assert 'data-testid="next-invoice"' in support.get(
        f"/admin/customer/{ids['acme']}/").get_data(as_text=True)
    assert support.get(_preview_url(ids["acme"])).status_code == 200
    assert 'data-testid="issue-form"' not in support.get(
        MONTHLY, query_string={"month": "2026-10"}).get_data(as_text=True)
    signed_out = app.test_client().get(_preview_url(ids["acme"]))
    assert signed_out.status_code in (302, 303) and "/login" in signed_out.headers["Location"]


def _customer_with_transactions(name: str, count: int) -> int:
    """A customer whose subscription of 11-10 has ``count`` - 1 additions on 11-18."""
    product = db.session.scalars(select(factories.SubscriptionProduct)).first()
    with time_machine.travel(NOV_10, tick=False):
        customer = factories.customer(name)
        subscription = factories.subscribe(customer, product, {"DV": 1, "OV": 1})
    with time_machine.travel(datetime(2026, 11, 18, tzinfo=UTC), tick=False):
        for _ in range(count - 1):
            subscriptions.add_inventory(subscription, {"DV": 1}, actor=None)
    db.session.commit()
    return customer.id


@pytest.mark.clock(NOV_20)
def test_the_preview_page_runs_as_many_statements_for_200_transactions_as_for_10(
        client_as, appctx):
    with appctx():
        with time_machine.travel(NOV_10, tick=False):
            factories.catalog("billing")
            db.session.commit()
        few = _customer_with_transactions("Few Ltd", 10)
        many = _customer_with_transactions("Many Ltd", 200)
    client = client_as("finance")
    client.get(_preview_url(few))  # the first request of a session loads more
    counts = []
    for customer_id, lines in ((few, 10 + 1), (many, 200 + 1)):
        with counted_statements() as sql:
            html = client.get(_preview_url(customer_id)).get_data(as_text=True)
        assert len(re.findall(r"<tr><td>\d+</td>", html)) == lines
        counts.append(len(sql))
    assert counts[0] == counts[1], counts
    with appctx():
        assert db.session.scalar(select(Invoice.id)) is None
        assert db.session.get(Customer, many).company_name == "Many Ltd"
