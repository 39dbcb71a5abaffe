"""Monthly invoices: contents, refunds as negative lines, idempotence, numbering."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import accounts, jobs, partners
from backoffice.errors import Conflict, InvalidInput
from backoffice.extensions import db
from backoffice.invoicing import (
    issue_monthly_invoices,
    pending_monthly_invoices,
    review_monthly_invoices,
)
from backoffice.models import (
    AuditEvent,
    Counter,
    Customer,
    Invoice,
    InvoiceKind,
    JobRun,
    JobStatus,
    SubscriptionProduct,
    Transaction,
)
from backoffice.refunds import refund
from tests import factories
from tests.conftest import login, review_then_confirm, review_token_from
from tests.pdf_text import pdf_text

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
    assert "-$100.00" in html and "$320.00" in html
    assert 'href="/static/invoice.css"' in html  # its print layout
    assert "@media print" in client.get("/static/invoice.css").get_data(as_text=True)
    pdf = client.get(f"/admin/billing/invoice/{invoice_id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    assert f'filename="{number}.pdf"' in pdf.headers["Content-Disposition"]
    text = pdf_text(pdf.data)
    assert f"Invoice {number}" in text and "Period: November 2026" in text
    assert "320.00 USD" in text and "-100.00 USD" in text
    assert "Springfield 12345" in text and "United States" in text
    assert "Example Certificates Ltd" in text and "Tax id US 12-3456789" in text
    assert client.get("/admin/billing/invoice/999999").status_code == 404
    assert client.get(f"/admin/billing/invoice/{'9' * 30}").status_code == 404
    assert client.get(f"/admin/billing/invoice/{'9' * 30}.pdf").status_code == 404


def test_order_invoice_is_viewable(appctx, client_as):
    with appctx():
        invoice_id, number = _order_invoice()
    client = client_as("finance")
    html = client.get(f"/admin/billing/invoice/{invoice_id}").get_data(as_text=True)
    assert number in html and "Zoë Buyer" in html and "VAT GB123" in html
    pdf = client.get(f"/admin/billing/invoice/{invoice_id}.pdf")
    assert pdf.status_code == 200 and "Zoë Buyer" in pdf_text(pdf.data)


def _order_invoice():
    billing = {"name": "Zoë Buyer", "address1": "2 High St", "city": "Leeds",
               "postal_code": "LS1 1AA", "country": "GB", "vat_number": "GB123"}
    factories.catalog("billing")
    buyer = accounts.create_profile(email="zoe@example.com", name="Zoë Buyer")
    order = accounts.place_order(buyer, items={"DV": 2}, billing=billing)
    invoice_id, number = order.invoice.id, order.invoice.number
    db.session.commit()
    return invoice_id, number


MONTHLY = "/admin/billing/monthly-invoices/"


def _invoices() -> list[Invoice]:
    return list(db.session.scalars(select(Invoice).order_by(Invoice.number)))


@pytest.fixture
def november_committed(appctx):
    with appctx():
        _november_activity()


@pytest.mark.clock(DEC_1)
def test_finance_issues_a_month_through_review_and_confirm(november_committed, client_as,
                                                           appctx):
    client = client_as("finance")
    html = client.get(MONTHLY).get_data(as_text=True)
    assert "November 2026" in html and "Issue 2 invoices" in html
    review, done = review_then_confirm(client, MONTHLY, {"month": "2026-11"})
    html = review.get_data(as_text=True)
    assert "Review: issue 2 invoices for November 2026" in html
    assert "$320.00" in html and "$100.00" in html and "Confirm" in html
    assert done.status_code == 303
    assert done.headers["Location"].endswith(f"{MONTHLY}?month=2026-11")
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Issued 2 invoices for November 2026." in page
    assert "INV-2026-000001" in page and "INV-2026-000002" in page
    with appctx():
        invoices = _invoices()
        assert [(i.number, i.total) for i in invoices] == [("INV-2026-000001", 32000),
                                                           ("INV-2026-000002", 10000)]
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "invoice.issue_monthly")).all()
        assert [e.actor_label for e in events] == ["finance@staff.test"] * 2


@pytest.mark.clock(DEC_1)
def test_the_review_alone_issues_nothing(november_committed, client_as, appctx):
    review = client_as("finance").post(MONTHLY, data={"month": "2026-11", "step": "review"})
    assert 'name="review_token"' in review.get_data(as_text=True)
    with appctx():
        assert _invoices() == []
        assert db.session.scalar(select(Counter.value).where(Counter.name == "invoice")) == 0


@pytest.mark.clock(DEC_1)
def test_a_second_confirm_lands_on_the_result_and_issues_nothing(november_committed,
                                                                 client_as, appctx):
    client = client_as("finance")
    review, first = review_then_confirm(client, MONTHLY, {"month": "2026-11"})
    token = review_token_from(review.get_data(as_text=True))
    again = client.post(MONTHLY, data={"month": "2026-11", "step": "confirm",
                                       "review_token": token})
    assert again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already applied" in page and "INV-2026-000002" in page
    with appctx():
        assert len(_invoices()) == 2
    # A new review of the same month has nothing left to issue: the domain's rule.
    fresh = client.post(MONTHLY, data={"month": "2026-11", "step": "review"})
    assert "nothing to invoice for November 2026" in fresh.get_data(as_text=True)
    assert 'name="review_token"' not in fresh.get_data(as_text=True)
    with appctx():
        assert len(_invoices()) == 2


@pytest.mark.clock(DEC_1)
def test_a_transaction_added_meanwhile_makes_the_review_stale(november_committed, client_as,
                                                              appctx):
    client = client_as("finance")
    review = client.post(MONTHLY, data={"month": "2026-11", "step": "review"})
    token = review_token_from(review.get_data(as_text=True))
    with appctx() as session, time_machine.travel(datetime(2026, 11, 20, tzinfo=UTC),
                                                  tick=False):
        globex = session.scalar(select(Customer).where(Customer.company_name == "Globex"))
        factories.subscribe(globex, session.scalars(select(SubscriptionProduct)).one(),
                            {"OV": 1}, term_months=1, start_date=date(2026, 11, 20))
        session.commit()
    stale = client.post(MONTHLY, data={"month": "2026-11", "step": "confirm",
                                       "review_token": token})
    html = stale.get_data(as_text=True)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "$110.00" in html  # Globex: 100.00 and 10.00 (OV for one month)
    with appctx():
        assert _invoices() == []
    done = client.post(MONTHLY, data={"month": "2026-11", "step": "confirm",
                                      "review_token": review_token_from(html)})
    assert done.status_code == 303
    with appctx():
        assert [i.total for i in _invoices()] == [32000, 11000]


@pytest.mark.clock(DEC_1)
def test_the_job_issuing_meanwhile_leaves_nothing_to_confirm(november_committed, client_as,
                                                             appctx):
    client = client_as("finance")
    review = client.post(MONTHLY, data={"month": "2026-11", "step": "review"})
    token = review_token_from(review.get_data(as_text=True))
    with appctx() as session:
        issue_monthly_invoices(month=NOVEMBER)
        session.commit()
    late = client.post(MONTHLY, data={"month": "2026-11", "step": "confirm",
                                      "review_token": token})
    assert "nothing to invoice for November 2026" in late.get_data(as_text=True)
    with appctx():
        assert len(_invoices()) == 2


def test_a_review_limited_to_its_first_rows_keeps_the_whole_month_s_totals(november):
    with time_machine.travel(DEC_1, tick=False):
        whole = review_monthly_invoices(month=NOVEMBER)
        first = review_monthly_invoices(month=NOVEMBER, limit=1)
        assert whole.whole and len(whole.invoices) == 2
        assert not first.whole and first.invoices == whole.invoices[:1]
        assert first.summary == whole.summary and first.summary.invoices == 2
        assert review_monthly_invoices(month=NOVEMBER, limit=2) == whole
        with pytest.raises(ValueError, match="cannot be checked"):
            issue_monthly_invoices(month=NOVEMBER, reviewed=first)
        assert db.session.scalar(select(func.count(Invoice.id))) == 0


def test_issuing_refuses_a_reviewed_set_that_changed_under_the_locks(november):
    with time_machine.travel(DEC_1, tick=False):
        review = review_monthly_invoices(month=NOVEMBER)
        changed = dataclasses.replace(review, invoices=review.invoices[:1])
        with pytest.raises(Conflict, match="changed while they were being issued"):
            issue_monthly_invoices(month=NOVEMBER, reviewed=changed)
        db.session.rollback()
        assert db.session.scalar(select(func.count(Invoice.id))) == 0
        assert len(issue_monthly_invoices(month=NOVEMBER, reviewed=review)) == 2


MONTH_FORMAT = "Enter the month as YYYY-MM, e.g. 2026-11."
MONTH_RANGE = "Enter a month from 2000-01 to 2099-12."


@pytest.mark.clock(DEC_1)
@pytest.mark.parametrize(("month", "message"), [
    ("10000-01", MONTH_FORMAT), ("garbage", MONTH_FORMAT), ("2026-13", MONTH_FORMAT),
    ("2026-00", MONTH_FORMAT), ("2026-1", MONTH_FORMAT), ("2026-11-01", MONTH_FORMAT),
    ("²⁰²⁶-11", MONTH_FORMAT), ("①-11", MONTH_FORMAT), ("9" * 5000, MONTH_FORMAT),
    ("1999-12", MONTH_RANGE), ("2100-01", MONTH_RANGE), ("0000-01", MONTH_RANGE),
    ("2026-11\x00", "Remove the control characters"),
])
def test_bad_months_are_a_message(november_committed, client_as, appctx, month, message):
    client = client_as("finance")
    page = client.get(MONTHLY, query_string={"month": month})
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    for step in ("review", "confirm"):
        response = client.post(MONTHLY, data={"month": month, "step": step})
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    missing = client.post(MONTHLY, data={"step": "review"})
    assert missing.status_code == 400 and "Choose a month." in missing.get_data(as_text=True)
    with appctx():
        assert _invoices() == []


@pytest.mark.clock(datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
def test_a_month_that_is_not_over_is_refused(november_committed, client_as, appctx):
    client = client_as("finance")
    page = client.get(MONTHLY, query_string={"month": "2026-11"}).get_data(as_text=True)
    assert "November 2026 is not over yet" in page and 'data-testid="issue-form"' not in page
    refused = client.post(MONTHLY, data={"month": "2026-11", "step": "review"})
    assert "November 2026 is not over yet" in refused.get_data(as_text=True)
    assert 'name="review_token"' not in refused.get_data(as_text=True)
    with appctx():
        assert _invoices() == []


@pytest.mark.clock(DEC_1)
def test_support_sees_the_preview_but_cannot_issue(november_committed, client_as, appctx):
    support = client_as("support")
    preview = support.get(f"{MONTHLY}?month=2026-11")
    assert preview.status_code == 200
    assert "Acme Ltd" in preview.get_data(as_text=True)
    assert "Issue 2 invoices" not in preview.get_data(as_text=True)
    for step in ("review", "confirm"):
        assert support.post(MONTHLY, data={"month": "2026-11",
                                           "step": step}).status_code == 403
    with appctx():
        assert _invoices() == []


def test_issuing_with_a_blank_month_is_a_message(client_as):
    response = client_as("finance").post("/admin/billing/monthly-invoices/",
                                         data={"month": "\r\n"})
    assert response.status_code == 400
    assert "Choose the month to issue" in response.get_data(as_text=True)


def test_invoices_carry_the_configured_seller_and_a_us_address_as_written_there(
        appctx, staff, second_app):
    other = second_app(SELLER_NAME="Certs Überall GmbH",
                       SELLER_ADDRESS="Hauptstraße 1 | 10115 Berlin\nGermany",
                       SELLER_TAX_ID="DE123456789")
    with appctx(), time_machine.travel(DEC_1, tick=False):
        _november_activity()
        invoice_id = issue_monthly_invoices(month=NOVEMBER)[0].id
        db.session.commit()
    client = other.test_client()
    staff("finance")
    login(client, "finance@staff.test")
    html = client.get(f"/admin/billing/invoice/{invoice_id}").get_data(as_text=True)
    seller = re.search(r'data-testid="seller">(.*?)</address>', html, re.S).group(1)
    assert [line.strip() for line in seller.split("<br>")] == [
        "Certs Überall GmbH", "Hauptstraße 1", "10115 Berlin", "Germany", "Tax id DE123456789"]
    bill_to = re.search(r'data-testid="bill-to">(.*?)</address>', html, re.S).group(1)
    assert [line.strip() for line in bill_to.split("<br>")] == [
        "Acme Ltd", "1 Main Street", "Springfield 12345", "United States"]
    pdf = client.get(f"/admin/billing/invoice/{invoice_id}.pdf").data
    text = pdf_text(pdf)
    assert "Certs Überall GmbH" in text and "Hauptstraße 1" in text and "DE123456789" in text


@pytest.mark.clock(DEC_1)
def test_a_month_of_more_invoices_than_a_chunk_is_handed_to_the_job_runner(
        november_committed, client_as, appctx, app, monkeypatch):
    monkeypatch.setitem(app.config, "INVOICE_CHUNK_SIZE", 1)  # two invoices: two chunks
    client = client_as("finance")
    review, done = review_then_confirm(client, MONTHLY, {"month": "2026-11"})
    html = review.get_data(as_text=True)
    assert "Review: issue 2 invoices for November 2026" in html
    assert "The first 1 of 2 invoices; the totals cover all of them." in html
    assert 'data-testid="review-job"' in html and "$420.00" in html  # both, in the total
    assert done.status_code == 303
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "The job runner is issuing the invoices for November 2026, 1 at a time" in page
    assert 'data-testid="issuing-run"' in page and "Queued" in page
    assert 'data-testid="issue-form"' not in page  # no second Issue while it is queued
    assert 'data-testid="issuing-no-runner"' in page  # nothing runs the jobs in tests
    again = client.post(MONTHLY, data={"month": "2026-11", "step": "confirm",
                                       "review_token": review_token_from(
                                           review.get_data(as_text=True))})
    assert again.headers["Location"] == done.headers["Location"]  # a repeat queues nothing
    with appctx():
        assert _invoices() == []
        run = db.session.scalars(select(JobRun)).one()
        assert (run.job, run.status, run.arguments, run.requested_by.email) == (
            "monthly_invoices", JobStatus.QUEUED, {"month": "2026-11"}, "finance@staff.test")
        queued = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "job.run_now")).one()
        assert queued.actor_label == "finance@staff.test"
        assert queued.details["arguments"] == {"month": "2026-11"}
    with appctx():  # as the page shows a run under way
        run = db.session.scalars(select(JobRun)).one()
        run.status, run.started_at = JobStatus.RUNNING, DEC_1
        db.session.commit()
    running = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "The job runner is issuing these invoices" in running and "0 issued so far" in running
    with appctx():
        db.session.scalars(select(JobRun)).one().status = JobStatus.QUEUED
        db.session.commit()
    with appctx(), time_machine.travel(datetime(2027, 1, 5, 9, tzinfo=UTC), tick=False):
        assert jobs.run_queued() == 1  # in January: the month asked for, not December
        run = db.session.scalars(select(JobRun)).one()
        assert run.status == JobStatus.SUCCEEDED
        assert run.details == {"invoices": 2, "month": "2026-11-01"}
        assert [(i.period_start, i.total) for i in _invoices()] == [(NOVEMBER, 32000),
                                                                    (NOVEMBER, 10000)]
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="issuing-run"' not in page
    assert "INV-2027-000001" in page and "INV-2027-000002" in page  # issued in January


@pytest.mark.clock(DEC_1)
def test_a_failed_run_for_the_month_is_shown_and_the_month_can_be_issued_again(
        november_committed, client_as, appctx):
    with appctx():
        db.session.add(JobRun(job="monthly_invoices", trigger="manual", status=JobStatus.FAILED,
                              arguments={"month": "2026-11"}, started_at=DEC_1,
                              finished_at=DEC_1, error="OperationalError: server closed\n..."))
        db.session.add(JobRun(job="monthly_invoices", status=JobStatus.FAILED,
                              arguments={"month": "2026-10"}, started_at=DEC_1,
                              finished_at=DEC_1, error="another month's"))
        db.session.commit()
    client = client_as("finance")
    page = client.get(f"{MONTHLY}?month=2026-11").get_data(as_text=True)
    assert 'data-testid="issuing-failed"' in page and "OperationalError: server closed" in page
    assert "another month" not in page and 'data-testid="issuing-run"' not in page
    assert 'data-testid="issue-form"' in page and "Issue 2 invoices" in page
    assert 'http-equiv="refresh"' not in page
    review, done = review_then_confirm(client, MONTHLY, {"month": "2026-11"})
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Issued 2 invoices for November 2026." in page
    assert 'data-testid="issuing-failed"' not in page  # nothing left that the run missed
