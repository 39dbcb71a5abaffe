"""Term dates and prices: what a number of certificates costs for the days left of a term.

Shared by the quotes of ``subscriptions`` and by ``renewals``; nothing here reads or
writes the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol

from dateutil.relativedelta import relativedelta

from .clock import today
from .models import CertificateType
from .money import prorate


@dataclass(frozen=True)
class QuoteLine:
    """What one certificate type costs in an operation, and why."""

    code: str
    name: str
    quantity: int
    yearly_price: int  # minor units, one certificate, twelve months
    full_amount: int  # the whole term's price for these certificates
    days_charged: int  # days left in the term
    days_in_term: int
    amount: int  # what is charged: full_amount prorated by days

    @property
    def prorated(self) -> bool:
        return self.days_charged != self.days_in_term


@dataclass(frozen=True)
class Quote:
    """The review of an operation: its lines and total. Nothing is written by quoting."""

    currency: str
    start_date: date
    end_date: date
    term_months: int
    as_of: date
    lines: tuple[QuoteLine, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def term_end(start_date: date, term_months: int) -> date:
    """The exclusive end of a term: start plus whole calendar months (python-dateutil)."""
    return start_date + relativedelta(months=term_months)


def earliest_start(term_months: int, as_of: date | None = None) -> date:
    """The earliest backdated start that still leaves at least one day of term."""
    as_of = as_of or today()
    start = as_of - relativedelta(months=term_months)
    # Month arithmetic clamps to month ends, so step forward until the rule holds.
    while term_end(start, term_months) <= as_of:
        start += timedelta(days=1)
    while term_end(start - timedelta(days=1), term_months) > as_of:
        start -= timedelta(days=1)
    return start


class Priced(Protocol):
    """What pricing reads of a certificate type (a ``CertificateType`` is one)."""

    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def yearly_price(self) -> int: ...


def price_line(cert_type: Priced | CertificateType, quantity: int, *, term_months: int,
               start_date: date, end_date: date, as_of: date) -> QuoteLine:
    """Price ``quantity`` certificates for the days left of a term.

    full = yearly price x quantity x term_months / 12, rounded half-up to the minor unit;
    charge = full x (end - as_of).days / (end - start).days, rounded half-up.
    """
    full = prorate(cert_type.yearly_price * quantity, term_months, 12)
    days_in_term = (end_date - start_date).days
    days_left = (end_date - max(as_of, start_date)).days
    return QuoteLine(
        code=cert_type.code, name=cert_type.name, quantity=quantity,
        yearly_price=cert_type.yearly_price, full_amount=full, days_charged=days_left,
        days_in_term=days_in_term, amount=prorate(full, days_left, days_in_term),
    )
