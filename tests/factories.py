"""The one place tests build partner-platform data, always through the domain verbs.

Call these inside an app context. Prices are yearly, in minor units. Three price lists
exist because the tests' worked examples need their own round or odd figures:

- ``"business"``: DV 50.00, OV 120.00, EV 249.00 for 12, 24 or 36 months (the partner
  pages and the design's proration examples: 261.64 and 135.12);
- ``"billing"``: DV 100.00, OV 120.00 for 1 or 12 months (refunds, invoices, reports);
- ``"renewal"``: DV 50.00, OV 49.99 (an odd price, to see rounding) for 1, 12 or 24 months.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import time_machine
from sqlalchemy import select

from backoffice import partners, subscriptions
from backoffice.extensions import db
from backoffice.models import Subscription, SubscriptionProduct, Transaction

CERTIFICATE_NAMES = {"DV": "Domain Validated", "OV": "Organization Validated",
                     "EV": "Extended Validation"}

#: name -> (product name, yearly prices by certificate code, term lengths in months)
CATALOGS: dict[str, tuple[str, dict[str, int], tuple[int, ...]]] = {
    "business": ("Business SSL", {"DV": 5_000, "OV": 12_000, "EV": 24_900}, (12, 24, 36)),
    "billing": ("SSL bundle", {"DV": 10_000, "OV": 12_000}, (1, 12)),
    "renewal": ("SSL bundle", {"DV": 5_000, "OV": 4_999}, (1, 12, 24)),
}

#: the address every built customer and reseller has unless a test says otherwise
ADDRESS = {"address1": "1 Main Street", "city": "Springfield", "postal_code": "12345",
           "country": "US"}


def catalog(name: str = "business") -> SubscriptionProduct:
    """The certificate types of one price list (see the module) and a product of them all."""
    product_name, prices, terms = CATALOGS[name]
    for code, price in prices.items():
        subscriptions.create_certificate_type(code=code, name=CERTIFICATE_NAMES[code],
                                              yearly_price=price)
    return subscriptions.create_product(name=product_name, certificate_types=list(prices),
                                        terms_months=terms)


def reseller(name: str = "CertHub Partners", *, actor=None, **address):
    return partners.create_reseller(company_name=name, actor=actor,
                                    **{**ADDRESS, "state": "TX", **address})


def customer(name: str = "Acme Ltd", *, reseller=None, admin_email: str | None = None,
             currency: str = "USD", actor=None, **address):
    """A partner-administered customer, or a customer-administered one with ``admin_email``."""
    return partners.create_customer(
        company_name=name, reseller=reseller, currency=currency, actor=actor,
        administrative_responsibility="customer" if admin_email else "partner",
        customer_admin_email=admin_email, **{**ADDRESS, **address})


def subscribe(customer, product, inventory: dict[str, int], *, term_months: int = 12,
              start_date: date | None = None, auto_renew: bool = False) -> Subscription:
    return subscriptions.add_subscription(customer, product, term_months=term_months,
                                          inventory=inventory, start_date=start_date,
                                          auto_renew=auto_renew, actor=None)


def subscribed_on(customer, start: date, *, term_months: int = 12,
                  inventory: dict[str, int] | None = None,
                  auto_renew: bool = True) -> Subscription:
    """A subscription to the only product, added on its start date (so not prorated), and
    committed."""
    product = db.session.scalars(select(SubscriptionProduct)).one()
    with time_machine.travel(datetime(start.year, start.month, start.day, 9, tzinfo=UTC),
                             tick=False):
        subscription = subscribe(customer, product, inventory or {"DV": 10},
                                 term_months=term_months, auto_renew=auto_renew)
    db.session.commit()
    return subscription


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
