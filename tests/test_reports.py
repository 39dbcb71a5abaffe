"""Transaction reports: filters, totals, CSV escaping and a streamed, flat-memory export."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import String, cast, func, insert, literal, literal_column, select

from backoffice import partners
from backoffice.extensions import db
from backoffice.models import Customer, Invoice, Transaction, TransactionKind, TransactionReason
from backoffice.refunds import refund
from backoffice.reports import (
    CSV_HEADER,
    ReportFilters,
    escape_cell,
    report_query,
    report_totals,
    stream_csv,
)
from tests import factories
from tests.conftest import make_staff

NOV_10 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("value, expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tTab", "'\tTab"),
    ("\rCR", "'\rCR"),
    ("Acme = Ltd", "Acme = Ltd"),
    ("", ""),
    (None, ""),
    (-1250, "-1250"),
])
def test_escape_cell(value, expected):
    assert escape_cell(value) == expected


def _parse(chunks) -> list[list[str]]:
    """Parse CSV text given as bytes chunks (the export's) or strings (a response's)."""
    parts = [c.decode() if isinstance(c, bytes) else c for c in chunks]
    return list(csv.reader(io.StringIO("".join(parts), newline="")))


@pytest.fixture
def activity(ctx):
    """Two customers (one through a reseller, one with a formula-like name), a refund."""
    with time_machine.travel(NOV_10, tick=False):
        finance = make_staff("finance")
        reseller = partners.create_reseller(company_name="Partner Co", address1="5 Road",
                                            city="Berlin", postal_code="10115", country="DE",
                                            actor=None)
        product = factories.catalog("billing")
        acme = factories.customer("Acme Ltd", reseller=reseller)
        evil = factories.customer("=cmd|' /C calc'!A0", currency="EUR")
        acme_charge = factories.charge_of(factories.subscribe(acme, product, {"DV": 2}))
        evil_charge = factories.charge_of(factories.subscribe(evil, product, {"OV": 1}))
    with time_machine.travel(NOV_10 + timedelta(days=2), tick=False):
        acme_refund = refund(acme_charge, {"DV": 1}, actor=finance)
    ctx.commit()
    return {"reseller": reseller, "acme": acme, "evil": evil, "acme_charge": acme_charge,
            "evil_charge": evil_charge, "acme_refund": acme_refund, "finance": finance}


def test_csv_rows_escape_formulas_and_carry_the_acting_staff_member(activity):
    rows = _parse(stream_csv(ReportFilters()))
    assert tuple(rows[0]) == CSV_HEADER
    by_id = {int(r[0]): dict(zip(CSV_HEADER, r, strict=True)) for r in rows[1:]}
    evil = by_id[activity["evil_charge"].id]
    assert evil["customer"] == "'=cmd|' /C calc'!A0"
    assert evil["currency"] == "EUR" and evil["amount"] == "120.00"
    refund_row = by_id[activity["acme_refund"].id]
    assert refund_row["amount"] == "-100.00"  # a number stays a number
    assert refund_row["amount_minor"] == "-10000"
    assert refund_row["actor"] == "finance@staff.test"
    assert refund_row["refunded_transaction"] == str(activity["acme_charge"].id)
    assert refund_row["reseller"] == "Partner Co"
    assert by_id[activity["acme_charge"].id]["actor"] == "system"


def test_filters_and_totals_per_currency(activity):
    assert [(t.currency, t.count, t.charges, t.refunds, t.net)
            for t in report_totals(ReportFilters())] == [
        ("EUR", 1, 12000, 0, 12000), ("USD", 2, 20000, -10000, 10000)]

    def ids(**kwargs):
        return [row.id for row in db.session.execute(report_query(ReportFilters(**kwargs)))]

    a = activity
    assert ids(kind=TransactionKind.REFUND) == [a["acme_refund"].id]
    assert ids(reason=TransactionReason.NEW_SUBSCRIPTION) == [a["acme_charge"].id,
                                                              a["evil_charge"].id]
    assert ids(reseller_id=a["reseller"].id) == [a["acme_charge"].id, a["acme_refund"].id]
    assert ids(customer_id=a["evil"].id) == [a["evil_charge"].id]
    # date_to is inclusive: the refund on 11-12 is in a report ending 11-12, not 11-11
    assert ids(date_from=date(2026, 11, 12), date_to=date(2026, 11, 12)) == [
        a["acme_refund"].id]
    assert ids(date_to=date(2026, 11, 11)) == [a["acme_charge"].id, a["evil_charge"].id]


def test_filters_refuse_a_start_after_the_end_and_never_overflow(activity):
    from backoffice.errors import InvalidInput

    with pytest.raises(InvalidInput, match="The start date is after the end date."):
        ReportFilters(date_from=date(2026, 11, 2), date_to=date(2026, 11, 1))
    # The last day there is: no day after it to stop before, so no upper bound.
    rows = _parse(stream_csv(ReportFilters(date_from=date.min, date_to=date.max)))
    assert len(rows) == 1 + 3
    assert report_totals(ReportFilters(date_to=date.max))[0].count == 1


REPORT = "/admin/billing/report/"
EXPORT = "/admin/billing/report/export.csv"


@pytest.mark.parametrize(("args", "message"), [
    ({"date_to": "9999-12-31"}, "Enter a date from 2000-01-01 to 2099-12-31."),
    ({"date_from": "1999-12-31"}, "Enter a date from 2000-01-01 to 2099-12-31."),
    ({"date_from": "yesterday"}, "Enter the date as YYYY-MM-DD"),
    ({"date_to": "10000-01-01"}, "Enter the date as YYYY-MM-DD"),
    ({"date_to": "2026-02-30"}, "Enter the date as YYYY-MM-DD"),
    ({"date_to": "２０２６-１１-２２"}, "Enter the date as YYYY-MM-DD"),
    ({"date_from": "2026-11-02", "date_to": "2026-11-01"}, "The start date is after the end"),
    ({"kind": "gift"}, "Choose a kind from the list."),
    ({"reason": "charity"}, "Choose a reason from the list."),
    ({"customer_id": "905970020212414042476352"}, "Choose a customer from the list."),
    ({"customer_id": "1" * 5000}, "Choose a customer from the list."),
    ({"customer_id": "1 OR 1=1"}, "Choose a customer from the list."),
    ({"customer_id": "²"}, "Choose a customer from the list."),
    ({"reseller_id": "①"}, "Choose a reseller from the list."),
    ({"reseller_id": "99999"}, "Choose a reseller from the list."),
    ({"kind": "charge\x00"}, "Remove the control characters"),
    ({"date_from": "2026-11-01\x00"}, "Remove the control characters"),
    ({"after": "²"}, "This page link is not one the report makes"),
    ({"before": "W10"}, "This page link is not one the report makes"),
    ({"after": "x" * 700}, "This page link is not one the report makes"),
])
def test_bad_filters_are_a_message_on_the_report_and_the_export(activity, client_as, args,
                                                                message):
    client = client_as("admin")  # the activity has a finance member already
    for url in (REPORT, EXPORT):
        response = client.get(url, query_string=args)
        assert response.status_code == 400, url
        assert response.mimetype == "text/html"
        html = response.get_data(as_text=True)
        assert message in html, url
        assert 'data-testid="report-filters"' in html
        assert 'data-testid="report-rows"' not in html and "Export CSV" not in html


def test_the_report_form_keeps_the_filters_and_links_the_export(activity, client_as):
    client = client_as("admin")
    acme = activity["acme"]
    html = client.get(REPORT, query_string={
        "customer_id": str(acme.id), "kind": "refund", "date_from": "2026-11-01",
        "date_to": "2026-12-31"}).get_data(as_text=True)
    # the customer is a type-ahead box showing the one chosen, not a list of them all
    assert f'data-json="[{acme.id}, &#34;Acme Ltd&#34;]"' in html
    assert f'name="customer_id" type="hidden" value="{acme.id}"' in html
    assert '<option selected value="refund">refund</option>' in html
    assert 'value="2026-12-31"' in html
    assert f"T{activity['acme_refund'].id}" in html
    assert f"T{activity['acme_charge'].id}<" not in html
    export = client.get(EXPORT, query_string={"customer_id": str(acme.id), "kind": "refund",
                                              "date_to": "2099-12-31"})
    rows = _parse([export.get_data(as_text=True)])
    assert [int(r[0]) for r in rows[1:]] == [activity["acme_refund"].id]


@pytest.mark.clock(NOV_10 + timedelta(days=1))
def test_report_page_and_streamed_export_over_http(app, appctx, client_as):
    with appctx() as session, time_machine.travel(NOV_10, tick=False):
        customer = factories.customer("@Risky")
        factories.charge_of(factories.subscribe(customer, factories.catalog("billing"), {"DV": 1}))
        session.commit()
    client = client_as("finance")
    page = client.get("/admin/billing/report/?kind=charge")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "@Risky" in html and "Export CSV" in html and "$100.00" in html
    response = client.get("/admin/billing/report/export.csv?kind=charge")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = _parse([response.get_data(as_text=True)])
    assert rows[1][5] == "'@Risky"
    refused = client.get("/admin/billing/report/?kind=gift")
    assert refused.status_code == 400
    assert "Choose a kind from the list." in refused.get_data(as_text=True)


def test_support_can_read_the_report_but_not_export_it(client_as):
    client = client_as("support")
    html = client.get("/admin/billing/report/").get_data(as_text=True)
    assert "Transaction report" in html and "Export CSV" not in html
    assert client.get("/admin/billing/report/export.csv").status_code == 403


def _bulk_transactions(count: int, sub=None):
    """``count`` charges, one a second from 2026-01-01, made by one Core INSERT ... SELECT,
    on ``sub`` (a new subscription by default, returned).

    The database generates the rows (a recursive counter), so setting up many rows takes
    a moment instead of a Python loop.
    """
    if sub is None:
        sub = factories.subscribe(factories.customer("Bulk Customer Ltd"),
                                  factories.catalog("billing"), {"DV": 1})
        db.session.commit()
    customer = sub.customer
    n = select(literal(0).label("x")).cte("n", recursive=True)
    n = n.union_all(select(n.c.x + 1).where(n.c.x < count - 1))
    if db.session.get_bind().dialect.name == "sqlite":
        created = func.datetime("2026-01-01 00:00:00", "+" + cast(n.c.x, String) + " seconds")
    else:
        created = (literal_column("timestamptz '2026-01-01 00:00:00+00'")
                   + literal_column("interval '1 second'") * n.c.x)
    table = Transaction.__table__
    db.session.execute(insert(table).from_select(
        ["customer_id", "subscription_id", "kind", "reason", "amount", "currency", "created_at"],
        select(literal(customer.id), literal(sub.id), literal("charge"), literal("renewal"),
               1000 + n.c.x, literal("USD"), created),
    ))
    db.session.commit()
    return sub


def _peak_bytes(work) -> tuple[object, int]:
    """``work()``'s result and the most memory Python held while it ran."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _stream_all() -> tuple[int, int]:
    lines = size = 0
    for chunk in stream_csv(ReportFilters()):
        lines += chunk.count(b"\r\n")
        size += len(chunk)
    return lines, size


def test_export_memory_stays_flat(ctx):
    """Streaming 4x the rows takes no more memory; holding them (.all()) grows with them."""
    sub = _bulk_transactions(10_000)
    ctx.expire_all()
    _stream_all()  # compiled statements and caches are made once, not per row
    (small_lines, _), small_peak = _peak_bytes(_stream_all)
    _bulk_transactions(30_000, sub)
    ctx.expire_all()
    (lines, size), peak = _peak_bytes(_stream_all)
    assert small_lines == 10_000 + 2  # header, the subscription's own charge, the bulk rows
    assert lines == 40_000 + 2
    assert size > 40_000 * 60
    assert peak < small_peak * 1.25 + 256 * 1024, f"{small_peak:,} then {peak:,} bytes"
    held, held_peak = _peak_bytes(lambda: db.session.execute(
        report_query(ReportFilters())).all())
    assert len(held) == 40_000 + 1
    assert held_peak > 2 * peak, f"held {held_peak:,} bytes, streamed {peak:,}"


def test_billing_pages_render_with_the_demo_data(demo, appctx, client_as):
    with appctx():
        customers = db.session.scalars(select(Customer.id).limit(5)).all()
        invoices = db.session.scalars(select(Invoice.id).limit(5)).all()
    assert customers and invoices
    client = client_as("finance")
    for url in ("/admin/billing/report/", "/admin/billing/report/?kind=refund",
                "/admin/billing/monthly-invoices/", "/admin/billing/",
                *[f"/admin/billing/customer/{c}/transactions" for c in customers],
                *[f"/admin/billing/invoice/{i}" for i in invoices],
                *[f"/admin/billing/invoice/{i}.pdf" for i in invoices]):
        response = client.get(url, follow_redirects=True)
        assert response.status_code == 200, (url, response.data[:1000])
    export = client.get("/admin/billing/report/export.csv").get_data(as_text=True)
    assert export.count("\r\n") > 1
