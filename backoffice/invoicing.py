"""Monthly invoices for partner customers (DESIGN.md, "Invoices").

Each month one invoice per partner customer carries every charge and refund not yet
invoiced (refunds as negative lines). Numbers come from the same gap-free counter as
retail order invoices, so they are sequential across both kinds and never reused. An
issued invoice never changes: ORM updates and deletes of invoices are refused.

Customers are issued in chunks, by customer id (keyset, never an ``IN`` list of ids):
each chunk locks its customers' uninvoiced transactions, loads their lines with one query
and writes its invoices, lines and events with a few set-based statements. The job
commits after each chunk (``issue_in_chunks``); a staff member's reviewed issue runs
every chunk in one transaction (``issue_monthly_invoices``).

Every invoice is first drafted (``_drafts``: lines, total, billing) and then written; the
next-invoice preview (``preview_invoice``) is the same draft for one customer's range of
ids, unlocked and never written, so it shows exactly what issuing will write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    BigInteger,
    Integer,
    bindparam,
    event,
    exists,
    func,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import object_session

from . import audit, summaries
from .bulk import insert_rows
from .clock import today, utcnow
from .errors import Conflict, InvalidInput
from .extensions import db
from .models import (
    CertificateType,
    Customer,
    CustomerMonthTotal,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    Reseller,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from .numbering import format_number, reserve_block

REASON_LABELS = {
    "new_subscription": "new subscription",
    "inventory_added": "certificates added",
    "renewal": "renewal",
    "refund": "refund",
}

#: customers invoiced in one chunk (the job's ``INVOICE_CHUNK_SIZE``)
CHUNK_SIZE = 1000

#: how the job signs its audit events
ACTOR_LABEL = "job:monthly-invoices"


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The first instant of ``month`` and of the month after it, UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    return start, start + relativedelta(months=1)


def _check_started(month: date) -> date:
    """``month`` named by its first day, and begun: the current month or one before it."""
    if not isinstance(month, date) or month.day != 1:
        raise InvalidInput("Name the month to invoice by its first day, e.g. 2026-11-01.")
    if month > today():
        raise InvalidInput(f"{month:%B %Y} has not started yet; what is not invoiced so far "
                           f"goes on the invoice of {today():%B %Y} or before.")
    return month


def is_over(month: date) -> bool:
    """Whether ``month`` has ended, so that its invoices can be issued."""
    return month + relativedelta(months=1) <= today()


def check_issuable(month: date) -> date:
    """``month`` named by its first day, and over: a month whose invoices can be issued."""
    _check_started(month)
    if not is_over(month):
        raise InvalidInput(
            f"{month:%B %Y} is not over yet; its invoices can be issued from "
            f"{(month + relativedelta(months=1)).isoformat()}.")
    return month


_ADDRESS_FIELDS = ("address1", "address2", "address3", "city", "postal_code", "state",
                   "country")


def billing_snapshot(customer: Customer) -> dict:
    """Who the invoice is made out to, copied from the customer's address when issued."""
    return _billing(customer.company_name,
                    *(getattr(customer, name) for name in _ADDRESS_FIELDS),
                    customer.reseller.company_name if customer.reseller else "")


def _billing(name: str, *address_and_reseller: str) -> dict:
    details = {"name": name, **dict(zip((*_ADDRESS_FIELDS, "reseller"),
                                        address_and_reseller, strict=True))}
    return {key: value for key, value in details.items() if value}


def line_description(transaction: Transaction, line) -> str:
    """An invoice line's text: what was charged or refunded, for which subscription."""
    cert = line.certificate_type
    return _describe(transaction.id, transaction.kind, transaction.reason,
                     transaction.subscription_id, transaction.refunded_transaction_id,
                     cert.code, cert.name, line.days_charged, line.days_in_term)


def _describe(transaction_id: int, kind: TransactionKind, reason: TransactionReason,
              subscription_id: int, refunded_id: int | None, code: str, name: str,
              days_charged: int, days_in_term: int) -> str:
    subscription = f"subscription #{subscription_id}"
    if kind == TransactionKind.REFUND:
        return f"Refund of T{refunded_id}: {name} ({code}), {subscription}"
    label = REASON_LABELS.get(reason.value, reason.value)
    days = f", {days_charged}/{days_in_term} days" if days_charged != days_in_term else ""
    return f"{name} ({code}), {label}, {subscription}{days} (T{transaction_id})"


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


def _due_rows(month: date):
    """What is due for ``month``, as rows of (customer_id, currency, transactions, total),
    with customers it has invoiced already among them (:func:`_not_invoiced` leaves them out).

    The days summarized (``summaries``) come from the customer month rows still to
    invoice; only the transactions made since the summaries' mark are read, and none at
    all for a month summarized to its end (the month due, once the nightly job has run).
    """
    _start, end = month_bounds(month)
    since = summaries.summarized_until()
    parts = []
    if since is not None:
        parts.append(
            select(CustomerMonthTotal.customer_id, CustomerMonthTotal.currency,
                   CustomerMonthTotal.transactions.label("transactions"),
                   CustomerMonthTotal.amount.label("total"))
            .where(CustomerMonthTotal.invoice_id.is_(None), CustomerMonthTotal.month <= month))
    if since is None or since < end:
        live = (select(Transaction.customer_id, Transaction.currency,
                       literal(1, Integer).label("transactions"),
                       Transaction.amount.label("total"))
                .where(*_uninvoiced(end)))
        parts.append(live if since is None else live.where(Transaction.created_at >= since))
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("due")


def _not_invoiced(month: date, customer_id):
    """The condition that the customer whose id is ``customer_id`` (a column) has no
    invoice for ``month`` yet."""
    return ~exists().where(Invoice.customer_id == customer_id, Invoice.period_start == month)


def pending_monthly_invoices(*, month: date, limit: int | None = None) -> list[PendingInvoice]:
    """A preview of :func:`issue_monthly_invoices` for ``month``, by customer id; writes
    nothing. ``limit`` keeps the first so many (a page shows a sample, with the totals
    of :func:`pending_summary`). For the current month, what is not invoiced so far."""
    month = _check_started(month)
    rows = _due_rows(month)
    query = (
        select(rows.c.customer_id, Customer.company_name, rows.c.currency,
               func.sum(rows.c.transactions), func.sum(rows.c.total))
        .join(Customer, Customer.id == rows.c.customer_id)
        .where(_not_invoiced(month, rows.c.customer_id))
        .group_by(rows.c.customer_id, Customer.company_name, rows.c.currency)
        .order_by(rows.c.customer_id, rows.c.currency)
    )
    if limit is not None:
        query = query.limit(limit)
    return [PendingInvoice(customer_id, name, currency, int(transactions), int(total))
            for customer_id, name, currency, transactions, total in db.session.execute(query)]


@dataclass(frozen=True)
class PendingSummary:
    """How many invoices issuing a month would make, and their totals by currency."""

    invoices: int
    #: (currency, transactions, total), by currency
    totals: tuple[tuple[str, int, int], ...]


def pending_summary(*, month: date) -> PendingSummary:
    """The counts and totals of :func:`pending_monthly_invoices`, in one statement that
    reads what is due once: it is summed per customer and currency first (one row per
    invoice and currency), and the customers already invoiced are left out of those rows
    rather than tested for every summary row."""
    month = _check_started(month)
    rows = _due_rows(month)
    per_customer = (
        select(rows.c.customer_id, rows.c.currency,
               func.sum(rows.c.transactions).label("transactions"),
               func.sum(rows.c.total).label("total"))
        .group_by(rows.c.customer_id, rows.c.currency).subquery("per_customer"))
    due = (select(per_customer).where(_not_invoiced(month, per_customer.c.customer_id))
           .cte("due_invoices"))
    by_currency = (select(due.c.currency, func.sum(due.c.transactions), func.sum(due.c.total))
                   .group_by(due.c.currency))
    # a customer with charges in two currencies is still one invoice
    invoices = select(null(), func.count(func.distinct(due.c.customer_id)), null())
    totals, count = [], 0
    for currency, transactions, total in db.session.execute(union_all(by_currency, invoices)):
        if currency is None:
            count = int(transactions or 0)
        else:
            totals.append((currency, int(transactions), int(total)))
    return PendingSummary(count, tuple(sorted(totals)))


@dataclass(frozen=True)
class MonthlyInvoicesReview:
    """The review of issuing a month's invoices: how many and their totals, and what each
    invoice will carry: every one, or only the first of a month with more than asked."""

    month: date
    summary: PendingSummary
    invoices: tuple[PendingInvoice, ...]
    #: whether ``invoices`` holds every invoice (else the first ``limit`` rows of them)
    whole: bool = True


def review_monthly_invoices(*, month: date, limit: int | None = None) -> MonthlyInvoicesReview:
    """What :func:`issue_monthly_invoices` would issue for ``month``; writes nothing.

    With ``limit``, a month of more rows than that keeps only the first ``limit`` (by
    customer id) beside the summary, so reviewing a hundred thousand invoices costs what
    the preview costs; such a review is not ``whole`` and cannot be checked row by row
    (the page hands that month to the job). Refuses a month that is not over, and a month
    with nothing left to invoice (issuing it again would issue nothing).
    """
    month = check_issuable(month)
    summary = pending_summary(month=month)
    if not summary.invoices:
        raise InvalidInput(
            f"There is nothing to invoice for {month:%B %Y}: every transaction made before "
            "it ended is on an invoice already.")
    pending = pending_monthly_invoices(month=month,
                                       limit=None if limit is None else limit + 1)
    whole = limit is None or len(pending) <= limit
    return MonthlyInvoicesReview(month=month, summary=summary,
                                 invoices=tuple(pending if whole else pending[:limit]),
                                 whole=whole)


def issue_monthly_invoices(*, month: date, actor=None,
                           reviewed: MonthlyInvoicesReview | None = None) -> list[Invoice]:
    """Issue ``month``'s invoice to every partner customer with something to invoice.

    Each invoice carries the customer's charges and refunds made before the month ended
    that no invoice carries yet, so a refund made after an invoice was issued goes on the
    next one. Running it again for the same month issues nothing new. With ``reviewed``
    (from :func:`review_monthly_invoices`), what is issued, read under the row locks, must
    be exactly what was reviewed, or nothing is issued. Everything is in the caller's one
    transaction; the job uses :func:`issue_in_chunks` instead.
    """
    month = check_issuable(month)
    if reviewed is not None and not reviewed.whole:
        raise ValueError("a review of only the first invoices cannot be checked when issuing")
    issued: list[Invoice] = []
    carried: list[PendingInvoice] = []
    after = 0
    while (chunk := _issue_chunk(month, after, CHUNK_SIZE, actor)) is not None:
        carried.extend(chunk.carried)
        ids = set(chunk.invoice_ids)
        issued.extend(invoice for invoice in db.session.scalars(
            select(Invoice).where(Invoice.period_start == month,
                                  Invoice.customer_id > after,
                                  Invoice.customer_id <= chunk.last_customer_id)
            .order_by(Invoice.customer_id)) if invoice.id in ids)
        after = chunk.last_customer_id
    if reviewed is not None and (reviewed.month != month
                                 or tuple(carried) != reviewed.invoices):
        raise Conflict(f"The invoices for {month:%B %Y} changed while they were being issued; "
                       "nothing was issued. Review them again.")
    return issued


def issue_in_chunks(*, month: date, chunk_size: int = CHUNK_SIZE) -> Iterator[int]:
    """Issue ``month``'s invoices chunk by chunk; yields how many each chunk issued.

    The caller commits after each chunk (the job does), so a crash loses at most the
    chunk it was in, and the next run carries on with the customers still due: each
    customer is invoiced once a month whatever happens (UNIQUE customer and month).
    """
    month = check_issuable(month)
    after = 0
    while (chunk := _issue_chunk(month, after, chunk_size, None)) is not None:
        after = chunk.last_customer_id
        yield len(chunk.invoice_ids)


@dataclass(frozen=True)
class _Chunk:
    """What one chunk issued: its last customer id, its invoices, what they carry."""

    last_customer_id: int
    invoice_ids: list[int]
    carried: list[PendingInvoice]


@dataclass(frozen=True)
class DraftLine:
    """One line of an invoice as issuing writes it (the columns of ``InvoiceLine``)."""

    position: int
    description: str
    quantity: int
    #: minor units of the invoice's currency; negative for a refund
    amount: int
    transaction_id: int


@dataclass(frozen=True)
class InvoiceDraft:
    """One customer's invoice for a month as issuing builds it, before it has a number."""

    customer_id: int
    customer_name: str
    billing: dict
    currency: str
    #: minor units: the sum of the transactions' amounts
    total: int
    transaction_ids: tuple[int, ...]
    lines: tuple[DraftLine, ...]

    def pending(self) -> PendingInvoice:
        """What the review of the month says of this invoice."""
        return PendingInvoice(self.customer_id, self.customer_name, self.currency,
                              len(self.transaction_ids), self.total)


def _drafts(month: date, after: int, last: int, *, lock: bool) -> list[InvoiceDraft]:
    """The invoices ``month`` gives the due customers with ids in (after, last], built
    from their uninvoiced transactions in three queries; writes nothing.

    Issuing locks the transactions (``lock``) and writes exactly these drafts; the
    preview of one customer's invoice is the range (id - 1, id], unlocked.
    """
    _start, end = month_bounds(month)
    # Customers of the range invoiced for this month already (a transaction backdated
    # into the month after its invoice waits for the next month's). Asked once for the
    # range, by the (customer, month) index, rather than as a NOT EXISTS in every query.
    already = set(db.session.scalars(
        select(Invoice.customer_id).where(Invoice.customer_id > after,
                                          Invoice.customer_id <= last,
                                          Invoice.period_start == month)))
    in_range = (Transaction.customer_id > after, Transaction.customer_id <= last,
                *_uninvoiced(end))
    query = (
        select(Transaction.id, Transaction.customer_id, Transaction.subscription_id,
               Transaction.kind, Transaction.reason, Transaction.refunded_transaction_id,
               Transaction.amount, Transaction.currency, Customer.company_name,
               *(getattr(Customer, name) for name in _ADDRESS_FIELDS),
               Reseller.company_name.label("reseller_name"))
        .join(Customer, Customer.id == Transaction.customer_id)
        .outerjoin(Reseller, Reseller.id == Customer.reseller_id)
        .where(*in_range)
        .order_by(Transaction.customer_id, Transaction.created_at, Transaction.id)
    )
    transactions = db.session.execute(
        query.with_for_update(of=Transaction) if lock else query).all()
    lines: dict[int, list] = {}
    for line in db.session.execute(
        select(TransactionLine.transaction_id, TransactionLine.quantity,
               TransactionLine.amount, TransactionLine.days_charged,
               TransactionLine.days_in_term, CertificateType.code, CertificateType.name)
        .join(Transaction, Transaction.id == TransactionLine.transaction_id)
        .join(CertificateType, CertificateType.id == TransactionLine.certificate_type_id)
        .where(*in_range)
        .order_by(TransactionLine.transaction_id, TransactionLine.id)
    ):
        lines.setdefault(line.transaction_id, []).append(line)
    by_customer: dict[int, list] = {}
    for row in transactions:  # when issuing, locked: another run may have taken some
        if row.customer_id not in already:
            by_customer.setdefault(row.customer_id, []).append(row)
    return [_draft(rows, lines) for rows in by_customer.values()]


def _draft(rows: list, lines: dict[int, list]) -> InvoiceDraft:
    """One customer's invoice from its transactions (in order) and their lines."""
    head = rows[0]
    drafted: list[DraftLine] = []
    for row in rows:
        for line in lines.get(row.id, []):
            drafted.append(DraftLine(
                position=len(drafted) + 1, quantity=line.quantity, amount=line.amount,
                transaction_id=row.id,
                description=_describe(row.id, row.kind, row.reason, row.subscription_id,
                                      row.refunded_transaction_id, line.code, line.name,
                                      line.days_charged, line.days_in_term)))
    return InvoiceDraft(
        customer_id=head.customer_id, customer_name=head.company_name,
        billing=_billing(head.company_name, *(getattr(head, name) for name in _ADDRESS_FIELDS),
                         head.reseller_name or ""),
        currency=head.currency, total=sum(row.amount for row in rows),
        transaction_ids=tuple(row.id for row in rows), lines=tuple(drafted))


@dataclass(frozen=True)
class InvoicePreview:
    """A customer's invoice for a month: the one issued, or what issuing would write."""

    customer_id: int
    month: date
    #: the month has ended: issuing it writes ``draft`` as it is
    over: bool
    #: the month's invoice when it has been issued (``draft`` is then None)
    issued: Invoice | None
    #: what is not invoiced yet (for a month not over, so far), or None if nothing is
    draft: InvoiceDraft | None


def next_invoice_month(customer_id: int) -> date:
    """The month whose invoice the customer gets next: the month before this one while
    its invoice is still to issue, otherwise this month."""
    current = today().replace(day=1)
    previous = current - relativedelta(months=1)
    start, _end = month_bounds(current)
    due_before = db.session.scalar(select(exists().where(
        Transaction.customer_id == customer_id, *_uninvoiced(start),
        ~exists().where(Invoice.customer_id == customer_id,
                        Invoice.period_start == previous))))
    return previous if due_before else current


def preview_invoice(customer_id: int, *, month: date | None = None) -> InvoicePreview:
    """The customer's invoice for ``month`` (by default :func:`next_invoice_month`): the
    one issued, or the draft :func:`issue_monthly_invoices` would write now, line for line
    (the same code builds both); writes nothing.

    It reads one customer's uninvoiced transactions, in a constant number of queries.
    """
    month = _check_started(month) if month is not None else next_invoice_month(customer_id)
    issued = db.session.scalar(select(Invoice).where(
        Invoice.customer_id == customer_id, Invoice.kind == InvoiceKind.MONTHLY,
        Invoice.period_start == month))
    drafts = [] if issued is not None else _drafts(month, customer_id - 1, customer_id,
                                                   lock=False)
    return InvoicePreview(customer_id=customer_id, month=month, over=is_over(month),
                          issued=issued, draft=drafts[0] if drafts else None)


def _issue_chunk(month: date, after: int, limit: int, actor) -> _Chunk | None:
    """Issue the invoices of the next ``limit`` due customers with ids above ``after``.

    The customers are a range of ids, (after, last], so every query of the chunk selects
    by that range and the uninvoiced condition, never by a list of ids.
    """
    _start, end = month_bounds(month)
    customer_ids = db.session.scalars(
        select(Transaction.customer_id)
        .where(*_uninvoiced(end), Transaction.customer_id > after)
        .group_by(Transaction.customer_id).order_by(Transaction.customer_id).limit(limit)
    ).all()
    if not customer_ids:
        return None
    last = customer_ids[-1]
    drafts = _drafts(month, after, last, lock=True)
    if not drafts:
        return _Chunk(last, [], [])
    first_number = reserve_block("invoice", len(drafts))
    issued_at = utcnow()
    invoices = [{
        "number": format_number("INV", number), "kind": InvoiceKind.MONTHLY,
        "customer_id": draft.customer_id, "period_start": month, "billing": draft.billing,
        "currency": draft.currency, "total": draft.total, "issued_at": issued_at}
        for number, draft in enumerate(drafts, start=first_number)]
    invoice_ids = insert_rows(Invoice, invoices, key=("customer_id",))
    pairs = list(zip(invoice_ids, drafts, strict=True))
    insert_rows(InvoiceLine, [{"invoice_id": invoice_id, **asdict(line)}
                              for invoice_id, draft in pairs for line in draft.lines])
    _mark_invoiced([{"id": transaction_id, "invoice_id": invoice_id}
                    for invoice_id, draft in pairs for transaction_id in draft.transaction_ids])
    summaries.mark_invoiced(month, [(draft.customer_id, invoice_id)
                                    for invoice_id, draft in pairs])
    audit.record_many(actor, [
        audit.Entry("invoice.issue_monthly", "Invoice", str(invoice_id), {
            "number": invoice["number"], "customer_id": draft.customer_id,
            "period_start": month, "total": draft.total, "currency": draft.currency,
            "transactions": list(draft.transaction_ids)})
        for invoice, (invoice_id, draft) in zip(invoices, pairs, strict=True)
    ], actor_label=None if actor is not None else ACTOR_LABEL)
    return _Chunk(last, invoice_ids, [draft.pending() for draft in drafts])


def _mark_invoiced(marks: list[dict]) -> None:
    """Set ``invoice_id`` on exactly the transactions read under lock (ids and invoices).

    By id, not by the chunk's range: a transaction committed since the chunk read its
    rows is not on any of its invoices. On PostgreSQL one UPDATE joins the pairs passed
    as two arrays; SQLite runs an executemany in process.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(update(Transaction), marks)
        return
    pairs = func.unnest(
        bindparam("ids", [mark["id"] for mark in marks], type_=ARRAY(BigInteger)),
        bindparam("invoice_ids", [mark["invoice_id"] for mark in marks],
                  type_=ARRAY(BigInteger)),
    ).table_valued("id", "invoice_id").render_derived(name="marks")
    db.session.execute(
        update(Transaction).where(Transaction.id == pairs.c.id)
        .values(invoice_id=pairs.c.invoice_id)
        .execution_options(synchronize_session=False))


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
