"""Finance menu: partner transactions and invoices."""

from __future__ import annotations

from flask import url_for
from markupsafe import Markup

from ..models import Invoice, InvoiceLine, Transaction, TransactionLine
from .base import ReadOnlyModelView, link_formatter, money_column

CATEGORY = "Finance"


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
