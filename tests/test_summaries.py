"""The finished months' customer totals: what is still to invoice read from them equals
what the transactions say, whenever they were written and whatever was issued since; a
month is summarized an hour after it ends; issuing marks the rows it carries; a month
summarized is previewed without reading a transaction."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import delete, select

from backoffice import dashboard, invoicing, reports, subscriptions, summaries
from backoffice.extensions import db
from backoffice.models import (
    Customer,
    CustomerMonthTotal,
    MonthlyTotal,
    SubscriptionProduct,
    SummaryMark,
    Transaction,
    TransactionKind,
)
from backoffice.refunds import refund
from tests import factories
from tests.queries import counted_statements

SEPTEMBER, OCTOBER, NOVEMBER = date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)


def _at(*moment) -> time_machine.travel:
    return time_machine.travel(datetime(*moment, tzinfo=UTC), tick=False)


def make_history() -> dict[str, int]:
    """Acme (USD): a subscription in September, part of it refunded and more added in
    October, a charge at October's last second; Euro GmbH (EUR): a subscription in
    October; Globex: a charge at November's first instant. Flushed."""
    with _at(2026, 9, 15, 9):
        product = factories.catalog("billing")
        acme = factories.customer("Acme Ltd")
        euro = factories.customer("Euro GmbH", currency="EUR", country="DE")
        globex = factories.customer("Globex")
        subscription = factories.subscribe(acme, product, {"DV": 3, "OV": 1})
    with _at(2026, 10, 2, 9):
        refund(factories.charge_of(subscription), {"DV": 1}, actor=None)
        factories.subscribe(euro, product, {"DV": 2})
    with _at(2026, 10, 31, 23, 59, 59):
        subscriptions.add_inventory(subscription, {"DV": 1}, actor=None)
    with _at(2026, 11, 1, 0, 0):
        factories.subscribe(globex, product, {"OV": 1})
    db.session.flush()
    return {"acme": acme.id, "euro": euro.id, "globex": globex.id}


@pytest.fixture
def history(ctx):
    return make_history()


def reads(month: date) -> tuple:
    """Everything the Monthly invoices page and the dashboard say is still to invoice."""
    return (invoicing.pending_monthly_invoices(month=month),
            invoicing.pending_summary(month=month), dashboard.finance_queue()["uninvoiced"])


def live(month: date) -> tuple:
    """:func:`reads` from the transactions alone: with no summaries at all."""
    with db.session.begin_nested() as nested:
        db.session.execute(delete(CustomerMonthTotal))
        db.session.execute(delete(SummaryMark))
        from_transactions = reads(month)
        nested.rollback()
    return from_transactions


def summary_rows() -> list[tuple]:
    return [(row.customer_id, row.month, row.currency, row.invoice_id, row.transactions,
             row.amount) for row in db.session.scalars(
        select(CustomerMonthTotal).order_by(CustomerMonthTotal.customer_id,
                                            CustomerMonthTotal.month))]


def test_what_is_due_read_from_the_summaries_equals_the_transactions(history):
    with _at(2026, 11, 20, 12):
        summaries.summarize_finished_days()
        assert {month for _c, month, *_rest in summary_rows()} == {SEPTEMBER, OCTOBER, NOVEMBER}
        for month in (SEPTEMBER, OCTOBER, NOVEMBER):
            assert reads(month) == live(month)
        pending = invoicing.pending_monthly_invoices(month=OCTOBER)
        assert [(p.customer_id, p.currency, p.transactions) for p in pending] == [
            (history["acme"], "USD", 3), (history["euro"], "EUR", 1)]
        november = invoicing.pending_summary(month=NOVEMBER)
        assert november.invoices == 3  # Globex's first instant of November is live


def test_a_day_is_summed_an_hour_after_it_ends_and_once(history):
    with _at(2026, 11, 1, 0, 59, 59):  # up to October 31, 00:00
        written = summaries.summarize_finished_days()
        assert written.customer_month_totals == 3  # Acme's September and October, Euro's
        assert reads(OCTOBER) == live(OCTOBER)
    with _at(2026, 11, 1, 1, 0):  # October 31: Acme's last-second addition
        assert summaries.summarize_finished_days().customer_month_totals == 1
        assert summaries.summarize_finished_days() == (0, 0)
        assert summaries.summarized_until() == datetime(2026, 11, 1, tzinfo=UTC)
    assert [(c, m, cur, n) for c, m, cur, _i, n, _a in summary_rows()] == [
        (history["acme"], SEPTEMBER, "USD", 1), (history["acme"], OCTOBER, "USD", 2),
        (history["euro"], OCTOBER, "EUR", 1)]
    with _at(2026, 11, 1, 1, 0):
        assert reads(OCTOBER) == live(OCTOBER)


def test_issuing_marks_the_rows_it_carries(history):
    with _at(2026, 11, 2, 9):
        summaries.summarize_finished_days()
        review = invoicing.review_monthly_invoices(month=OCTOBER)
        issued = invoicing.issue_monthly_invoices(month=OCTOBER, reviewed=review)
        by_customer = {invoice.customer_id: invoice.id for invoice in issued}
        assert set(by_customer) == {history["acme"], history["euro"]}
        assert {(c, m, i) for c, m, _cur, i, _n, _a in summary_rows()} == {
            (history["acme"], SEPTEMBER, by_customer[history["acme"]]),
            (history["acme"], OCTOBER, by_customer[history["acme"]]),
            (history["euro"], OCTOBER, by_customer[history["euro"]]),
            (history["globex"], NOVEMBER, None)}
        assert invoicing.pending_summary(month=OCTOBER).invoices == 0
        for month in (OCTOBER, NOVEMBER):
            assert reads(month) == live(month)
        assert dashboard.finance_queue()["uninvoiced"] == {"USD": sum(
            p.total for p in invoicing.pending_monthly_invoices(month=NOVEMBER))}


def test_a_day_summed_after_its_month_was_issued_goes_to_the_invoice_row(history):
    with _at(2026, 10, 31, 2, 0):  # up to October 31, 00:00
        summaries.summarize_finished_days()
    with _at(2026, 11, 1, 0, 10):  # before October 31 is summed
        issued = invoicing.issue_monthly_invoices(month=OCTOBER)
    carried = {invoice.customer_id: invoice.id for invoice in issued}
    with _at(2026, 11, 1, 2, 0):
        summaries.summarize_finished_days()
        assert {(c, m, i, n) for c, m, _cur, i, n, _a in summary_rows()} == {
            (history["acme"], SEPTEMBER, carried[history["acme"]], 1),
            (history["acme"], OCTOBER, carried[history["acme"]], 2),
            (history["euro"], OCTOBER, carried[history["euro"]], 1)}
        assert reads(NOVEMBER) == live(NOVEMBER)
        assert invoicing.pending_summary(month=OCTOBER).invoices == 0


def test_a_charge_dated_in_an_issued_month_is_due_on_the_next_invoice_only(history):
    """A charge made at October's last second whose transaction commits after October was
    issued: issuing October again would skip Acme (one invoice a month), so October's
    preview leaves it out and November's carries it."""
    with _at(2026, 10, 31, 2, 0):
        summaries.summarize_finished_days()
    with _at(2026, 11, 1, 0, 5):
        issued = invoicing.issue_monthly_invoices(month=OCTOBER)
        assert {invoice.customer_id for invoice in issued} == {history["acme"],
                                                               history["euro"]}
    with _at(2026, 10, 31, 23, 59, 59):  # begun before midnight, committed after the issue
        product = db.session.scalars(select(SubscriptionProduct)).one()
        late = factories.subscribe(db.session.get(Customer, history["acme"]), product,
                                   {"OV": 1})
        db.session.flush()
    late_amount = factories.charge_of(late).amount
    globex_amount = db.session.scalar(
        select(Transaction.amount).where(Transaction.customer_id == history["globex"]))
    with _at(2026, 11, 1, 0, 30):
        assert invoicing.pending_monthly_invoices(month=OCTOBER) == []
        assert invoicing.pending_summary(month=OCTOBER) == invoicing.PendingSummary(0, ())
        november = invoicing.pending_summary(month=NOVEMBER)
        assert november.invoices == 2  # Acme's late charge and Globex
        assert november.totals == (("USD", 2, late_amount + globex_amount),)
    with _at(2026, 11, 1, 2, 0):  # once October 31 is summed, the same
        summaries.summarize_finished_days()
        assert invoicing.pending_summary(month=OCTOBER).invoices == 0
        assert invoicing.pending_summary(month=NOVEMBER) == november
        for month in (OCTOBER, NOVEMBER):
            assert reads(month) == live(month)


def test_a_refund_after_the_invoice_goes_on_the_next_one(history):
    with _at(2026, 11, 2, 9):
        summaries.summarize_finished_days()
        invoicing.issue_monthly_invoices(month=OCTOBER)
    with _at(2026, 11, 5, 9):
        added = db.session.scalars(  # Acme's certificate added on October's last second
            select(Transaction).where(Transaction.customer_id == history["acme"],
                                      Transaction.kind == TransactionKind.CHARGE)
            .order_by(Transaction.id.desc()).limit(1)).one()
        assert added.invoice_id is not None
        refund(added, {"DV": 1}, actor=None)
    with _at(2026, 12, 1, 3, 0):
        summaries.summarize_finished_days()
        pending = invoicing.pending_monthly_invoices(month=NOVEMBER)
        assert pending == live(NOVEMBER)[0]
        acme = next(p for p in pending if p.customer_id == history["acme"])
        assert acme.transactions == 1 and acme.total < 0


def test_a_summarized_month_is_previewed_without_reading_a_transaction(history):
    def statements() -> list[str]:
        with counted_statements() as seen:
            invoicing.pending_monthly_invoices(month=OCTOBER, limit=100)
            invoicing.pending_summary(month=OCTOBER)
        return list(seen)

    def reads_transactions(sql: str) -> bool:  # the table, not the column "transactions"
        return re.search(r'(^|[\s,(])"?transaction"?(\.|\s|,|$)', sql) is not None

    with _at(2026, 11, 20, 12):
        assert any(reads_transactions(sql) for sql in statements())  # nothing summarized
        summaries.summarize_finished_days()
        read = statements()
        assert read and not any(reads_transactions(sql) for sql in read)


@pytest.mark.parametrize("date_from, date_to, kind", [
    (date(2026, 9, 1), date(2026, 11, 30), None),  # whole months, the last one partly summed
    (date(2026, 9, 16), date(2026, 10, 31), None),  # a partial month first
    (date(2026, 10, 1), date(2026, 10, 30), None),  # less than a month: all live
    (date(2026, 10, 1), date(2026, 10, 31), TransactionKind.REFUND),
    (date(2026, 9, 1), date(2026, 12, 31), TransactionKind.CHARGE),
    (date(2025, 12, 1), date(2026, 11, 30), None),
])
def test_the_report_totals_read_from_the_summaries_equal_the_transactions(
        history, date_from, date_to, kind):
    filters = reports.ReportFilters(date_from=date_from, date_to=date_to, kind=kind)
    with _at(2026, 11, 1, 1, 0):  # summed up to November 1, 00:00
        summaries.summarize_finished_days()
    with _at(2026, 11, 20, 12):
        from_summaries = reports.report_totals(filters)
        with db.session.begin_nested() as nested:
            db.session.execute(delete(MonthlyTotal))
            db.session.execute(delete(SummaryMark))
            assert reports.report_totals(filters) == from_summaries
            nested.rollback()
    assert from_summaries  # each range has transactions


def test_the_report_reads_the_summaries_rather_than_the_months_rows(history):
    with _at(2026, 11, 2, 1, 0):
        summaries.summarize_finished_days()
        october = db.session.scalars(select(MonthlyTotal).where(
            MonthlyTotal.month == OCTOBER, MonthlyTotal.currency == "USD",
            MonthlyTotal.kind == TransactionKind.CHARGE)).one()
        october.amount += 100
        db.session.flush()
        totals = reports.report_totals(reports.ReportFilters(
            date_from=OCTOBER, date_to=date(2026, 10, 31)))
        live = reports.report_totals(reports.ReportFilters(
            date_from=OCTOBER, date_to=date(2026, 10, 31), customer_id=history["acme"]))
    usd = next(t for t in totals if t.currency == "USD")
    assert usd.charges == live[0].charges + 100  # Acme has October's USD charges
