"""Small builders for test data, made through the domain verbs (call inside an app context)."""

from __future__ import annotations

from backoffice import partners, subscriptions
from backoffice.models import SubscriptionProduct


def catalog() -> SubscriptionProduct:
    """DV at 50.00, OV at 120.00 and EV at 249.00 a year, bundled for 12, 24 or 36 months."""
    for code, name, price in (("DV", "Domain Validated", 5000),
                              ("OV", "Organization Validated", 12000),
                              ("EV", "Extended Validation", 24900)):
        subscriptions.create_certificate_type(code=code, name=name, yearly_price=price)
    return subscriptions.create_product(name="Business SSL", certificate_types=["DV", "OV", "EV"],
                                        terms_months=[12, 24, 36])


def reseller(name: str = "CertHub Partners", actor=None):
    return partners.create_reseller(company_name=name, address1="1 Commerce Way",
                                    city="Austin", postal_code="73301", state="TX",
                                    country="US", actor=actor)


def customer(name: str = "Northwind Systems", *, reseller=None, responsibility="partner",
             admin_email=None, currency="USD", actor=None):
    return partners.create_customer(
        company_name=name, address1="5 Market Street", city="Berlin", postal_code="10115",
        country="DE", administrative_responsibility=responsibility,
        customer_admin_email=admin_email, reseller=reseller, currency=currency, actor=actor)
