"""Finance menu: partner transactions and invoices, refunds, reports, monthly invoicing.

- Transactions, transaction lines, invoices and invoice lines are read-only lists.
- A customer's Transactions & Refunds page lists charges and refunds newest first with
  each charge's refundable state; finance select transactions, set how many certificates
  to refund per line, review the amounts and Process Refund (POST, permission re-checked).
- Invoices render as a printable page and download as PDF.
- The transaction report filters, totals per currency and streams a CSV export.
- Monthly invoices can be previewed and issued for a finished month.

The billing pages keep their ``billing`` endpoints and ``/admin/billing/...`` URLs.
"""

from __future__ import annotations

from datetime import date

from dateutil.relativedelta import relativedelta
from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_admin import expose
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from .. import invoicing, refunds, reports
from ..clock import today, utcnow
from ..errors import DomainError, InvalidInput
from ..extensions import db
from ..invoice_pdf import invoice_pdf, period_label
from ..models import (
    Customer,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    Reseller,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from ..money import to_decimal
from ..permissions import Permission
from .base import ReadOnlyModelView, SecureBaseView, link_formatter, money_column, run_domain

CATEGORY = "Finance"

#: at most this many transactions are listed on one customer's page
CUSTOMER_PAGE_LIMIT = 500


def customer_transactions_url(customer_id: int) -> str:
    """The Transactions & Refunds page of one customer (for links from other pages)."""
    return url_for("billing.customer_transactions", customer_id=customer_id)


def _actor():
    return current_user._get_current_object()


class BillingView(SecureBaseView):
    """Customer transactions, the refund flow and invoice pages (reached by links)."""

    def is_visible(self) -> bool:
        return False

    @expose("/")
    def index(self):
        return redirect(url_for("transaction_report.index"))

    # ------------------------------------------------------------------ transactions

    @expose("/customer/<int:customer_id>/transactions")
    def customer_transactions(self, customer_id: int):
        customer = db.get_or_404(Customer, customer_id)
        transactions = db.session.scalars(
            select(Transaction).where(Transaction.customer_id == customer.id)
            .order_by(Transaction.created_at.desc(), Transaction.id.desc())
            .limit(CUSTOMER_PAGE_LIMIT)
        ).all()
        now = utcnow()
        rows = [(t, refunds.refund_state(t, now)) for t in transactions]
        return self.render("finance/customer_transactions.html", customer=customer, rows=rows,
                           can_refund=self.can(Permission.REFUND_WRITE),
                           limit=CUSTOMER_PAGE_LIMIT)

    # ------------------------------------------------------------------ refunds

    @expose("/customer/<int:customer_id>/refund", methods=("GET", "POST"))
    def refund(self, customer_id: int):
        """Counts per line -> review -> Process Refund; every step needs REFUND_WRITE."""
        self.require(Permission.REFUND_WRITE)
        customer = db.get_or_404(Customer, customer_id)
        source = request.form if request.method == "POST" else request.args
        charges = self._selected_charges(customer, source.getlist("transaction"))
        back = customer_transactions_url(customer.id)
        if not charges:
            flash("Select at least one charge to refund.", "error")
            return redirect(back, code=303)
        step = request.form.get("step") if request.method == "POST" else None
        if step is None:
            return self._counts_page(customer, charges, {})
        counts, problem = self._parse_counts(charges, request.form)
        if problem:
            flash(problem, "error")
            return self._counts_page(customer, charges, request.form), 400
        if step == "review":
            try:
                quotes = [(t, refunds.quote_refund(t, counts[t.id])) for t in charges
                          if any(counts[t.id].values())]
                if not quotes:
                    raise InvalidInput(
                        "Enter how many certificates to refund for at least one line.")
            except DomainError as exc:
                flash(str(exc), "error")
                return self._counts_page(customer, charges, request.form)
            return self.render("finance/refund_review.html", customer=customer,
                               quotes=quotes, counts=counts, back_url=back,
                               total=sum(q.total for _, q in quotes),
                               currency=quotes[0][1].currency)
        if step != "confirm":
            abort(400)
        ok, done = run_domain(lambda: refunds.refund_transactions(
            [(t, counts[t.id]) for t in charges], actor=_actor()))
        if not ok:
            return redirect(url_for(".refund", customer_id=customer.id,
                                    transaction=[t.id for t in charges]), code=303)
        total = -sum(t.amount for t in done)
        flash(f"Refunded {', '.join(f'{t.refunded_transaction}' for t in done)}: "
              f"{to_decimal(total, done[0].currency)} {done[0].currency} "
              "goes on the customer's next invoice.", "success")
        return redirect(back, code=303)

    def _selected_charges(self, customer: Customer, ids: list[str]) -> list[Transaction]:
        wanted = sorted({int(i) for i in ids if i.isdigit()})
        if not wanted:
            return []
        charges = db.session.scalars(
            select(Transaction).where(Transaction.id.in_(wanted)).order_by(Transaction.id)
        ).all()
        if len(charges) != len(wanted) or any(
                t.customer_id != customer.id or t.kind != TransactionKind.CHARGE
                for t in charges):
            abort(404)
        return list(charges)

    @staticmethod
    def _parse_counts(charges, form) -> tuple[dict[int, dict[str, int]], str | None]:
        counts: dict[int, dict[str, int]] = {}
        for charge in charges:
            counts[charge.id] = {}
            for line in charge.lines:
                code = line.certificate_type.code
                raw = (form.get(f"count-{charge.id}-{code}") or "0").strip() or "0"
                if not raw.isdigit():
                    return counts, (f"The number of {code} certificates to refund from "
                                    f"{charge} must be a whole number of 0 or more.")
                counts[charge.id][code] = int(raw)
        return counts, None

    def _counts_page(self, customer, charges, values):
        now = utcnow()
        return self.render("finance/refund_counts.html", customer=customer,
                           charges=[(t, refunds.refund_state(t, now)) for t in charges],
                           values=values, back_url=customer_transactions_url(customer.id))

    # ------------------------------------------------------------------ invoices

    @expose("/invoice/<int:invoice_id>")
    def invoice(self, invoice_id: int):
        invoice = db.get_or_404(Invoice, invoice_id)
        return self.render("finance/invoice.html", invoice=invoice,
                           period=period_label(invoice))

    @expose("/invoice/<int:invoice_id>.pdf")
    def invoice_pdf(self, invoice_id: int):
        invoice = db.get_or_404(Invoice, invoice_id)
        body = invoice_pdf(invoice, current_app.config.get("DISPLAY_LOCALE", "en_US"))
        return Response(body, mimetype="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="{invoice.number}.pdf"'})


class TransactionReportView(SecureBaseView):
    """Transactions filtered by dates, customer, reseller, kind and reason; CSV export."""

    @expose("/")
    def index(self):
        try:
            filters = reports.ReportFilters.from_args(request.args)
        except DomainError as exc:
            flash(str(exc), "error")
            filters = reports.ReportFilters()
        page = request.args.get("page", "0")
        page = int(page) if page.isdigit() else 0
        per_page = 100
        rows = reports.report_page(filters, page=page, per_page=per_page + 1)
        return self.render(
            "finance/report.html", filters=filters, args=filters.as_args(),
            totals=reports.report_totals(filters), rows=rows[:per_page], page=page,
            has_next=len(rows) > per_page, can_export=self.can(Permission.REPORT_EXPORT),
            customers=db.session.execute(
                select(Customer.id, Customer.company_name).order_by(Customer.company_name)
            ).all(),
            resellers=db.session.execute(
                select(Reseller.id, Reseller.company_name).order_by(Reseller.company_name)
            ).all(),
            kinds=list(TransactionKind), reasons=list(TransactionReason),
        )

    @expose("/export.csv")
    def export(self):
        """Every matching row as CSV, streamed: rows are fetched in batches, never all."""
        self.require(Permission.REPORT_EXPORT)
        try:
            filters = reports.ReportFilters.from_args(request.args)
        except DomainError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".index"), code=303)
        filename = f"transactions-{utcnow():%Y%m%d-%H%M%S}.csv"
        return Response(stream_with_context(reports.stream_csv(filters)),
                        mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 "X-Content-Type-Options": "nosniff"})


class MonthlyInvoicesView(SecureBaseView):
    """Preview a finished month's invoices and issue them (what the monthly job does)."""

    @expose("/", methods=("GET", "POST"))
    def index(self):
        source = request.form if request.method == "POST" else request.args
        month = _parse_month(source.get("month")) or _previous_month()
        if request.method == "POST":
            self.require(Permission.INVOICE_WRITE)
            ok, issued = run_domain(
                lambda: invoicing.issue_monthly_invoices(month=month, actor=_actor()))
            if ok:
                flash(f"Issued {len(issued)} invoice{'s' if len(issued) != 1 else ''} "
                      f"for {month:%B %Y}.", "success")
            return redirect(url_for(".index", month=month.strftime("%Y-%m")), code=303)
        try:
            pending = invoicing.pending_monthly_invoices(month=month)
        except DomainError as exc:
            flash(str(exc), "error")
            pending = []
        issued = db.session.scalars(
            select(Invoice).where(Invoice.kind == InvoiceKind.MONTHLY,
                                  Invoice.period_start == month)
            .order_by(Invoice.number)
        ).all()
        return self.render("finance/monthly_invoices.html", month=month, pending=pending,
                           issued=issued, can_issue=self.can(Permission.INVOICE_WRITE))


def _previous_month() -> date:
    return today().replace(day=1) - relativedelta(months=1)


def _parse_month(value: str | None) -> date | None:
    """``2026-11`` (or a full date) -> the month's first day; None when absent or bad."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value[:7] + "-01")
    except ValueError:
        flash(f"'{value}' is not a month (YYYY-MM).", "error")
        return None


# --------------------------------------------------------------------------- lists


class TransactionView(ReadOnlyModelView):
    column_list = ("id", "created_at", "customer", "subscription", "kind", "reason", "amount",
                   "currency", "invoice", "actor")
    column_details_list = ("id", "created_at", "customer", "subscription", "kind", "reason",
                           "refunded_transaction", "amount", "currency", "lines", "invoice",
                           "actor")
    column_filters = ("kind", "reason", "currency", "created_at", "customer.company_name")
    column_searchable_list = ("customer.company_name",)
    column_default_sort = ("created_at", True)
    column_formatters = {
        "amount": money_column(),
        "customer": link_formatter("customer"),
        "subscription": link_formatter("subscription"),
        "invoice": link_formatter("invoice"),
        "refunded_transaction": link_formatter("transaction"),
        "lines": lambda v, c, m, n: "; ".join(
            f"{line.certificate_type.code} x {line.quantity}" for line in m.lines
        ),
    }


class TransactionLineView(ReadOnlyModelView):
    column_list = ("id", "transaction", "certificate_type", "quantity", "full_amount",
                   "days_charged", "days_in_term", "amount", "refunded_quantity",
                   "refunded_amount")
    column_filters = ("certificate_type.code",)
    column_formatters = {
        "transaction": link_formatter("transaction"),
        "amount": money_column("transaction.currency"),
        "full_amount": money_column("transaction.currency"),
        "refunded_amount": money_column("transaction.currency"),
    }


def _printable_invoice_link(_view, _context, model, _name):
    """The invoice number, linking to its printable page (with the PDF download)."""
    url = url_for("billing.invoice", invoice_id=model.id)
    return Markup('<a href="{}">{}</a>').format(url, model.number)


class InvoiceView(ReadOnlyModelView):
    column_list = ("number", "kind", "order", "customer", "period_start", "currency", "total",
                   "issued_at")
    column_details_list = ("number", "kind", "order", "customer", "period_start", "billing",
                           "currency", "total", "lines", "issued_at")
    column_searchable_list = ("number",)
    column_filters = ("kind", "currency", "issued_at", "period_start")
    column_default_sort = ("issued_at", True)
    column_formatters = {
        "number": _printable_invoice_link,
        "total": money_column(),
        "order": link_formatter("order"),
        "customer": link_formatter("customer"),
        "lines": lambda v, c, m, n: "; ".join(
            f"{line.description} x {line.quantity}" for line in m.lines
        ),
    }


class InvoiceLineView(ReadOnlyModelView):
    column_list = ("id", "invoice", "position", "description", "quantity", "amount")
    column_searchable_list = ("description",)
    column_formatters = {
        "invoice": link_formatter("invoice"),
        "amount": money_column("invoice.currency"),
    }


def register(admin, db) -> None:
    """Add the Finance menu to the console."""
    admin.add_view(TransactionView(Transaction, db, name="Transactions", category=CATEGORY))
    admin.add_view(TransactionLineView(TransactionLine, db, name="Transaction lines",
                                       category=CATEGORY))
    admin.add_view(InvoiceView(Invoice, db, name="Invoices", category=CATEGORY))
    admin.add_view(InvoiceLineView(InvoiceLine, db, name="Invoice lines", category=CATEGORY))
    admin.add_view(BillingView(name="Billing", endpoint="billing", url="/admin/billing"))
    admin.add_view(TransactionReportView(name="Transaction report", category=CATEGORY,
                                         endpoint="transaction_report",
                                         url="/admin/billing/report"))
    admin.add_view(MonthlyInvoicesView(name="Monthly invoices", category=CATEGORY,
                                       endpoint="monthly_invoices",
                                       url="/admin/billing/monthly-invoices"))
