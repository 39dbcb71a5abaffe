"""Monthly invoices for partner customers (DESIGN.md, "Invoices").

Each month one invoice per partner customer carries every charge and refund not yet
invoiced (refunds as negative lines). Numbers come from the same gap-free counter as
retail order invoices, so they are sequential across both kinds and never reused. An
issued invoice never changes: ORM updates and deletes of invoices are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from dateutil.relativedelta import relativedelta
from sqlalchemy import event, exists, func, select
from sqlalchemy.orm import object_session

from . import audit
from .clock import today, utcnow
from .errors import Conflict, InvalidInput
from .extensions import db
from .models import Customer, Invoice, InvoiceKind, InvoiceLine, Transaction, TransactionKind
from .numbering import next_number

REASON_LABELS = {
    "new_subscription": "new subscription",
    "inventory_added": "certificates added",
    "renewal": "renewal",
    "refund": "refund",
}


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The first instant of ``month`` and of the month after it, UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    return start, start + relativedelta(months=1)


def _check_month(month: date) -> date:
    if not isinstance(month, date) or month.day != 1:
        raise InvalidInput("Name the month to invoice by its first day, e.g. 2026-11-01.")
    if month + relativedelta(months=1) > today():
        raise InvalidInput(
            f"{month:%B %Y} is not over yet; its invoices can be issued from "
            f"{(month + relativedelta(months=1)).isoformat()}.")
    return month


def billing_snapshot(customer: Customer) -> dict:
    """Who the invoice is made out to, copied from the customer's address when issued."""
    details = {
        "name": customer.company_name,
        "address1": customer.address1,
        "address2": customer.address2,
        "address3": customer.address3,
        "city": customer.city,
        "postal_code": customer.postal_code,
        "state": customer.state,
        "country": customer.country,
        "reseller": customer.reseller.company_name if customer.reseller else "",
    }
    return {key: value for key, value in details.items() if value}


def line_description(transaction: Transaction, line) -> str:
    """An invoice line's text: what was charged or refunded, for which subscription."""
    cert = line.certificate_type
    subscription = f"subscription #{transaction.subscription_id}"
    if transaction.kind == TransactionKind.REFUND:
        return (f"Refund of {transaction.refunded_transaction}: {cert.name} ({cert.code}), "
                f"{subscription}")
    reason = REASON_LABELS.get(transaction.reason.value, transaction.reason.value)
    days = ""
    if line.days_charged != line.days_in_term:
        days = f", {line.days_charged}/{line.days_in_term} days"
    return f"{cert.name} ({cert.code}), {reason}, {subscription}{days} ({transaction})"


def _uninvoiced(end: datetime):
    """Transactions made before ``end`` that no invoice carries yet."""
    return (Transaction.invoice_id.is_(None), Transaction.created_at < end)


@dataclass(frozen=True)
class PendingInvoice:
    """What issuing a month's invoices would put on one customer's invoice."""

    customer_id: int
    customer_name: str
    currency: str
    transactions: int
    total: int


def _due_customer_ids(month: date) -> list[int]:
    """Customers with uninvoiced transactions and no invoice for ``month`` yet."""
    _start, end = month_bounds(month)
    already = exists().where(Invoice.customer_id == Transaction.customer_id,
                             Invoice.period_start == month)
    return list(db.session.scalars(
        select(Transaction.customer_id).where(*_uninvoiced(end), ~already)
        .group_by(Transaction.customer_id).order_by(Transaction.customer_id)
    ))


def pending_monthly_invoices(*, month: date) -> list[PendingInvoice]:
    """A preview of :func:`issue_monthly_invoices` for ``month``; writes nothing."""
    month = _check_month(month)
    ids = _due_customer_ids(month)
    if not ids:
        return []
    _start, end = month_bounds(month)
    rows = db.session.execute(
        select(Customer.id, Customer.company_name, Transaction.currency,
               func.count(Transaction.id), func.sum(Transaction.amount))
        .join(Transaction, Transaction.customer_id == Customer.id)
        .where(Customer.id.in_(ids), *_uninvoiced(end))
        .group_by(Customer.id, Customer.company_name, Transaction.currency)
        .order_by(Customer.id)
    ).all()
    return [PendingInvoice(*row) for row in rows]


@dataclass(frozen=True)
class MonthlyInvoicesReview:
    """The review of issuing a month's invoices: what each invoice will carry."""

    month: date
    invoices: tuple[PendingInvoice, ...]


def review_monthly_invoices(*, month: date) -> MonthlyInvoicesReview:
    """What :func:`issue_monthly_invoices` would issue for ``month``; writes nothing.

    Refuses a month that is not over, and a month with nothing left to invoice (issuing
    it again would issue nothing).
    """
    pending = pending_monthly_invoices(month=month)
    if not pending:
        raise InvalidInput(
            f"There is nothing to invoice for {month:%B %Y}: every transaction made before "
            "it ended is on an invoice already.")
    return MonthlyInvoicesReview(month=month, invoices=tuple(pending))


def issue_monthly_invoices(*, month: date, actor=None,
                           reviewed: MonthlyInvoicesReview | None = None) -> list[Invoice]:
    """Issue ``month``'s invoice to every partner customer with something to invoice.

    Each invoice carries the customer's charges and refunds made before the month ended
    that no invoice carries yet, so a refund made after an invoice was issued goes on the
    next one. Running it again for the same month issues nothing new. With ``reviewed``
    (from :func:`review_monthly_invoices`), what is issued, read under the row locks, must
    be exactly what was reviewed, or nothing is issued.
    """
    month = _check_month(month)
    _start, end = month_bounds(month)
    issued = []
    carried: list[PendingInvoice] = []
    for customer_id in _due_customer_ids(month):
        transactions = db.session.scalars(
            select(Transaction).where(Transaction.customer_id == customer_id,
                                      *_uninvoiced(end))
            .order_by(Transaction.created_at, Transaction.id)
            .with_for_update().execution_options(populate_existing=True)
        ).all()
        if not transactions:  # another run took them meanwhile
            continue
        customer = db.session.get_one(Customer, customer_id)
        invoice = _issue(customer, month, list(transactions), actor=actor)
        issued.append(invoice)
        carried.append(PendingInvoice(customer_id, customer.company_name, invoice.currency,
                                      len(transactions), invoice.total))
    if reviewed is not None and (reviewed.month != month
                                 or tuple(carried) != reviewed.invoices):
        raise Conflict(f"The invoices for {month:%B %Y} changed while they were being issued; "
                       "nothing was issued. Review them again.")
    return issued


def _issue(customer: Customer, month: date, transactions: list[Transaction], *,
           actor) -> Invoice:
    invoice = Invoice(
        number=next_number("invoice", "INV"), kind=InvoiceKind.MONTHLY, customer=customer,
        period_start=month, billing=billing_snapshot(customer),
        currency=transactions[0].currency, total=sum(t.amount for t in transactions),
        issued_at=utcnow(),
    )
    db.session.add(invoice)
    db.session.flush()
    position = 0
    for transaction in transactions:
        for line in transaction.lines:
            position += 1
            db.session.add(InvoiceLine(
                invoice=invoice, position=position, quantity=line.quantity,
                amount=line.amount, description=line_description(transaction, line),
                transaction_id=transaction.id,
            ))
        transaction.invoice_id = invoice.id
    db.session.flush()
    audit.record(actor, "invoice.issue_monthly", invoice, {
        "number": invoice.number, "customer_id": customer.id, "period_start": month,
        "total": invoice.total, "currency": invoice.currency,
        "transactions": [t.id for t in transactions],
    }, actor_label=None if actor is not None else "job:monthly-invoices")
    return invoice


@event.listens_for(Invoice, "before_update")
@event.listens_for(InvoiceLine, "before_update")
def _refuse_update(_mapper, _connection, target) -> None:
    # Adding a line to an invoice's collection marks it dirty without changing a column.
    session = object_session(target)
    if session is not None and not session.is_modified(target, include_collections=False):
        return
    raise RuntimeError(f"{type(target).__name__} {target.id} is issued and cannot be changed")


@event.listens_for(Invoice, "before_delete")
@event.listens_for(InvoiceLine, "before_delete")
def _refuse_delete(_mapper, _connection, target) -> None:
    raise RuntimeError(f"{type(target).__name__} {target.id} is issued and cannot be deleted")
