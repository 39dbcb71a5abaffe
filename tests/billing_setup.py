"""Shared set-up for the refund, invoice and report tests: a catalog, customers, charges."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from backoffice import partners, subscriptions
from backoffice.extensions import db
from backoffice.models import Subscription, SubscriptionProduct, Transaction

#: yearly prices, minor units
DV_PRICE = 10_000
OV_PRICE = 12_000


def make_product(terms=(1, 12)) -> SubscriptionProduct:
    """DV at 100.00 a year and OV at 120.00 a year, bundled for the given terms."""
    subscriptions.create_certificate_type(code="DV", name="Domain validated",
                                          yearly_price=DV_PRICE)
    subscriptions.create_certificate_type(code="OV", name="Organization validated",
                                          yearly_price=OV_PRICE)
    return subscriptions.create_product(name="SSL bundle", certificate_types=["DV", "OV"],
                                        terms_months=terms)


def make_customer(name: str = "Acme Ltd", *, reseller=None, currency: str = "USD"):
    return partners.create_customer(
        company_name=name, address1="1 Main Street", city="Springfield", postal_code="12345",
        country="US", administrative_responsibility="partner", reseller=reseller,
        currency=currency, actor=None)


def subscribe(customer, product, inventory: dict[str, int], *, term_months: int = 12,
              start_date: date | None = None, auto_renew: bool = False) -> Subscription:
    return subscriptions.add_subscription(customer, product, term_months=term_months,
                                          inventory=inventory, start_date=start_date,
                                          auto_renew=auto_renew, actor=None)


def charge_of(subscription: Subscription) -> Transaction:
    """The subscription's first charge."""
    return db.session.scalars(
        select(Transaction).where(Transaction.subscription_id == subscription.id)
        .order_by(Transaction.id)
    ).first()


def line_of(transaction: Transaction, code: str):
    return next(line for line in transaction.lines if line.certificate_type.code == code)


def inventory_of(subscription: Subscription, code: str) -> int:
    db.session.refresh(subscription)
    return next(row.quantity for row in subscription.inventory
                if row.certificate_type.code == code)
