"""Resellers and the partner platform's customers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from . import audit
from .clock import utcnow
from .errors import Conflict, InvalidInput
from .extensions import db
from .locks import lock
from .models import (
    AdminResponsibility,
    Customer,
    CustomerAdmin,
    Reseller,
    ResellerStatus,
    Subscription,
    SubscriptionStatus,
)
from .validation import country_code, currency_code, normalize_email, required_text

ADDRESS_LABELS = {"company_name": "company name", "address1": "address 1", "city": "city",
                  "postal_code": "postal code"}
ADDRESS_FIELDS = ("company_name", "address1", "address2", "address3", "city", "postal_code",
                  "state")
#: the longest each address field may be: its column's length (models.AddressMixin)
ADDRESS_MAX_LENGTHS: dict[str, int] = {
    name: Reseller.__table__.c[name].type.length for name in ADDRESS_FIELDS}
#: the longest reason for disabling a reseller, in characters
REASON_MAX_LENGTH = 500


def _address(fields: dict) -> dict:
    """Cleaned company and address fields; refuses missing required ones, over-long ones
    and bad countries."""
    names = {**ADDRESS_LABELS, "address2": "address 2", "address3": "address 3",
             "state": "state / province"}
    too_long = [f"{names[name]} to at most {limit} characters" for name, limit
                in ADDRESS_MAX_LENGTHS.items() if len((fields.get(name) or "").strip()) > limit]
    if too_long:
        raise InvalidInput(f"Please shorten {', '.join(too_long)}.")
    cleaned = required_text({k: fields.get(k, "") for k in ADDRESS_FIELDS}, ADDRESS_LABELS)
    cleaned["country"] = country_code(fields.get("country", ""))
    return cleaned


@dataclass(frozen=True)
class StatusChange:
    """The review of a status change (suspend, enable, disable): what it is done to, the
    status before and after, and what it changes. Building one writes nothing; every
    refusal of the change is raised while building it.

    Every field is part of the review's fingerprint, so a change to any of them between
    review and Confirm (the status, a reason, the inventory, the subscriptions listed)
    makes the review stale.
    """

    #: what changes, e.g. "Subscription #12 of Acme Ltd (Business SSL)"
    subject: str
    status_before: str
    status_after: str
    #: what the change does, one sentence each
    effects: tuple[str, ...]
    #: label and value rows shown with it: the state it is reviewed against
    facts: tuple[tuple[str, str | int | date], ...] = ()
    #: subscriptions the change stops or restarts, listed under ``subscriptions_heading``
    subscriptions: tuple[Subscription, ...] = ()
    subscriptions_heading: str = ""


# --------------------------------------------------------------------------- resellers


def create_reseller(*, company_name, address1, city, postal_code, country, address2="",
                    address3="", state="", actor) -> Reseller:
    """Add a reseller (admins)."""
    fields = _address(locals())
    reseller = Reseller(**fields, status=ResellerStatus.ACTIVE, created_at=utcnow())
    db.session.add(reseller)
    db.session.flush()
    audit.record(actor, "reseller.create", reseller, fields)
    return reseller


def update_reseller(reseller: Reseller, *, actor, **fields) -> Reseller:
    """Change a reseller's company details; its status changes only by disable/enable."""
    unknown = set(fields) - set(ADDRESS_FIELDS) - {"country"}
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))} here.")
    current = {k: getattr(reseller, k) for k in (*ADDRESS_FIELDS, "country")}
    cleaned = _address({**current, **fields})
    changes = {k: {"from": current[k], "to": v} for k, v in cleaned.items() if current[k] != v}
    for key, value in cleaned.items():
        setattr(reseller, key, value)
    if changes:
        audit.record(actor, "reseller.update", reseller, changes)
    return reseller


def reseller_impact(reseller: Reseller) -> dict:
    """What disabling this reseller would stop: its customers and their live subscriptions."""
    customers = db.session.scalar(
        select(func.count(Customer.id)).where(Customer.reseller_id == reseller.id)) or 0
    active = select(Subscription).join(Customer).where(
        Customer.reseller_id == reseller.id, Subscription.status == SubscriptionStatus.ACTIVE)
    active_subscriptions = db.session.scalars(active.order_by(Subscription.end_date)).all()
    return {
        "customers": customers,
        "active_subscriptions": len(active_subscriptions),
        "auto_renewals": [s for s in active_subscriptions if s.auto_renew],
    }


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Disabling a reseller needs a reason.")
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput(f"The reason can be at most {REASON_MAX_LENGTH} characters.")
    return reason


def review_disable_reseller(reseller: Reseller, reason: str | None) -> StatusChange:
    """What disabling the reseller would change, with its impact; refuses what
    :func:`disable_reseller` refuses. Writes nothing."""
    reason = _reason(reason)
    if reseller.status == ResellerStatus.DISABLED:
        raise Conflict(f"{reseller.company_name} is already disabled.")
    impact = reseller_impact(reseller)
    return StatusChange(
        subject=f"Reseller {reseller.company_name}",
        status_before=reseller.status.value, status_after=ResellerStatus.DISABLED.value,
        effects=(
            "Its customers take no new subscriptions or inventory additions, and it takes "
            "no new customers.",
            "Its customers' subscriptions do not renew: one that reaches its end date "
            "while the reseller is disabled expires instead.",
            "Their data stays as it is; enabling the reseller again restores all of it.",
        ),
        facts=(("Reason", reason), ("Customers", impact["customers"]),
               ("Active subscriptions", impact["active_subscriptions"]),
               ("Auto-renewals that will stop", len(impact["auto_renewals"]))),
        subscriptions=tuple(impact["auto_renewals"]),
        subscriptions_heading="Auto-renewing subscriptions that will not renew")


def review_enable_reseller(reseller: Reseller) -> StatusChange:
    """What enabling a disabled reseller would change; refuses what :func:`enable_reseller`
    refuses. Writes nothing."""
    if reseller.status == ResellerStatus.ACTIVE:
        raise Conflict(f"{reseller.company_name} is already active.")
    impact = reseller_impact(reseller)
    disabled_by = reseller.status_changed_by.email if reseller.status_changed_by else "system"
    since = reseller.status_changed_at.date() if reseller.status_changed_at else ""
    return StatusChange(
        subject=f"Reseller {reseller.company_name}",
        status_before=reseller.status.value, status_after=ResellerStatus.ACTIVE.value,
        effects=(
            "Its customers can take new subscriptions and inventory additions again, and "
            "it can take new customers.",
            "Its customers' auto-renewing subscriptions renew again at their end date.",
        ),
        facts=(("Disabled since", since), ("Disabled by", disabled_by),
               ("Reason", reseller.status_reason), ("Customers", impact["customers"]),
               ("Active subscriptions", impact["active_subscriptions"]),
               ("Auto-renewals that resume", len(impact["auto_renewals"]))),
        subscriptions=tuple(impact["auto_renewals"]),
        subscriptions_heading="Auto-renewing subscriptions that will renew again")


def disable_reseller(reseller: Reseller, *, reason: str, actor) -> None:
    """Stop new subscriptions, additions and renewals for the reseller's customers (admins)."""
    reason = _reason(reason)
    reseller = lock(Reseller, reseller.id, "Reseller")
    review_disable_reseller(reseller, reason)
    impact = reseller_impact(reseller)
    reseller.status = ResellerStatus.DISABLED
    reseller.status_reason = reason
    reseller.status_changed_at = utcnow()
    reseller.status_changed_by_id = actor.id if actor is not None else None
    audit.record(actor, "reseller.disable", reseller,
                 {"reason": reason, "customers": impact["customers"],
                  "active_subscriptions": impact["active_subscriptions"],
                  "auto_renewals_stopped": len(impact["auto_renewals"])})


def enable_reseller(reseller: Reseller, *, actor) -> None:
    """Let a disabled reseller's customers take subscriptions and renew again (admins)."""
    reseller = lock(Reseller, reseller.id, "Reseller")
    review_enable_reseller(reseller)
    reseller.status = ResellerStatus.ACTIVE
    reseller.status_reason = ""
    reseller.status_changed_at = utcnow()
    reseller.status_changed_by_id = actor.id if actor is not None else None
    audit.record(actor, "reseller.enable", reseller, {})


def ensure_reseller_active(customer: Customer) -> None:
    """Refuse when the customer's reseller is disabled; locks the reseller row meanwhile."""
    if customer.reseller_id is not None:
        _require_active(customer.reseller_id, lambda reseller: (
            f"{customer.company_name} is managed by {reseller.company_name}, which is "
            "disabled: no new subscriptions or additions until an admin enables it again."))


def _require_active(reseller_id: int, refusal) -> Reseller:
    """Lock the reseller; raise Conflict(refusal(reseller)) when it is disabled."""
    reseller = lock(Reseller, reseller_id, "Reseller")
    if reseller.status == ResellerStatus.DISABLED:
        raise Conflict(refusal(reseller))
    return reseller


# --------------------------------------------------------------------------- customers


def create_customer(*, company_name, address1, city, postal_code, country,
                    administrative_responsibility: str, customer_admin_email=None,
                    reseller=None, address2="", address3="", state="", currency="USD",
                    actor) -> Customer:
    """Add a partner customer; a customer-administered one gets its first administrator."""
    fields = _address(locals())
    try:
        responsibility = AdminResponsibility(administrative_responsibility)
    except ValueError as exc:
        raise InvalidInput("Administrative responsibility is either partner or customer.") from exc
    admin_email = None
    if responsibility == AdminResponsibility.CUSTOMER:
        if not (customer_admin_email or "").strip():
            raise InvalidInput("A customer-administered customer needs a customer admin email.")
        admin_email = normalize_email(customer_admin_email)
    elif (customer_admin_email or "").strip():
        admin_email = normalize_email(customer_admin_email)
    if reseller is not None:
        _require_active(reseller.id, _no_new_customers)
    customer = Customer(**fields, administrative_responsibility=responsibility,
                        customer_admin_email=admin_email, reseller=reseller,
                        currency=currency_code(currency), created_at=utcnow())
    db.session.add(customer)
    db.session.flush()
    if responsibility == AdminResponsibility.CUSTOMER:
        db.session.add(CustomerAdmin(customer=customer, email=admin_email, created_at=utcnow()))
        db.session.flush()
    audit.record(actor, "customer.create", customer,
                 {**fields, "administrative_responsibility": responsibility.value,
                  "customer_admin_email": admin_email,
                  "reseller_id": reseller.id if reseller else None,
                  "currency": customer.currency})
    return customer


def _no_new_customers(reseller: Reseller) -> str:
    return f"{reseller.company_name} is disabled; it cannot take new customers."


#: fields update_customer may change; administrative responsibility is not among them
UPDATABLE_CUSTOMER_FIELDS = (*ADDRESS_FIELDS, "country", "reseller", "customer_admin_email")


def update_customer(customer: Customer, *, actor, **fields) -> Customer:
    """Change a customer's details. Administrative responsibility and currency are fixed."""
    if "administrative_responsibility" in fields and (
        fields["administrative_responsibility"] != customer.administrative_responsibility.value
    ):
        raise Conflict("Administrative responsibility is fixed when a customer is created "
                       "and cannot be changed.")
    if "currency" in fields and fields["currency"] != customer.currency:
        raise Conflict("A customer's currency cannot be changed once it has been created.")
    fields.pop("administrative_responsibility", None)
    fields.pop("currency", None)
    unknown = set(fields) - set(UPDATABLE_CUSTOMER_FIELDS)
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))} here.")
    current = {k: getattr(customer, k) for k in (*ADDRESS_FIELDS, "country")}
    cleaned = _address({**current, **{k: v for k, v in fields.items() if k in current}})
    changes = {k: {"from": current[k], "to": v} for k, v in cleaned.items() if current[k] != v}
    if "reseller" in fields and fields["reseller"] is not customer.reseller:
        new = fields["reseller"]
        if new is not None:
            _require_active(new.id, _no_new_customers)
        changes["reseller"] = {"from": customer.reseller_id, "to": new.id if new else None}
        customer.reseller = new
    if "customer_admin_email" in fields:
        email = (fields["customer_admin_email"] or "").strip()
        if customer.administrative_responsibility == AdminResponsibility.CUSTOMER and not email:
            raise InvalidInput("A customer-administered customer needs a customer admin email.")
        email = normalize_email(email) if email else None
        if email != customer.customer_admin_email:
            changes["customer_admin_email"] = {"from": customer.customer_admin_email,
                                               "to": email}
            customer.customer_admin_email = email
    for key, value in cleaned.items():
        setattr(customer, key, value)
    db.session.flush()
    if changes:
        audit.record(actor, "customer.update", customer, changes)
    return customer


# --------------------------------------------------------------------------- look-ups


#: the most companies one look-up returns
MAX_LOOKUP = 20


def find_companies(model: type[Customer] | type[Reseller], text: str, *, offset: int = 0,
                   limit: int = 10) -> list[tuple[int, str]]:
    """(id, company name) of the customers or resellers whose company name contains
    ``text`` (any case; a trigram index search on PostgreSQL), by name then id; a text of
    digits, with or without ``#``, also finds the one with that id, first. For type-ahead
    fields: one page of ``limit`` (at most MAX_LOOKUP) from ``offset``."""
    text = text.strip()
    limit = max(1, min(limit, MAX_LOOKUP))
    found: list[tuple[int, str]] = []
    number = text.removeprefix("#")
    if offset == 0 and number.isascii() and number.isdigit() and len(number) <= 10:
        row = db.session.execute(select(model.id, model.company_name)
                                 .where(model.id == int(number))).first()
        if row is not None:
            found.append((row.id, row.company_name))
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.session.execute(
        select(model.id, model.company_name)
        .where(model.company_name.ilike(f"%{escaped}%", escape="\\"))
        .order_by(model.company_name, model.id).offset(offset).limit(limit)).all()
    found += [(row.id, row.company_name) for row in rows if (row.id, row.company_name)
              not in found]
    return found[:limit]
