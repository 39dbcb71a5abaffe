"""The catalog, partner subscriptions and their inventory (renewal is in ``renewals``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from . import audit
from .clock import today, utcnow
from .errors import Conflict, InvalidInput, NotFound
from .extensions import db
from .locks import lock
from .models import (
    CertificateKind,
    CertificateType,
    Customer,
    Inventory,
    ResellerStatus,
    Subscription,
    SubscriptionProduct,
    SubscriptionStatus,
    SubscriptionTerm,
    Transaction,
    TransactionKind,
    TransactionLine,
    TransactionReason,
)
from .partners import StatusChange, ensure_reseller_active
from .pricing import Quote, earliest_start, price_line, term_end
from .renewals import renewal_blocker
from .validation import positive_counts

#: term lengths a product may offer, in months
ALLOWED_TERMS = range(1, 121)
#: the highest yearly price of one certificate, in minor units (1,000,000.00)
MAX_YEARLY_PRICE = 1_000_000_00


def create_certificate_type(
    *, code: str, name: str, yearly_price: int, kind: str = "traditional", actor=None
) -> CertificateType:
    """Add a certificate type to the catalog; its code is how everything else names it."""
    code = (code or "").strip().upper()
    name = (name or "").strip()
    if not code or not name:
        raise InvalidInput("A certificate type needs a code and a name.")
    kind_value = _certificate_kind(kind)
    _check_price(yearly_price)
    if db.session.scalar(select(CertificateType.id).where(CertificateType.code == code)):
        raise Conflict(f"The catalog already has a certificate type with code {code}.")
    cert_type = CertificateType(code=code, name=name, yearly_price=yearly_price, kind=kind_value)
    db.session.add(cert_type)
    db.session.flush()
    audit.record(actor, "catalog.certificate_type.create", cert_type,
                 {"code": code, "name": name, "yearly_price": yearly_price,
                  "kind": kind_value.value})
    return cert_type


def update_certificate_type(
    cert_type: CertificateType, *, name: str, yearly_price: int, active: bool, actor
) -> CertificateType:
    """Rename, reprice or retire a certificate type; its code and kind never change.

    A new price applies to charges made from now on; recorded charges keep theirs.
    """
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A certificate type needs a name.")
    _check_price(yearly_price)
    before = {"name": cert_type.name, "yearly_price": cert_type.yearly_price,
              "active": cert_type.active}
    cert_type.name, cert_type.yearly_price, cert_type.active = name, yearly_price, active
    audit.record(actor, "catalog.certificate_type.update", cert_type,
                 {"before": before,
                  "after": {"name": name, "yearly_price": yearly_price, "active": active}})
    return cert_type


def create_product(
    *, name: str, certificate_types: list[str], terms_months=(12, 24, 36), actor=None
) -> SubscriptionProduct:
    """Bundle certificate types (by code) into a subscription product with allowed terms."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A subscription product needs a name.")
    if db.session.scalar(select(SubscriptionProduct.id).where(SubscriptionProduct.name == name)):
        raise Conflict(f"A subscription product named {name} already exists.")
    product = SubscriptionProduct(
        name=name,
        terms_months=_check_terms(terms_months),
        certificate_types=certificate_types_by_code(certificate_types),
    )
    db.session.add(product)
    db.session.flush()
    audit.record(actor, "catalog.product.create", product,
                 {"name": name, "certificate_types": sorted(certificate_types),
                  "terms_months": product.terms_months})
    return product


def update_product(
    product: SubscriptionProduct, *, name: str, certificate_types: list[str], terms_months,
    active: bool, actor
) -> SubscriptionProduct:
    """Change a product; subscriptions already sold keep their term and inventory."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A subscription product needs a name.")
    clash = db.session.scalar(
        select(SubscriptionProduct.id).where(
            SubscriptionProduct.name == name, SubscriptionProduct.id != product.id
        )
    )
    if clash:
        raise Conflict(f"A subscription product named {name} already exists.")
    product.name = name
    product.terms_months = _check_terms(terms_months)
    product.certificate_types = certificate_types_by_code(certificate_types)
    product.active = active
    audit.record(actor, "catalog.product.update", product,
                 {"name": name, "certificate_types": sorted(certificate_types),
                  "terms_months": product.terms_months, "active": active})
    return product


def certificate_types_by_code(codes) -> list[CertificateType]:
    """The certificate types named by ``codes``; refuses unknown or missing codes."""
    wanted = sorted({(c or "").strip().upper() for c in codes})
    if not wanted:
        raise InvalidInput("Choose at least one certificate type.")
    found = db.session.scalars(
        select(CertificateType).where(CertificateType.code.in_(wanted))
    ).all()
    missing = set(wanted) - {t.code for t in found}
    if missing:
        raise NotFound(f"No certificate type with code {', '.join(sorted(missing))}.")
    return sorted(found, key=lambda t: t.code)


def _certificate_kind(kind: str) -> CertificateKind:
    try:
        return CertificateKind(kind)
    except ValueError as exc:
        raise InvalidInput(f"Unknown certificate kind '{kind}'; use traditional or caas.") from exc


def _check_price(yearly_price) -> None:
    if not isinstance(yearly_price, int) or isinstance(yearly_price, bool) or yearly_price < 0:
        raise InvalidInput("A yearly price is a whole, non-negative number of minor units.")
    if yearly_price > MAX_YEARLY_PRICE:
        raise InvalidInput(f"A yearly price can be at most {MAX_YEARLY_PRICE // 100:,}.00 "
                           f"per certificate.")


def _check_terms(terms_months) -> list[int]:
    try:
        terms = sorted({int(t) for t in terms_months})
    except (TypeError, ValueError) as exc:
        raise InvalidInput("Terms are whole numbers of months, e.g. 12, 24, 36.") from exc
    if not terms or any(t not in ALLOWED_TERMS for t in terms):
        raise InvalidInput("Terms are whole numbers of months between 1 and 120.")
    return terms


# --------------------------------------------------------------------------- quotes


def quote_subscription(customer: Customer, product: SubscriptionProduct, *, term_months: int,
                       inventory: dict[str, int], start_date: date | None = None) -> Quote:
    """What adding this subscription would charge now; refuses what the rules refuse."""
    as_of = today()
    ensure_reseller_active(customer)
    if not product.active:
        raise Conflict(f"{product.name} is no longer offered.")
    if term_months not in product.terms_months:
        allowed = ", ".join(str(t) for t in product.terms_months)
        raise InvalidInput(f"{product.name} is sold for {allowed} months, not {term_months}.")
    start = start_date or as_of
    if start > as_of:
        raise InvalidInput(f"The start date {start.isoformat()} is in the future; a "
                           "subscription starts today or is backdated.")
    end = term_end(start, term_months)
    if end <= as_of:
        raise InvalidInput(
            f"A {term_months}-month term from {start.isoformat()} ended on {end.isoformat()}; "
            f"the earliest start date allowed today is "
            f"{earliest_start(term_months, as_of).isoformat()}.")
    quantities = _product_quantities(product, inventory)
    lines = tuple(
        price_line(t, quantities[t.code], term_months=term_months, start_date=start,
                   end_date=end, as_of=as_of)
        for t in product.certificate_types if quantities[t.code] > 0
    )
    return Quote(currency=customer.currency, start_date=start, end_date=end,
                 term_months=term_months, as_of=as_of, lines=lines)


def _product_quantities(product: SubscriptionProduct, counts: dict[str, int]) -> dict[str, int]:
    """Per certificate type of the product, the count asked for (0 when not named)."""
    counts = positive_counts(counts, "quantity")
    offered = {t.code for t in product.certificate_types}
    foreign = sorted(set(counts) - offered)
    if foreign:
        raise InvalidInput(f"{product.name} does not include {', '.join(foreign)}.")
    if not any(counts.values()):
        raise InvalidInput("Enter a quantity for at least one certificate type.")
    return {code: counts.get(code, 0) for code in offered}


def _record_charge(subscription: Subscription, quote: Quote, reason: TransactionReason, *,
                   actor) -> Transaction:
    """One charge transaction with a line per quoted certificate type."""
    transaction = Transaction(
        customer_id=subscription.customer_id, subscription=subscription,
        kind=TransactionKind.CHARGE, reason=reason, amount=quote.total,
        currency=quote.currency, created_at=utcnow(),
        actor_id=actor.id if actor is not None else None,
    )
    db.session.add(transaction)
    types = {t.code: t for t in subscription.product.certificate_types}
    for line in quote.lines:
        db.session.add(TransactionLine(
            transaction=transaction, certificate_type=types[line.code], quantity=line.quantity,
            amount=line.amount, full_amount=line.full_amount, days_charged=line.days_charged,
            days_in_term=line.days_in_term, refunded_quantity=0, refunded_amount=0,
        ))
    db.session.flush()
    return transaction


def _quote_details(quote: Quote) -> dict:
    return {"total": quote.total, "currency": quote.currency,
            "lines": {line.code: {"quantity": line.quantity, "amount": line.amount,
                                  "days": f"{line.days_charged}/{line.days_in_term}"}
                      for line in quote.lines}}


# --------------------------------------------------------------------------- subscriptions


def add_subscription(customer: Customer, product: SubscriptionProduct, *, term_months: int,
                     inventory: dict[str, int], start_date: date | None = None,
                     auto_renew: bool = False, actor) -> Subscription:
    """Record a subscription, its inventory and first term, and its (prorated) charge."""
    quote = quote_subscription(customer, product, term_months=term_months,
                               inventory=inventory, start_date=start_date)
    quantities = _product_quantities(product, inventory)
    subscription = Subscription(
        customer=customer, product=product, term_months=term_months,
        start_date=quote.start_date, end_date=quote.end_date, auto_renew=bool(auto_renew),
        status=SubscriptionStatus.ACTIVE, created_at=utcnow(),
    )
    db.session.add(subscription)
    for cert_type in product.certificate_types:
        db.session.add(Inventory(subscription=subscription, certificate_type=cert_type,
                                 quantity=quantities[cert_type.code],
                                 renewal_quantity=quantities[cert_type.code]))
    db.session.add(SubscriptionTerm(subscription=subscription, start_date=quote.start_date,
                                    end_date=quote.end_date, created_at=utcnow()))
    db.session.flush()
    transaction = _record_charge(subscription, quote, TransactionReason.NEW_SUBSCRIPTION,
                                 actor=actor)
    audit.record(actor, "subscription.create", subscription,
                 {"customer_id": customer.id, "product": product.name,
                  "term_months": term_months, "start_date": quote.start_date,
                  "end_date": quote.end_date, "auto_renew": bool(auto_renew),
                  "transaction_id": transaction.id, **_quote_details(quote)})
    return subscription


def quote_inventory(subscription: Subscription, additions: dict[str, int]) -> Quote:
    """What adding current inventory costs today: the prorated price for the days left."""
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise Conflict(f"Subscription #{subscription.id} is {subscription.status.value}; "
                       "only active subscriptions take additions.")
    ensure_reseller_active(subscription.customer)
    as_of = today()
    if subscription.end_date <= as_of:
        raise Conflict(f"Subscription #{subscription.id}'s term ended on "
                       f"{subscription.end_date.isoformat()}; it takes no more additions.")
    quantities = _product_quantities(subscription.product, additions)
    lines = tuple(
        price_line(t, quantities[t.code], term_months=subscription.term_months,
                   start_date=subscription.start_date, end_date=subscription.end_date,
                   as_of=as_of)
        for t in subscription.product.certificate_types if quantities[t.code] > 0
    )
    return Quote(currency=subscription.customer.currency, start_date=subscription.start_date,
                 end_date=subscription.end_date, term_months=subscription.term_months,
                 as_of=as_of, lines=lines)


def add_inventory(subscription: Subscription, additions: dict[str, int], *,
                  actor) -> Transaction:
    """Grow current inventory; the prorated charge goes on the next invoice."""
    subscription = lock(Subscription, subscription.id, "Subscription")
    quote = quote_inventory(subscription, additions)
    rows = _locked_inventory(subscription)
    for line in quote.lines:
        rows[line.code].quantity += line.quantity
    transaction = _record_charge(subscription, quote, TransactionReason.INVENTORY_ADDED,
                                 actor=actor)
    audit.record(actor, "subscription.inventory_add", subscription,
                 {"transaction_id": transaction.id, **_quote_details(quote)})
    return transaction


def _locked_inventory(subscription: Subscription) -> dict[str, Inventory]:
    rows = db.session.scalars(
        select(Inventory).where(Inventory.subscription_id == subscription.id)
        .order_by(Inventory.id).with_for_update().execution_options(populate_existing=True)
    ).all()
    return {row.certificate_type.code: row for row in rows}


@dataclass(frozen=True)
class RenewalInventoryLine:
    """One certificate type in the review of a renewal inventory change."""

    code: str
    name: str
    #: current inventory: what the subscription holds now (this change leaves it)
    current: int
    renewal_before: int
    renewal_after: int
    yearly_price: int
    #: the next term's full price for the renewal inventory before and after, at today's
    #: prices (information: nothing is charged until the renewal)
    full_before: int
    full_after: int

    @property
    def changed(self) -> bool:
        return self.renewal_before != self.renewal_after


@dataclass(frozen=True)
class RenewalInventoryReview:
    """What setting a subscription's renewal inventory changes, and what its next renewal
    would charge for the full term at today's prices. Nothing is charged now."""

    subscription: Subscription
    status: SubscriptionStatus
    currency: str
    auto_renew: bool
    term_months: int
    #: the next term: it starts where the current one ends
    renews_on: date
    next_end: date
    lines: tuple[RenewalInventoryLine, ...]
    #: why the subscription would not renew with the new quantities, or None when it would
    blocker: str | None

    @property
    def total_before(self) -> int:
        return sum(line.full_before for line in self.lines)

    @property
    def total_after(self) -> int:
        return sum(line.full_after for line in self.lines)


def quote_renewal_inventory(subscription: Subscription,
                            quantities: dict[str, int]) -> RenewalInventoryReview:
    """The review of :func:`set_renewal_inventory`: renewal inventory before and after per
    certificate type, and the next term's full price; refuses what it refuses. Types not
    named keep their renewal inventory. Writes nothing."""
    if subscription.status == SubscriptionStatus.EXPIRED:
        raise Conflict(f"Subscription #{subscription.id} has expired; it has no next term.")
    counts = positive_counts(quantities, "renewal quantity")
    rows = {row.certificate_type.code: row for row in subscription.inventory}
    foreign = sorted(set(counts) - set(rows))
    if foreign:
        raise InvalidInput(f"{subscription.product.name} does not include {', '.join(foreign)}.")
    if all(counts[code] == rows[code].renewal_quantity for code in counts):
        raise Conflict("The renewal inventory is already set to these quantities.")
    start = subscription.end_date
    end = term_end(start, subscription.term_months)

    def full(row: Inventory, quantity: int) -> int:
        return price_line(row.certificate_type, quantity, term_months=subscription.term_months,
                          start_date=start, end_date=end, as_of=start).amount

    lines = tuple(
        RenewalInventoryLine(
            code=code, name=row.certificate_type.name, current=row.quantity,
            renewal_before=row.renewal_quantity,
            renewal_after=counts.get(code, row.renewal_quantity),
            yearly_price=row.certificate_type.yearly_price,
            full_before=full(row, row.renewal_quantity),
            full_after=full(row, counts.get(code, row.renewal_quantity)))
        for code, row in rows.items())
    return RenewalInventoryReview(
        subscription=subscription, status=subscription.status,
        currency=subscription.customer.currency, auto_renew=subscription.auto_renew,
        term_months=subscription.term_months, renews_on=start, next_end=end, lines=lines,
        blocker=renewal_blocker(subscription,
                                renewal_total=sum(line.renewal_after for line in lines)))


def set_renewal_inventory(subscription: Subscription, quantities: dict[str, int], *,
                          actor) -> None:
    """Set what the next term will hold; charges nothing now."""
    subscription = lock(Subscription, subscription.id, "Subscription")
    rows = _locked_inventory(subscription)
    review = quote_renewal_inventory(subscription, quantities)
    changes = {}
    for line in review.lines:
        if line.changed:
            changes[line.code] = {"from": line.renewal_before, "to": line.renewal_after}
            rows[line.code].renewal_quantity = line.renewal_after
    db.session.flush()
    audit.record(actor, "subscription.renewal_inventory", subscription, changes)


def _subject(subscription: Subscription) -> str:
    return (f"Subscription #{subscription.id} of {subscription.customer.company_name} "
            f"({subscription.product.name})")


def _facts(subscription: Subscription) -> tuple[tuple[str, str | int | date], ...]:
    """The state a status change is reviewed against."""
    inventory = ", ".join(f"{row.certificate_type.code} {row.quantity} / {row.renewal_quantity}"
                          for row in subscription.inventory)
    return (("Term start", subscription.start_date),
            ("Term end (exclusive)", subscription.end_date),
            ("Auto-renew", "on" if subscription.auto_renew else "off"),
            ("Inventory now / at renewal", inventory or "none"))


def review_suspend_subscription(subscription: Subscription) -> StatusChange:
    """What suspending would change; refuses what :func:`suspend_subscription` refuses.
    Writes nothing."""
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise Conflict(f"Subscription #{subscription.id} is {subscription.status.value}; "
                       "only active subscriptions can be suspended.")
    end = subscription.end_date.isoformat()
    return StatusChange(
        subject=_subject(subscription), status_before=subscription.status.value,
        status_after=SubscriptionStatus.SUSPENDED.value,
        effects=(
            "It takes no inventory additions while suspended.",
            f"It does not renew: if it is still suspended when its term ends on {end}, it "
            "expires instead.",
            "Enabling it again restores it as it was, with its inventory, unless its term "
            "has ended by then.",
        ),
        facts=_facts(subscription))


def review_enable_subscription(subscription: Subscription) -> StatusChange:
    """What enabling a suspended subscription would change; refuses what
    :func:`enable_subscription` refuses (a subscription whose term has ended cannot be
    enabled). Writes nothing."""
    if subscription.status != SubscriptionStatus.SUSPENDED:
        raise Conflict(f"Subscription #{subscription.id} is {subscription.status.value}; "
                       "only suspended subscriptions can be enabled.")
    if subscription.end_date <= today():
        raise Conflict(f"Subscription #{subscription.id}'s term ended on "
                       f"{subscription.end_date.isoformat()}; it cannot be enabled again.")
    end = subscription.end_date.isoformat()
    effects = ["It takes inventory additions again, with the inventory it had."]
    if subscription.auto_renew:
        effects.append(f"It renews automatically on {end} with its renewal inventory.")
    else:
        effects.append(f"Auto-renew is off: it expires on {end}.")
    reseller = subscription.customer.reseller
    if reseller is not None and reseller.status == ResellerStatus.DISABLED:
        effects.append(f"Its reseller {reseller.company_name} is disabled: until an admin "
                       "enables it, the subscription still takes no additions and does not "
                       "renew.")
    return StatusChange(
        subject=_subject(subscription), status_before=subscription.status.value,
        status_after=SubscriptionStatus.ACTIVE.value, effects=tuple(effects),
        facts=_facts(subscription))


def suspend_subscription(subscription: Subscription, *, actor) -> None:
    """Suspend: no additions and no renewal until enabled again."""
    subscription = lock(Subscription, subscription.id, "Subscription")
    review_suspend_subscription(subscription)
    subscription.status = SubscriptionStatus.SUSPENDED
    audit.record(actor, "subscription.suspend", subscription, {})


def enable_subscription(subscription: Subscription, *, actor) -> None:
    """Restore a suspended subscription exactly as it was."""
    subscription = lock(Subscription, subscription.id, "Subscription")
    review_enable_subscription(subscription)
    subscription.status = SubscriptionStatus.ACTIVE
    audit.record(actor, "subscription.enable", subscription, {})
