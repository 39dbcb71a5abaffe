"""Refunds of partner charges inside the 30-day window (DESIGN.md, "Refunds").

A refund names, per certificate type, how many certificates of a charge to give back.
It is its own ``refund`` transaction pointing at the charge, with one negative line per
refunded charge line; it reduces the subscription's current inventory and shows on the
customer's next monthly invoice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from . import audit
from .clock import utcnow
from .errors import Conflict, InvalidInput, NotFound
from .extensions import db
from .formats import format_moment
from .models import Inventory, Transaction, TransactionKind, TransactionLine, TransactionReason
from .money import prorate
from .validation import positive_counts

#: how long after a charge it can still be refunded (inclusive, to the second)
REFUND_WINDOW = timedelta(days=30)

#: what staff can do once the window has closed: the rule holds for every role, and partner
#: customers have no credit balance, so the remedy is fewer certificates from the next term
WINDOW_HELP = ("no role can refund it; to stop paying for unused certificates, lower the "
               "quantities at the subscription's next renewal")


@dataclass(frozen=True)
class RefundQuoteLine:
    """What refunding ``count`` certificates of one charge line gives back, and why."""

    line_id: int
    code: str
    name: str
    count: int  # certificates refunded now
    quantity: int  # certificates the charge line bought
    already_refunded: int  # certificates refunded before this refund
    line_amount: int  # what the charge line charged, minor units
    refunded_before: int  # minor units refunded before this refund
    amount: int  # what this refund gives back for the line, minor units, positive
    takes_last: bool  # this refund takes the line's last certificate


@dataclass(frozen=True)
class RefundQuote:
    """The review of a refund: its lines and total. Nothing is written by quoting."""

    transaction_id: int
    currency: str
    refundable_until: datetime
    lines: tuple[RefundQuoteLine, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        """What the refund gives back, positive minor units (the transaction is negative)."""
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class RefundsReview:
    """The review of refunding one or more charges of a customer in one go.

    One quote per charge with something to refund. Each line carries what was refunded
    before it, so a refund made by someone else after the review changes the review.
    """

    customer_id: int
    currency: str
    quotes: tuple[RefundQuote, ...]

    @property
    def total(self) -> int:
        """What the refunds give back together, positive minor units."""
        return sum(quote.total for quote in self.quotes)


@dataclass(frozen=True)
class RefundState:
    """Whether a transaction can be refunded now, as staff read it on its row."""

    refundable: bool
    code: str  # "refundable" | "window_closed" | "fully_refunded" | "refund"
    label: str

    @property
    def short_label(self) -> str:
        """The state in a few words, for a table cell beside other columns."""
        return "refundable" if self.refundable else self.code.replace("_", " ")


def refundable_until(transaction: Transaction) -> datetime:
    """The last moment a charge can be refunded: 30 days after it was made."""
    return transaction.created_at + REFUND_WINDOW


def refund_state(transaction: Transaction, now: datetime | None = None) -> RefundState:
    """A charge's refundable state: open until a date, window closed, or fully refunded."""
    if transaction.kind != TransactionKind.CHARGE:
        return RefundState(False, "refund", "refund")
    now = now or utcnow()
    if all(line.refunded_quantity >= line.quantity for line in transaction.lines):
        return RefundState(False, "fully_refunded", "fully refunded")
    deadline = refundable_until(transaction)
    if now - transaction.created_at > REFUND_WINDOW:
        return RefundState(False, "window_closed",
                           f"window closed — older than 30 days; {WINDOW_HELP}")
    return RefundState(True, "refundable", f"refundable until {format_moment(deadline)}")


def refund_limits(charges: list[Transaction]) -> dict[int, dict[str, int]]:
    """How many certificates of each line of these charges can be refunded now, by charge
    and certificate code: what the line has not refunded yet, and at most what the
    subscription still holds. One query for the inventory of all their subscriptions."""
    subscription_ids = {charge.subscription_id for charge in charges}
    held: dict[tuple[int, int], int] = {}
    if subscription_ids:
        held = {(row.subscription_id, row.certificate_type_id): row.quantity
                for row in db.session.scalars(
                    select(Inventory).where(Inventory.subscription_id.in_(subscription_ids)))}
    return {charge.id: {line.certificate_type.code: max(0, min(
        line.quantity - line.refunded_quantity,
        held.get((charge.subscription_id, line.certificate_type_id), 0)))
        for line in charge.lines} for charge in charges}


def _check_refundable(transaction: Transaction, now: datetime) -> None:
    if transaction.kind != TransactionKind.CHARGE:
        raise InvalidInput(f"{transaction} is a refund; only charges can be refunded.")
    if now - transaction.created_at > REFUND_WINDOW:
        raise Conflict(
            f"{transaction} was charged on {format_moment(transaction.created_at)}, more than "
            f"30 days ago: refunds are only possible within 30 days of a charge (until "
            f"{format_moment(refundable_until(transaction))}). After that {WINDOW_HELP}.")


def _line_amount(line: TransactionLine, count: int) -> tuple[int, bool]:
    """The refund for ``count`` certificates of a charge line, and whether it takes the last.

    ``round(line amount x count / line quantity)`` half-up, except that the refund taking the
    line's last certificate takes exactly what is left, so the parts sum to the line amount.
    Rounding several partial refunds up could overtake the amount, so a part never takes
    more than is left.
    """
    left_amount = line.amount - line.refunded_amount
    takes_last = line.refunded_quantity + count == line.quantity
    if takes_last:
        return left_amount, True
    return min(prorate(line.amount, count, line.quantity), left_amount), False


def _build_quote(transaction: Transaction, lines: list[TransactionLine],
                 inventory: dict[int, Inventory], counts: dict[str, int],
                 now: datetime) -> RefundQuote:
    """Check a refund against the given (locked or current) rows and price it."""
    _check_refundable(transaction, now)
    wanted = {code: count for code, count in positive_counts(
        counts, "number of certificates to refund").items() if count > 0}
    by_code = {line.certificate_type.code: line for line in lines}
    foreign = sorted(set(wanted) - set(by_code))
    if foreign:
        raise InvalidInput(f"{transaction} has no {', '.join(foreign)} certificates to refund.")
    if not wanted:
        raise InvalidInput("Enter how many certificates to refund for at least one line.")
    quote_lines = []
    for line in lines:
        code = line.certificate_type.code
        count = wanted.get(code, 0)
        if count == 0:
            continue
        left = line.quantity - line.refunded_quantity
        if left == 0:
            raise Conflict(f"All {line.quantity} {code} certificates of {transaction} have "
                           "already been refunded; nothing is left to refund.")
        if count > left:
            raise Conflict(f"Only {left} of the {line.quantity} {code} certificates of "
                           f"{transaction} are left to refund; you asked for {count}.")
        row = inventory.get(line.certificate_type_id)
        held = row.quantity if row is not None else 0
        if count > held:
            raise Conflict(
                f"Subscription #{transaction.subscription_id} holds {held} {code} "
                f"certificate{'s' if held != 1 else ''} now, so at most {held} can be "
                f"refunded, not {count}: its inventory was reduced after this charge.")
        amount, takes_last = _line_amount(line, count)
        quote_lines.append(RefundQuoteLine(
            line_id=line.id, code=code, name=line.certificate_type.name, count=count,
            quantity=line.quantity, already_refunded=line.refunded_quantity,
            line_amount=line.amount, refunded_before=line.refunded_amount, amount=amount,
            takes_last=takes_last,
        ))
    return RefundQuote(transaction_id=transaction.id, currency=transaction.currency,
                       refundable_until=refundable_until(transaction), lines=tuple(quote_lines))


def _inventory(transaction: Transaction, *, for_update: bool) -> dict[int, Inventory]:
    query = (select(Inventory).where(Inventory.subscription_id == transaction.subscription_id)
             .order_by(Inventory.id))
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return {row.certificate_type_id: row for row in db.session.scalars(query).all()}


def quote_refund(transaction: Transaction, counts: dict[str, int]) -> RefundQuote:
    """What refunding ``counts`` (certificate type code -> certificates) would give back."""
    return _build_quote(transaction, list(transaction.lines),
                        _inventory(transaction, for_update=False), counts, utcnow())


def _requested(requests: list[tuple[Transaction, dict[str, int]]]
               ) -> list[tuple[Transaction, dict[str, int]]]:
    """The requests that refund something; refuses when none does."""
    requests = [(t, counts) for t, counts in requests if any(v != 0 for v in counts.values())]
    if not requests:
        raise InvalidInput("Enter how many certificates to refund for at least one line.")
    return requests


def quote_refunds(requests: list[tuple[Transaction, dict[str, int]]]) -> RefundsReview:
    """The review of :func:`refund_transactions`: a quote per charge; writes nothing.

    Refuses what the refunds would refuse (window closed, too many, nothing to refund).
    """
    requests = _requested(requests)
    customers = {transaction.customer_id for transaction, _ in requests}
    if len(customers) != 1:
        raise InvalidInput("Refund the charges of one customer at a time.")
    quotes = tuple(quote_refund(transaction, counts) for transaction, counts in requests)
    return RefundsReview(customer_id=customers.pop(), currency=quotes[0].currency,
                         quotes=quotes)


def refund(transaction: Transaction, counts: dict[str, int], *, actor,
           expected: RefundQuote | None = None) -> Transaction:
    """Refund certificates of a recent charge: a negative ``refund`` transaction.

    The charge lines and the subscription's inventory rows are locked before they are read,
    so concurrent refunds of the same charge see each other's running totals; the CHECK
    constraints on refunded quantity and amount catch anything else. With ``expected``
    (the reviewed quote), a refund whose amounts differ from it once locked is refused.
    """
    now = utcnow()
    lines = db.session.scalars(
        select(TransactionLine).where(TransactionLine.transaction_id == transaction.id)
        .order_by(TransactionLine.id).with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    if not lines:
        raise NotFound(f"{transaction} no longer exists or has no lines.")
    inventory = _inventory(transaction, for_update=True)
    quote = _build_quote(transaction, list(lines), inventory, counts, now)
    if expected is not None and quote != expected:
        raise Conflict(f"{transaction} changed since the refund was reviewed (another refund "
                       "was made meanwhile); nothing was refunded. Review the refund again.")

    refund_txn = Transaction(
        customer_id=transaction.customer_id, subscription_id=transaction.subscription_id,
        kind=TransactionKind.REFUND, reason=TransactionReason.REFUND,
        refunded_transaction_id=transaction.id, amount=-quote.total,
        currency=transaction.currency, created_at=now,
        actor_id=actor.id if actor is not None else None,
    )
    db.session.add(refund_txn)
    by_id = {line.id: line for line in lines}
    for part in quote.lines:
        line = by_id[part.line_id]
        db.session.add(TransactionLine(
            transaction=refund_txn, certificate_type_id=line.certificate_type_id,
            quantity=part.count, amount=-part.amount,
            full_amount=-prorate(line.full_amount, part.count, line.quantity),
            days_charged=line.days_charged, days_in_term=line.days_in_term,
            refunded_quantity=0, refunded_amount=0, refunded_line_id=line.id,
        ))
        line.refunded_quantity += part.count
        line.refunded_amount += part.amount
        inventory[line.certificate_type_id].quantity -= part.count
    db.session.flush()
    audit.record(actor, "transaction.refund", refund_txn, {
        "refunded_transaction_id": transaction.id,
        "customer_id": transaction.customer_id,
        "subscription_id": transaction.subscription_id,
        "total": -quote.total, "currency": quote.currency,
        "lines": {p.code: {"count": p.count, "amount": -p.amount,
                           "refunded_quantity": p.already_refunded + p.count,
                           "quantity": p.quantity} for p in quote.lines},
    })
    return refund_txn


def refund_transactions(requests: list[tuple[Transaction, dict[str, int]]], *, actor,
                        reviewed: RefundsReview | None = None) -> list[Transaction]:
    """Refund several charges in one unit of work: all of them, or none if one is refused.

    With ``reviewed`` (from :func:`quote_refunds`), each refund must give back exactly what
    was reviewed, checked under the row locks.
    """
    requests = _requested(requests)
    expected: dict[int, RefundQuote | None] = {t.id: None for t, _ in requests}
    if reviewed is not None:
        expected = {quote.transaction_id: quote for quote in reviewed.quotes}
        if set(expected) != {t.id for t, _ in requests}:
            raise Conflict("The charges to refund are not the ones reviewed; nothing was "
                           "refunded. Review the refund again.")
    return [refund(transaction, counts, actor=actor, expected=expected[transaction.id])
            for transaction, counts in requests]
