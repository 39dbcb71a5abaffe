"""Monthly invoices: contents, refunds as negative lines, idempotence, numbering."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import accounts, partners
from backoffice.errors import InvalidInput
from backoffice.extensions import db
from backoffice.invoicing import issue_monthly_invoices, pending_monthly_invoices
from backoffice.models import Invoice, InvoiceKind, Transaction
from backoffice.refunds import refund
from tests import factories

NOV_10 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
NOVEMBER = date(2026, 11, 1)
DECEMBER = date(2026, 12, 1)


def _november_activity():
    """Two customers charged on 2026-11-10 (full 12-month terms), one refund on 11-12."""
    with time_machine.travel(NOV_10, tick=False):
        product = factories.catalog("billing")
        acme = factories.customer("Acme Ltd")
        globex = factories.customer("Globex")
        acme_charge = factories.charge_of(factories.subscribe(acme, product, {"DV": 3, "OV": 1}))
        globex_charge = factories.charge_of(factories.subscribe(globex, product, {"DV": 1}))
    with time_machine.travel(datetime(2026, 11, 12, tzinfo=UTC), tick=False):
        acme_refund = refund(acme_charge, {"DV": 1}, actor=None)
    db.session.commit()
    return acme, globex, acme_charge, globex_charge, acme_refund


@pytest.fixture
def november(ctx):
    return _november_activity()


def test_one_invoice_per_customer_with_charges_and_negative_refund_lines(november):
    acme, globex, acme_charge, globex_charge, acme_refund = november
    with time_machine.travel(DEC_1, tick=False):
        preview = pending_monthly_invoices(month=NOVEMBER)
        invoices = issue_monthly_invoices(month=NOVEMBER)
    assert [(p.customer_name, p.transactions, p.total) for p in preview] == [
        ("Acme Ltd", 2, 30000 + 12000 - 10000), ("Globex", 1, 10000)]
    assert [i.customer_id for i in invoices] == [acme.id, globex.id]
    acme_invoice = invoices[0]
    assert acme_invoice.kind == InvoiceKind.MONTHLY
    assert acme_invoice.period_start == NOVEMBER
    assert acme_invoice.number == "INV-2026-000001"
    assert invoices[1].number == "INV-2026-000002"
    assert [(line.quantity, line.amount, line.transaction_id) for line in acme_invoice.lines] == [
        (3, 30000, acme_charge.id), (1, 12000, acme_charge.id), (1, -10000, acme_refund.id)]
    assert acme_invoice.lines[2].description.startswith(f"Refund of T{acme_charge.id}")
    assert acme_invoice.total == 32000 == sum(line.amount for line in acme_invoice.lines)
    assert acme_invoice.billing == {"name": "Acme Ltd", "address1": "1 Main Street",
                                    "city": "Springfield", "postal_code": "12345",
                                    "country": "US"}
    assert acme_charge.invoice_id == acme_refund.invoice_id == acme_invoice.id
    assert globex_charge.invoice_id == invoices[1].id


def test_second_run_for_the_same_month_issues_nothing(november, ctx):
    with time_machine.travel(DEC_1, tick=False):
        first = issue_monthly_invoices(month=NOVEMBER)
        ctx.commit()
        assert pending_monthly_invoices(month=NOVEMBER) == []
        assert issue_monthly_invoices(month=NOVEMBER) == []
    assert len(first) == 2
    assert db.session.scalar(select(func.count(Invoice.id))) == 2


def test_refund_after_the_months_invoice_lands_on_the_next_months_invoice(november, ctx):
    acme, _globex, acme_charge, *_ = november
    with time_machine.travel(DEC_1, tick=False):
        november_invoice = issue_monthly_invoices(month=NOVEMBER)[0]
        ctx.commit()
        november_lines = [(line.description, line.amount) for line in november_invoice.lines]
    with time_machine.travel(datetime(2026, 12, 3, 15, 0, tzinfo=UTC), tick=False):
        late = refund(acme_charge, {"DV": 2}, actor=None)  # the last two of three
        ctx.commit()
    assert late.amount == -(30000 - 10000)
    with time_machine.travel(datetime(2027, 1, 1, 0, 0, tzinfo=UTC), tick=False):
        december = issue_monthly_invoices(month=DECEMBER)
    assert [(i.customer_id, i.period_start, i.total) for i in december] == [
        (acme.id, DECEMBER, -20000)]
    assert [(line.quantity, line.amount, line.transaction_id) for line in december[0].lines] == [
        (2, -20000, late.id)]
    assert december[0].number == "INV-2027-000003"
    # the November invoice is as it was issued
    db.session.refresh(november_invoice)
    assert [(line.description, line.amount) for line in november_invoice.lines] == november_lines
    assert november_invoice.total == 32000
    assert factories.line_of(acme_charge, "DV").refunded_amount == 30000


def test_invoice_numbers_are_sequential_across_order_and_monthly_invoices(november, ctx):
    billing = {"name": "Pat Buyer", "address1": "2 High St", "city": "Leeds",
               "postal_code": "LS1 1AA", "country": "GB"}
    with time_machine.travel(datetime(2026, 11, 30, tzinfo=UTC), tick=False):
        buyer = accounts.create_profile(email="pat@example.com", name="Pat Buyer")
        first_order = accounts.place_order(buyer, items={"DV": 1}, billing=billing)
    with time_machine.travel(DEC_1, tick=False):
        monthly = issue_monthly_invoices(month=NOVEMBER)
        second_order = accounts.place_order(buyer, items={"OV": 1}, billing=billing)
    numbers = [first_order.invoice.number, *[i.number for i in monthly],
               second_order.invoice.number]
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 5)]
    ctx.commit()
    assert db.session.scalar(select(func.count(func.distinct(Invoice.number)))) == 4


def test_months_not_over_or_not_first_days_are_refused(ctx):
    with time_machine.travel(datetime(2026, 11, 30, 23, 59, tzinfo=UTC), tick=False):
        with pytest.raises(InvalidInput, match="November 2026 is not over yet"):
            issue_monthly_invoices(month=NOVEMBER)
        with pytest.raises(InvalidInput, match="first day"):
            issue_monthly_invoices(month=date(2026, 10, 15))
        assert issue_monthly_invoices(month=date(2026, 10, 1)) == []


def test_an_issued_invoice_never_changes(november, ctx):
    acme = november[0]
    with time_machine.travel(DEC_1, tick=False):
        invoice = issue_monthly_invoices(month=NOVEMBER)[0]
        ctx.commit()
        partners.update_customer(acme, address1="99 New Road", actor=None)
        ctx.commit()
    db.session.refresh(invoice)
    assert invoice.billing["address1"] == "1 Main Street"
    invoice.total = 1
    with pytest.raises(RuntimeError, match="cannot be changed"):
        db.session.flush()
    db.session.rollback()
    invoice = db.session.get(Invoice, invoice.id)
    invoice.lines[0].amount = 0
    with pytest.raises(RuntimeError, match="cannot be changed"):
        db.session.flush()
    db.session.rollback()
    assert db.session.get(Invoice, invoice.id).total == 32000


def test_transactions_from_an_earlier_uninvoiced_month_are_caught_up(ctx):
    with time_machine.travel(datetime(2026, 10, 20, tzinfo=UTC), tick=False):
        october = factories.charge_of(factories.subscribe(
            factories.customer(), factories.catalog("billing"), {"DV": 1}))
        ctx.commit()
    with time_machine.travel(DEC_1, tick=False):
        invoices = issue_monthly_invoices(month=NOVEMBER)
    assert [line.transaction_id for line in invoices[0].lines] == [october.id]
    assert db.session.get(Transaction, october.id).invoice_id == invoices[0].id


# --------------------------------------------------------------------------- pages


def test_invoice_printable_page_and_pdf(appctx, client_as):
    with appctx(), time_machine.travel(DEC_1, tick=False):
        _november_activity()
        invoice = issue_monthly_invoices(month=NOVEMBER)[0]
        invoice_id, number = invoice.id, invoice.number
        db.session.commit()
    client = client_as("support")  # everyone with console read sees invoices
    html = client.get(f"/admin/billing/invoice/{invoice_id}").get_data(as_text=True)
    assert number in html and "November 2026" in html and "1 Main Street" in html
    assert "-$100.00" in html and "$320.00" in html and "@media print" in html
    pdf = client.get(f"/admin/billing/invoice/{invoice_id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    assert f'filename="{number}.pdf"' in pdf.headers["Content-Disposition"]
    assert number.encode() in pdf.data and b"320.00 USD" in pdf.data
    assert b"-100.00 USD" in pdf.data
    assert client.get("/admin/billing/invoice/999999").status_code == 404


def test_order_invoice_is_viewable(appctx, client_as):
    with appctx():
        invoice_id, number = _order_invoice()
    client = client_as("finance")
    html = client.get(f"/admin/billing/invoice/{invoice_id}").get_data(as_text=True)
    assert number in html and "Zoë Buyer" in html and "VAT GB123" in html
    pdf = client.get(f"/admin/billing/invoice/{invoice_id}.pdf")
    assert pdf.status_code == 200 and b"Zo\xeb Buyer" in pdf.data  # Latin-1 in the PDF


def _order_invoice():
    billing = {"name": "Zoë Buyer", "address1": "2 High St", "city": "Leeds",
               "postal_code": "LS1 1AA", "country": "GB", "vat_number": "GB123"}
    factories.catalog("billing")
    buyer = accounts.create_profile(email="zoe@example.com", name="Zoë Buyer")
    order = accounts.place_order(buyer, items={"DV": 2}, billing=billing)
    invoice_id, number = order.invoice.id, order.invoice.number
    db.session.commit()
    return invoice_id, number


def test_finance_issues_a_month_from_the_console_and_support_cannot(client_as, appctx):
    with appctx():
        _november_activity()
    with time_machine.travel(DEC_1, tick=False):
        support = client_as("support", "support@staff.test")
        finance = client_as("finance", "finance@staff.test")
        preview = support.get("/admin/billing/monthly-invoices/?month=2026-11")
        assert "Acme Ltd" in preview.get_data(as_text=True)
        assert "Issue 2 invoices" not in preview.get_data(as_text=True)
        assert support.post("/admin/billing/monthly-invoices/",
                            data={"month": "2026-11"}).status_code == 403
        html = finance.get("/admin/billing/monthly-invoices/").get_data(as_text=True)
        assert "November 2026" in html and "Issue 2 invoices" in html
        issued = finance.post("/admin/billing/monthly-invoices/", data={"month": "2026-11"})
        assert issued.status_code == 303
        again = finance.post("/admin/billing/monthly-invoices/", data={"month": "2026-11"},
                             follow_redirects=True).get_data(as_text=True)
    assert "Issued 0 invoices" in again and "INV-2026-000002" in again
    with appctx():
        assert db.session.scalar(select(func.count(Invoice.id))) == 2
