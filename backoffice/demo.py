"""Believable demo data, made through the domain verbs so it obeys every rule.

History is replayed with :func:`backoffice.clock.clock_at`: orders, subscriptions and
charges happen on days over the last months, so the console shows refundable and
no-longer-refundable transactions, backdated terms and paid and unpaid orders.
Seeding is deterministic (a fixed random seed) and runs once: a second run adds nothing.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select

from . import accounts, invoicing, partners, refunds, subscriptions, summaries
from .clock import clock_at, today, utcnow
from .extensions import db
from .models import (
    CertificateType,
    LegacyAccount,
    Profile,
    SubscriptionProduct,
    Transaction,
    TransactionKind,
)

DEMO_DOMAIN = "demo.example"

CATALOG = [
    # code, name, kind, yearly price in minor units
    ("DV", "Domain Validated SSL", "traditional", 5000),
    ("OV", "Organization Validated SSL", "traditional", 12000),
    ("EV", "Extended Validation SSL", "traditional", 24900),
    ("WC-DV", "Wildcard DV SSL", "traditional", 18900),
    ("MD-OV", "Multi-Domain OV SSL", "traditional", 29900),
    ("DV-CAAS", "DV Certificates as a Service", "caas", 4500),
    ("OV-CAAS", "OV Certificates as a Service", "caas", 11000),
]

PRODUCTS = [
    ("Essential SSL Bundle", ["DV", "WC-DV"], [12, 24, 36]),
    ("Business SSL Bundle", ["DV", "OV", "EV"], [12, 24, 36]),
    ("Enterprise Multi-Domain", ["OV", "EV", "MD-OV"], [12, 24, 36]),
    ("ACME Automation", ["DV-CAAS", "OV-CAAS"], [12, 24]),
]

FIRST = ["Ada", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
         "Kemi", "Liam", "Maya", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara",
         "Umar", "Vera", "Wen", "Ximena", "Yusuf", "Zoe"]
LAST = ["Andersen", "Baptiste", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
        "Ivanova", "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor",
        "Petrov", "Rossi", "Schmidt", "Tanaka", "Urban", "Visser", "Weber", "Yilmaz"]
COMPANIES = ["Northwind", "Bluefin", "Copperleaf", "Driftwood", "Evergreen", "Foxglove",
             "Granite", "Harbor", "Ironbark", "Juniper", "Keystone", "Lighthouse", "Meridian",
             "Nimbus", "Oakridge", "Pinecrest", "Quarry", "Riverbend", "Summit", "Tidewater"]
SUFFIXES = ["Systems", "Logistics", "Health", "Analytics", "Hosting", "Retail", "Labs",
            "Media", "Finance", "Energy"]
PLACES = [  # city, postal code, state, country, currency
    ("Austin", "73301", "TX", "US", "USD"), ("Denver", "80202", "CO", "US", "USD"),
    ("Toronto", "M5H 2N2", "ON", "CA", "USD"), ("London", "EC1A 1BB", "", "GB", "GBP"),
    ("Berlin", "10115", "", "DE", "EUR"), ("Amsterdam", "1012 JS", "", "NL", "EUR"),
    ("Lyon", "69001", "", "FR", "EUR"), ("Dublin", "D02 X285", "", "IE", "EUR"),
]
RESELLERS = ["CertHub Partners", "SecureStack Reseller", "TrustLayer Solutions",
             "Webshield Distribution"]


def seed(*, profiles: int = 300, rng_seed: int = 20261122) -> dict[str, int]:
    """Create the demo data set unless it is already there; returns what was added."""
    if db.session.scalar(
        select(func.count(Profile.id)).where(Profile.email.like(f"%@{DEMO_DOMAIN}"))
    ):
        return {}
    rng = random.Random(rng_seed)
    now = utcnow()
    counts: dict[str, int] = {}

    def at(days_ago: int, hours_earlier: int | None = None) -> datetime:
        """A moment ``days_ago`` days back, a few hours earlier still: never in the future."""
        hours = hours_earlier if hours_earlier is not None else rng.randint(0, 8)
        return now - timedelta(days=days_ago, hours=hours)

    with clock_at(at(200, 0)):
        _catalog(counts)
        products = _products(counts)

    counts["profiles"] = 0
    people: list[Profile] = []
    age: dict[int, int] = {}  # profile id -> days since sign-up
    for i in range(profiles):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        place = rng.choice(PLACES)
        days = rng.randint(30, 400)
        with clock_at(at(days)):
            profile = accounts.create_profile(
                email=f"{first}.{last}.{i:03d}@{DEMO_DOMAIN}".lower(),
                name=f"{first} {last}", currency=place[4])
        people.append(profile)
        age[profile.id] = days
        counts["profiles"] += 1

    _retail_history(rng, at, people, age, counts)
    _organizations(rng, at, people, counts)
    _legacy_accounts(rng, people, counts)
    _partner_platform(rng, at, products, counts)
    _refunds(rng, counts)
    _monthly_invoices(counts)
    written = summaries.summarize_finished_days()
    counts["monthly totals"] = written.monthly_totals
    counts["customer month totals"] = written.customer_month_totals
    return counts


def _catalog(counts: dict[str, int]) -> dict[str, CertificateType]:
    existing = {t.code: t for t in db.session.scalars(select(CertificateType))}
    for code, name, kind, price in CATALOG:
        if code not in existing:
            existing[code] = subscriptions.create_certificate_type(
                code=code, name=name, kind=kind, yearly_price=price)
            counts["certificate types"] = counts.get("certificate types", 0) + 1
    return existing


def _products(counts: dict[str, int]) -> list[SubscriptionProduct]:
    existing = {p.name: p for p in db.session.scalars(select(SubscriptionProduct))}
    for name, codes, terms in PRODUCTS:
        if name not in existing:
            existing[name] = subscriptions.create_product(
                name=name, certificate_types=codes, terms_months=terms)
            counts["subscription products"] = counts.get("subscription products", 0) + 1
    return [existing[name] for name, _codes, _terms in PRODUCTS]


def _billing(rng: random.Random, profile: Profile, company: str | None = None) -> dict:
    city, postal, state, country, _currency = rng.choice(PLACES)
    return {"name": profile.name, "company": company or "", "email": profile.email,
            "address1": f"{rng.randint(1, 240)} {rng.choice(LAST)} Street", "city": city,
            "postal_code": postal, "state": state, "country": country}


def _retail_history(rng, at, people, age, counts) -> None:
    """Orders over the past months: most paid by card, some with top-ups and credit."""
    retail_codes = ["DV", "OV", "EV", "WC-DV", "MD-OV", "DV-CAAS"]
    counts["orders"] = 0
    for profile in people:
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            days_ago = rng.randint(1, min(180, age[profile.id] - 1))
            with clock_at(at(days_ago)):
                items = {code: rng.randint(1, 3) for code in rng.sample(retail_codes,
                                                                         rng.randint(1, 2))}
                order = accounts.place_order(profile, items=items,
                                             billing=_billing(rng, profile))
                counts["orders"] += 1
                roll = rng.random()
                if roll < 0.7:
                    accounts.pay_order(order, payer=profile, method="card")
                elif roll < 0.85:
                    accounts.add_credit(profile, order.total + rng.choice([0, 5000, 20000]),
                                        memo="Storefront top-up", actor=None)
                    accounts.pay_order(order, payer=profile, method="prepaid_credit")
                # else: still awaiting payment


def _organizations(rng, at, people, counts) -> None:
    """Some corporate accounts with secondary users, and a few open requests."""
    pool = list(people)
    rng.shuffle(pool)
    organizations, requests = min(12, len(pool) // 20), min(5, len(pool) // 40)
    counts["organizations"] = 0
    for index in range(organizations):
        main, *secondaries = pool[index * 4:index * 4 + rng.randint(2, 4)]
        name = f"{rng.choice(COMPANIES)} {rng.choice(SUFFIXES)}"
        with clock_at(at(rng.randint(20, 90))):
            organization = accounts.upgrade_to_corporate(main, organization_name=name,
                                                         actor=None)
            for profile in secondaries:
                accounts.link_profile(organization, profile, actor=None)
        counts["organizations"] += 1
    counts["corporate requests"] = 0
    for index in range(requests):
        start = organizations * 4 + index * 3
        main, *rest = pool[start:start + 3]
        with clock_at(at(rng.randint(0, 6))):
            accounts.submit_corporate_request(
                organization_name=f"{rng.choice(COMPANIES)} {rng.choice(SUFFIXES)}",
                main_contact_email=main.email,
                secondary_emails=[p.email for p in rest] + [f"new.hire{index}@{DEMO_DOMAIN}"])
        counts["corporate requests"] += 1


def _legacy_accounts(rng, people, counts) -> None:
    """Legacy-platform accounts with prepaid balances waiting to move."""
    counts["legacy accounts"] = 0
    for index, profile in enumerate(rng.sample(people, min(40, len(people) // 5))):
        db.session.add(LegacyAccount(
            legacy_number=f"L-{100000 + index}", email=profile.email, name=profile.name,
            currency=profile.currency, credit_balance=rng.choice([2500, 9900, 15000, 48000,
                                                                   120000])))
        counts["legacy accounts"] += 1
    db.session.flush()


def _partner_platform(rng, at, products, counts) -> None:
    """Resellers, customers of both kinds, subscriptions (some backdated), additions."""
    resellers = []
    for name in RESELLERS:
        city, postal, state, country, _ = rng.choice(PLACES)
        with clock_at(at(300)):
            resellers.append(partners.create_reseller(
                company_name=name, address1=f"{rng.randint(1, 99)} Commerce Way", city=city,
                postal_code=postal, state=state, country=country, actor=None))
    counts["resellers"] = len(resellers)
    counts["customers"] = counts["subscriptions"] = 0
    for index in range(40):
        city, postal, state, country, currency = rng.choice(PLACES)
        company = f"{COMPANIES[index % len(COMPANIES)]} {rng.choice(SUFFIXES)} {index + 1}"
        customer_admin = rng.random() < 0.5
        with clock_at(at(rng.randint(150, 250))):
            customer = partners.create_customer(
                company_name=company, address1=f"{rng.randint(1, 300)} Market Street",
                city=city, postal_code=postal, state=state, country=country,
                administrative_responsibility="customer" if customer_admin else "partner",
                customer_admin_email=(f"it-admin{index}@{DEMO_DOMAIN}" if customer_admin
                                      else None),
                reseller=rng.choice(resellers + [None]), currency=currency, actor=None)
        counts["customers"] += 1
        for _ in range(rng.choice([1, 1, 2])):
            product = rng.choice(products)
            term = rng.choice(product.terms_months)
            added_days_ago = rng.randint(0, 120)
            backdate = rng.choice([0, 0, 0, rng.randint(1, 60)])
            with clock_at(at(added_days_ago)):
                start = today() - timedelta(days=backdate)
                inventory = {t.code: rng.choice([0, 5, 10, 25])
                             for t in product.certificate_types}
                if not any(inventory.values()):
                    inventory[product.certificate_types[0].code] = 10
                subscription = subscriptions.add_subscription(
                    customer, product, term_months=term, inventory=inventory,
                    start_date=start, auto_renew=rng.random() < 0.7, actor=None)
            counts["subscriptions"] += 1
            if added_days_ago > 10 and rng.random() < 0.4:
                with clock_at(at(rng.randint(0, added_days_ago - 1))):
                    code = rng.choice(product.certificate_types).code
                    subscriptions.add_inventory(subscription, {code: rng.randint(1, 5)},
                                                actor=None)


def _refunds(rng, counts) -> None:
    """A few charges partly refunded a day or two after they were made."""
    old_enough = utcnow() - timedelta(days=3)  # refunds are never dated in the future
    charges = db.session.scalars(
        select(Transaction).where(Transaction.kind == TransactionKind.CHARGE,
                                  Transaction.created_at <= old_enough)
        .order_by(Transaction.id)).all()
    counts["refunds"] = 0
    for charge in rng.sample(charges, min(6, len(charges) // 8)):
        line = charge.lines[0]
        with clock_at(charge.created_at + timedelta(days=rng.randint(1, 3))):
            refunds.refund(charge, {line.certificate_type.code: 1}, actor=None)
        counts["refunds"] += 1


def _monthly_invoices(counts) -> None:
    """Issue every finished month's partner invoices, on the 1st of the next month."""
    first = db.session.scalar(select(func.min(Transaction.created_at)))
    if first is None:
        return
    month = first.date().replace(day=1)
    this_month = today().replace(day=1)
    counts["monthly invoices"] = 0
    while month < this_month:
        issue_day = month + relativedelta(months=1)
        with clock_at(datetime.combine(issue_day, time(3, 0), tzinfo=UTC)):
            counts["monthly invoices"] += len(invoicing.issue_monthly_invoices(month=month))
        month = issue_day
