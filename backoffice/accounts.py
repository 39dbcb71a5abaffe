"""Storefront profiles, corporate accounts, orders and payments, prepaid credit."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, func, or_, select, union

from . import audit, outbox
from .clock import utcnow
from .errors import Conflict, InvalidInput, NotFound, PermissionDenied
from .extensions import db
from .locks import lock
from .models import (
    CertificateKind,
    CertificateType,
    CorporateRequest,
    CreditEntry,
    CreditKind,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    LegacyAccount,
    License,
    Order,
    OrderItem,
    OrderStatus,
    Organization,
    OrgRole,
    PaymentMethod,
    Profile,
    RequestStatus,
)
from .money import format_money
from .numbering import next_number
from .permissions import Permission, has_permission
from .validation import country_code, currency_code, normalize_email, positive_counts

#: billing fields an order must carry, and how they are named to people
BILLING_REQUIRED = {"name": "name", "address1": "address", "city": "city",
                    "postal_code": "postal code", "country": "country"}
BILLING_OPTIONAL = ("company", "address2", "state", "vat_number", "email")

ACME_DIRECTORY_URL = "https://acme.sectigo.example/v2/{code}"

#: the largest amount one staff credit adjustment may add or remove, in minor units
#: (100,000.00 in a two-decimal currency; the same number of minor units in every currency)
MAX_CREDIT_ADJUSTMENT = 10_000_000
#: the longest memo a ledger entry keeps (``credit_entry.memo``)
MAX_MEMO_LENGTH = 500
#: the longest organization name (``organization.name``, ``corporate_request.organization_name``)
MAX_ORGANIZATION_NAME = 200
#: the longest reason for an unlink or a rejection
MAX_REASON_LENGTH = 500
#: the most secondary emails one corporate request may list
MAX_SECONDARY_EMAILS = 100


def _require(actor, permission: Permission, doing: str) -> None:
    """Refuse a staff actor without ``permission``; None (storefront, seeder, job) passes."""
    if actor is not None and not has_permission(actor, permission):
        raise PermissionDenied(f"Your role cannot {doing}; ask an admin.")


def _organization_of(profile: Profile) -> Organization:
    """The organization of a profile whose ``organization_id`` is set."""
    organization = profile.organization
    assert organization is not None, f"profile {profile.id} has no organization"
    return organization


# --------------------------------------------------------------------------- profiles


def create_profile(*, email: str, name: str, currency: str = "USD") -> Profile:
    """A new individual storefront profile (the storefront's sign-up)."""
    email = normalize_email(email)
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A profile needs a name.")
    if db.session.scalar(select(Profile.id).where(Profile.email == email)):
        raise Conflict(f"A profile with email {email} already exists.")
    profile = Profile(email=email, name=name, currency=currency_code(currency), credit_balance=0)
    db.session.add(profile)
    db.session.flush()
    audit.record(None, "profile.create", profile, {"email": email}, actor_label="storefront")
    return profile


# --------------------------------------------------------------------------- orders


def place_order(profile: Profile, *, items: dict[str, int], billing: dict) -> Order:
    """Place an order: its items, one licence per certificate bought, and its invoice.

    ``items`` maps certificate type codes to how many licences are bought; prices are one
    year of each type's price. The billing details are kept exactly as entered.
    """
    wanted = {code: n for code, n in positive_counts(items, "number of licences").items() if n}
    if not wanted:
        raise InvalidInput("An order needs at least one licence.")
    billing = _billing_snapshot(billing)
    types = {
        t.code: t for t in db.session.scalars(
            select(CertificateType).where(CertificateType.code.in_(wanted)))
    }
    unknown = sorted(set(wanted) - set(types))
    if unknown:
        raise NotFound(f"No certificate type with code {', '.join(unknown)}.")
    retired = sorted(code for code, t in types.items() if not t.active)
    if retired:
        raise Conflict(f"{', '.join(retired)} is no longer sold.")

    order = Order(
        number=next_number("order", "SO"),
        placed_by=profile,
        status=OrderStatus.AWAITING_PAYMENT,
        payment_token=secrets.token_urlsafe(24),
        billing=billing,
        currency=profile.currency,
        total=0,
        created_at=utcnow(),
    )
    db.session.add(order)
    for code in sorted(wanted):
        cert_type, quantity = types[code], wanted[code]
        item = OrderItem(order=order, certificate_type=cert_type, quantity=quantity,
                         unit_price=cert_type.yearly_price,
                         amount=cert_type.yearly_price * quantity)
        db.session.add(item)
        order.total += item.amount
        for _ in range(quantity):
            db.session.add(_new_license(item, cert_type))
    db.session.flush()
    _issue_order_invoice(order)
    audit.record(None, "order.place", order,
                 {"number": order.number, "items": wanted, "total": order.total},
                 actor_label=f"storefront:{profile.email}")
    return order


def _billing_snapshot(billing: dict) -> dict:
    """Billing details as entered, with the required ones present and the country checked."""
    billing = {k: str(v).strip() for k, v in (billing or {}).items() if v is not None}
    missing = [label for key, label in BILLING_REQUIRED.items() if not billing.get(key)]
    if missing:
        raise InvalidInput(f"Billing details need: {', '.join(missing)}.")
    billing["country"] = country_code(billing["country"])
    return {k: billing[k] for k in (*BILLING_REQUIRED, *BILLING_OPTIONAL) if billing.get(k)}


def _new_license(item: OrderItem, cert_type: CertificateType) -> License:
    caas = cert_type.kind == CertificateKind.CAAS
    return License(
        order_item=item,
        ca_reference=f"CA{secrets.randbelow(10**10):010d}",
        kind=cert_type.kind,
        acme_directory_url=ACME_DIRECTORY_URL.format(code=cert_type.code) if caas else None,
        eab_key_id=f"eab_{secrets.token_hex(8)}" if caas else None,
    )


def _issue_order_invoice(order: Order) -> Invoice:
    invoice = Invoice(
        number=next_number("invoice", "INV"),
        kind=InvoiceKind.ORDER,
        order=order,
        billing=order.billing,
        currency=order.currency,
        total=order.total,
        issued_at=utcnow(),
    )
    db.session.add(invoice)
    for position, item in enumerate(order.items, start=1):
        db.session.add(InvoiceLine(
            invoice=invoice, position=position, quantity=item.quantity, amount=item.amount,
            description=f"{item.certificate_type.name} ({item.certificate_type.code}), 12 months",
            order_item_id=item.id,
        ))
    db.session.flush()
    return invoice


def pay_order(order: Order, *, payer: Profile, method: str, actor=None) -> Order:
    """Record an order's payment by ``payer``: by card, or from the payer's own credit.

    A payer other than the placer is someone a "Make Payment Later" link was forwarded to;
    the order stays the placer's.
    """
    try:
        method = PaymentMethod(method)
    except ValueError as exc:
        raise InvalidInput(
            f"Unknown payment method '{method}'; use card or prepaid_credit.") from exc
    order = lock(Order, order.id, "Order")
    if order.status != OrderStatus.AWAITING_PAYMENT:
        raise Conflict(f"Order {order.number} is {order.status.value.replace('_', ' ')}; "
                       "only orders awaiting payment can be paid.")
    entry = None
    if method == PaymentMethod.PREPAID_CREDIT:
        if payer.currency != order.currency:
            raise Conflict(f"Order {order.number} is in {order.currency} but the credit of "
                           f"{payer.email} is in {payer.currency}; pay by card instead.")
        entry = _post_credit(payer, -order.total, CreditKind.ORDER_PAYMENT, actor=actor,
                             order=order, memo=f"Payment of order {order.number}")
    order.status = OrderStatus.PAID
    order.paid_by_id = payer.id
    order.payment_method = method
    order.paid_at = utcnow()
    db.session.flush()
    audit.record(actor, "order.pay", order,
                 {"number": order.number, "payer": payer.email, "method": method.value,
                  "amount": order.total, "placed_by": order.placed_by.email,
                  "credit_entry_id": entry.id if entry is not None else None},
                 actor_label=None if actor else f"storefront:{payer.email}")
    return order


#: orders newest first, as every order list shows them
NEWEST_FIRST = (Order.created_at.desc(), Order.id.desc())


def visible_orders(profile: Profile, **page) -> list[Order]:
    """Orders this profile sees: placed or paid by anyone in its organization, else its own.

    Derived from membership at query time, so orders from before a link are included.
    ``page`` takes one page of them: see :func:`orders_of`.
    """
    return orders_of(_viewers(profile), **page)


def organization_orders(organization: Organization, **page) -> list[Order]:
    """Every order placed or paid by any current member of the organization, newest first
    (``page``: see :func:`orders_of`)."""
    return orders_of(_members(organization), **page)


def _members(organization: Organization) -> Select:
    return select(Profile.id).where(Profile.organization_id == organization.id)


def _viewers(profile: Profile) -> Select:
    """The profiles whose orders ``profile`` sees: its organization's members, or itself."""
    if profile.organization_id is None:
        return select(Profile.id).where(Profile.id == profile.id)
    return _members(_organization_of(profile))


def _seen_ids(members: Select, *, where: ColumnElement[bool] | None = None,
              order_by: Sequence = NEWEST_FIRST, limit: int | None = None):
    """The ids of the orders placed or paid by ``members``: a UNION of one search on
    ``placed_by`` and one on ``paid_by``, each on its own index (an OR of the two would
    read the whole table). With ``limit``, each side is cut at ``limit`` rows of
    ``order_by`` first."""

    def side(column) -> Select:
        ids = select(Order.id).where(column.in_(members))
        if where is not None:
            ids = ids.where(where)
        if limit is None:
            return ids
        inner = ids.order_by(*order_by).limit(limit).subquery()
        return select(inner.c.id)

    return union(side(Order.placed_by_id), side(Order.paid_by_id))


def orders_of(members: Select, *, where: ColumnElement[bool] | None = None,
              order_by: Sequence = NEWEST_FIRST, limit: int | None = None,
              options: Sequence = ()) -> list[Order]:
    """The orders placed or paid by ``members`` (a SELECT of profile ids), newest first.

    One page of them: ``where`` (a condition on the order, e.g. older than a given one),
    ``order_by`` and ``limit``, which each side of the UNION applies before they are
    merged, so a page costs the same however many orders there are; ``options`` load
    what the page shows with them.
    """
    ids = _seen_ids(members, where=where, order_by=order_by, limit=limit).subquery()
    query = select(Order).where(Order.id.in_(select(ids.c.id))).order_by(*order_by)
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query.options(*options)))


def count_orders_of(members: Select) -> int:
    """How many orders ``members`` placed or paid (each once)."""
    ids = _seen_ids(members).subquery()
    return db.session.scalar(select(func.count()).select_from(ids)) or 0


# --------------------------------------------------------------------------- corporate accounts


def _organization_name(raw: str) -> str:
    name = (raw or "").strip()
    if not name:
        raise InvalidInput("Give the organization a name.")
    if len(name) > MAX_ORGANIZATION_NAME:
        raise InvalidInput(f"The organization name must be at most {MAX_ORGANIZATION_NAME} "
                           "characters.")
    return name


def _reason(raw: str, doing: str) -> str:
    reason = (raw or "").strip()
    if not reason:
        raise InvalidInput(f"{doing} needs a reason.")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"The reason must be at most {MAX_REASON_LENGTH} characters.")
    return reason


def _check_upgrade(profile: Profile) -> None:
    if profile.organization_id is not None:
        raise Conflict(f"{profile.email} already belongs to {_organization_of(profile).name}.")


def _own_orders(profile: Profile) -> int:
    return count_orders_of(select(Profile.id).where(Profile.id == profile.id))


@dataclass(frozen=True)
class UpgradeReview:
    """What upgrading a profile to corporate does (see :func:`review_upgrade`)."""

    profile: Profile
    #: the new organization's name, as it will be saved
    organization_name: str
    #: the profile's own orders: they stay exactly as they are
    own_orders: int
    #: organizations already called this (any case), so staff can spot a duplicate
    same_name: tuple[Organization, ...]


def review_upgrade(profile: Profile, *, organization_name: str) -> UpgradeReview:
    """What :func:`upgrade_to_corporate` would do; raises its refusal. Writes nothing."""
    name = _organization_name(organization_name)
    _check_upgrade(profile)
    same_name = tuple(db.session.scalars(
        select(Organization).where(func.lower(Organization.name) == name.lower())
        .order_by(Organization.id)))
    return UpgradeReview(profile=profile, organization_name=name,
                         own_orders=_own_orders(profile), same_name=same_name)


def upgrade_to_corporate(profile: Profile, *, organization_name: str, actor) -> Organization:
    """Turn an individual profile into the main contact of a new organization.

    Its orders and history stay exactly as they were.
    """
    _require(actor, Permission.CORPORATE_WRITE, "set up corporate accounts")
    name = _organization_name(organization_name)
    profile = lock(Profile, profile.id, "Profile")
    _check_upgrade(profile)
    organization = Organization(name=name, created_at=utcnow())
    db.session.add(organization)
    db.session.flush()
    profile.organization_id = organization.id
    profile.org_role = OrgRole.MAIN
    profile.linked_at = utcnow()
    db.session.flush()
    audit.record(actor, "organization.create", organization,
                 {"name": name, "main_contact": profile.email})
    return organization


def _check_link(organization: Organization, profile: Profile) -> None:
    if profile.organization_id == organization.id:
        raise Conflict(f"{profile.email} is already linked to {organization.name}.")
    if profile.org_role == OrgRole.MAIN:
        raise Conflict(f"{profile.email} is the main contact of {_organization_of(profile).name} "
                       "and cannot join another organization.")
    if profile.organization_id is not None:
        raise Conflict(f"{profile.email} already belongs to {_organization_of(profile).name}; "
                       "an admin must unlink it first.")


@dataclass(frozen=True)
class LinkReview:
    """What linking a profile to an organization does (see :func:`review_link`)."""

    organization: Organization
    profile: Profile
    #: the organization's main contact, if it has one
    main_contact: Profile | None
    #: its users now; one more after the link
    members: int
    #: the orders the profile sees now (its own) and once linked (the organization's)
    orders_now: int
    orders_after: int


def review_link(organization: Organization, profile: Profile) -> LinkReview:
    """What :func:`link_profile` would do; raises its refusal. Writes nothing."""
    _check_link(organization, profile)
    members = select(Profile.id).where(
        or_(Profile.organization_id == organization.id, Profile.id == profile.id))
    return LinkReview(organization=organization, profile=profile,
                      main_contact=organization.main_contact,
                      members=len(organization.members), orders_now=_own_orders(profile),
                      orders_after=count_orders_of(members))


def link_profile(organization: Organization, profile: Profile, *, actor) -> None:
    """Add a profile to an organization as a secondary user; it keeps its own login."""
    _require(actor, Permission.CORPORATE_WRITE, "link profiles to organizations")
    organization = lock(Organization, organization.id, "Organization")
    profile = lock(Profile, profile.id, "Profile")
    _check_link(organization, profile)
    profile.organization_id = organization.id
    profile.org_role = OrgRole.SECONDARY
    profile.linked_at = utcnow()
    db.session.flush()
    audit.record(actor, "organization.link", profile,
                 {"organization_id": organization.id, "organization": organization.name,
                  "email": profile.email})


def _check_unlink(profile: Profile) -> Organization:
    if profile.organization_id is None:
        raise Conflict(f"{profile.email} is not linked to any organization.")
    if profile.org_role == OrgRole.MAIN:
        raise Conflict(f"{profile.email} is the main contact of {_organization_of(profile).name}; "
                       "the main contact cannot be unlinked.")
    return _organization_of(profile)


@dataclass(frozen=True)
class UnlinkReview:
    """What unlinking a secondary user does (see :func:`review_unlink`)."""

    profile: Profile
    organization: Organization
    reason: str
    #: the orders the profile sees now (the organization's) and after (its own)
    orders_now: int
    orders_after: int


def review_unlink(profile: Profile, *, reason: str) -> UnlinkReview:
    """What :func:`unlink_profile` would do; raises its refusal. Writes nothing."""
    reason = _reason(reason, "Unlinking")
    organization = _check_unlink(profile)
    return UnlinkReview(profile=profile, organization=organization, reason=reason,
                        orders_now=count_orders_of(_members(organization)),
                        orders_after=_own_orders(profile))


def unlink_profile(profile: Profile, *, reason: str, actor) -> None:
    """Take a secondary user out of its organization (admins, with a reason)."""
    _require(actor, Permission.PROFILE_UNLINK, "unlink profiles")
    reason = _reason(reason, "Unlinking")
    profile = lock(Profile, profile.id, "Profile")
    organization = _check_unlink(profile)
    profile.organization_id = None
    profile.org_role = None
    profile.linked_at = None
    db.session.flush()
    audit.record(actor, "organization.unlink", profile,
                 {"organization_id": organization.id, "organization": organization.name,
                  "email": profile.email, "reason": reason})


def submit_corporate_request(
    *, organization_name: str, main_contact_email: str, secondary_emails: list[str],
    actor=None,
) -> CorporateRequest:
    """Record a request to set up a corporate account (from a customer, or entered by staff).

    Addresses are checked and lower-cased; duplicates and the main contact's own address
    are dropped from the secondary list.
    """
    _require(actor, Permission.CORPORATE_WRITE, "enter corporate requests")
    name = (organization_name or "").strip()
    if not name:
        raise InvalidInput("The request needs an organization name.")
    if len(name) > MAX_ORGANIZATION_NAME:
        raise InvalidInput(f"The organization name must be at most {MAX_ORGANIZATION_NAME} "
                           "characters.")
    main = normalize_email(main_contact_email)
    listed = [raw for raw in secondary_emails or [] if raw and raw.strip()]
    if len(listed) > MAX_SECONDARY_EMAILS:
        raise InvalidInput(f"A request can list at most {MAX_SECONDARY_EMAILS} secondary "
                           f"emails; this one lists {len(listed)}.")
    secondaries: list[str] = []
    for raw in listed:
        email = normalize_email(raw)
        if email != main and email not in secondaries:
            secondaries.append(email)
    request = CorporateRequest(organization_name=name, main_contact_email=main,
                               secondary_emails=secondaries, status=RequestStatus.OPEN,
                               created_at=utcnow())
    db.session.add(request)
    db.session.flush()
    audit.record(actor, "corporate_request.submit", request,
                 {"organization": name, "main": main, "secondary": secondaries},
                 actor_label=None if actor is not None else f"customer:{main}")
    return request


def request_matches(request: CorporateRequest) -> dict:
    """Which emails of a request have a profile, and which do not.

    ``profiles`` maps each known email to its profile; ``unknown`` lists the others in the
    request's order (main contact first).
    """
    emails = [request.main_contact_email, *request.secondary_emails]
    profiles = {p.email: p for p in db.session.scalars(
        select(Profile).where(Profile.email.in_(emails)))}
    return {"profiles": profiles,
            "unknown": [e for e in emails if e not in profiles]}


@dataclass(frozen=True)
class RequestCompletionQuote:
    """What completing a corporate request does (see
    :func:`quote_corporate_request_completion`)."""

    request: CorporateRequest
    #: the main contact's profile
    main: Profile
    #: the organization the main contact already leads, or None when one is created
    organization: Organization | None
    #: the organization's name: the existing one's, or the requested name
    organization_name: str
    #: secondary emails whose profiles are linked
    link: tuple[str, ...]
    #: secondary emails whose profiles are already users of that organization
    already_linked: tuple[str, ...]
    #: secondary emails with no profile: reported, never linked or invented
    unknown: tuple[str, ...]


def _completion_plan(request: CorporateRequest, matches: dict) -> RequestCompletionQuote:
    """Every check of completing ``request``, on the profiles ``matches`` found."""
    if request.status != RequestStatus.OPEN:
        raise Conflict(f"Request #{request.id} is already {request.status.value}.")
    profiles = matches["profiles"]
    main = profiles.get(request.main_contact_email)
    if main is None:
        raise NotFound(f"No profile has the main contact email {request.main_contact_email}; "
                       "ask the customer to sign up first, or reject the request.")
    if main.organization_id is not None and main.org_role != OrgRole.MAIN:
        raise Conflict(f"Cannot complete: the main contact {main.email} is a secondary user "
                       f"of {_organization_of(main).name}.")
    target_id = main.organization_id
    conflicts = [
        f"{p.email} already belongs to {_organization_of(p).name}"
        for p in profiles.values()
        if p is not main and p.organization_id is not None and p.organization_id != target_id
    ]
    if conflicts:
        raise Conflict("Cannot complete: " + "; ".join(conflicts) + ".")
    organization = main.organization if target_id is not None else None
    link: list[str] = []
    already: list[str] = []
    for email in request.secondary_emails:
        profile = profiles.get(email)
        if profile is None:
            continue
        (already if target_id is not None and profile.organization_id == target_id
         else link).append(email)
    return RequestCompletionQuote(
        request=request, main=main, organization=organization,
        organization_name=(organization.name if organization is not None
                           else request.organization_name),
        link=tuple(link), already_linked=tuple(already),
        unknown=tuple(e for e in matches["unknown"] if e != request.main_contact_email))


def quote_corporate_request_completion(request: CorporateRequest) -> RequestCompletionQuote:
    """What :func:`complete_corporate_request` would do; raises its refusal (request not
    open, no profile for the main contact, a profile in another organization). Writes
    nothing."""
    return _completion_plan(request, request_matches(request))


def complete_corporate_request(request: CorporateRequest, *, actor) -> Organization:
    """Set up the organization a request asks for and link every listed profile that exists.

    The main contact's profile must exist. Emails with no profile are reported in the
    outcome, never invented. A confirmation email to the main contact is queued. Nothing
    changes unless every existing profile can be linked.
    """
    _require(actor, Permission.CORPORATE_WRITE, "complete corporate requests")
    request = lock(CorporateRequest, request.id, "Corporate request")
    if request.status != RequestStatus.OPEN:
        raise Conflict(f"Request #{request.id} is already {request.status.value}.")
    matches = request_matches(request)
    # Lock every profile up front, in id order, before any check or change.
    for profile in sorted(matches["profiles"].values(), key=lambda p: p.id):
        lock(Profile, profile.id, "Profile")
    plan = _completion_plan(request, matches)
    main = plan.main
    if plan.organization is not None:
        organization = plan.organization  # the main contact already leads an organization
    else:
        organization = upgrade_to_corporate(main, organization_name=request.organization_name,
                                            actor=actor)
    for email in plan.link:
        link_profile(organization, matches["profiles"][email], actor=actor)
    linked, already, unknown = list(plan.link), list(plan.already_linked), list(plan.unknown)
    request.status = RequestStatus.COMPLETED
    request.organization_id = organization.id
    request.processed_by_id = actor.id if actor is not None else None
    request.processed_at = utcnow()
    request.outcome = (f"Linked: {', '.join(linked) or 'none'}. "
                       + (f"Already linked: {', '.join(already)}. " if already else "")
                       + f"No profile for: {', '.join(unknown) or 'none'}.")
    outbox.queue(
        to=main.email,
        subject=f"Your corporate account {organization.name} is ready",
        body=(f"Hello {main.name},\n\nYour corporate account {organization.name} is set up "
              f"with you as main contact.\nLinked users: {', '.join(linked + already) or 'none'}."
              "\n"
              + (f"These addresses have no account yet and were not linked: "
                 f"{', '.join(unknown)}.\n" if unknown else "")
              + "\nEvery linked user now sees the orders of the whole organization.\n"),
    )
    audit.record(actor, "corporate_request.complete", request,
                 {"organization_id": organization.id, "linked": linked,
                  "already_linked": already, "unknown": unknown})
    return organization


def reject_corporate_request(request: CorporateRequest, *, reason: str, actor) -> None:
    """Close a request without linking anything; the reason is kept."""
    _require(actor, Permission.CORPORATE_WRITE, "reject corporate requests")
    reason = _reason(reason, "Rejecting a request")
    request = lock(CorporateRequest, request.id, "Corporate request")
    if request.status != RequestStatus.OPEN:
        raise Conflict(f"Request #{request.id} is already {request.status.value}.")
    request.status = RequestStatus.REJECTED
    request.processed_by_id = actor.id if actor is not None else None
    request.processed_at = utcnow()
    request.outcome = f"Rejected: {reason}"
    db.session.flush()
    audit.record(actor, "corporate_request.reject", request, {"reason": reason})


# --------------------------------------------------------------------------- prepaid credit


@dataclass(frozen=True)
class CreditAdjustmentQuote:
    """What a staff credit adjustment does (see :func:`quote_credit_adjustment`)."""

    profile: Profile
    currency: str
    #: signed minor units: positive adds, negative removes
    amount: int
    balance_before: int
    balance_after: int
    memo: str


def _below_zero(profile: Profile, taking: int) -> Conflict:
    return Conflict(
        f"{profile.email} has only {format_money(profile.credit_balance, profile.currency)}"
        f" of credit; taking {format_money(taking, profile.currency)} would leave it "
        "below zero.")


def _adjustment_amount(amount: int, currency: str) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidInput("The amount must be a non-zero whole number of minor units.")
    if abs(amount) > MAX_CREDIT_ADJUSTMENT:
        raise InvalidInput(f"One credit adjustment can add or remove at most "
                           f"{format_money(MAX_CREDIT_ADJUSTMENT, currency)}.")
    return amount


def _memo(raw: str, *, required: bool) -> str:
    memo = (raw or "").strip()
    if required and not memo:
        raise InvalidInput("A credit adjustment needs a memo saying why.")
    if len(memo) > MAX_MEMO_LENGTH:
        raise InvalidInput(f"The memo must be at most {MAX_MEMO_LENGTH} characters.")
    return memo


def quote_credit_adjustment(profile: Profile, amount: int, *, memo: str) -> CreditAdjustmentQuote:
    """What a staff adjustment of ``amount`` (signed minor units) would do to the balance.

    Refuses what :func:`add_credit` refuses for staff: no memo, a zero amount, more than
    MAX_CREDIT_ADJUSTMENT either way, a balance going below zero. Writes nothing.
    """
    amount = _adjustment_amount(amount, profile.currency)
    memo = _memo(memo, required=True)
    if profile.credit_balance + amount < 0:
        raise _below_zero(profile, -amount)
    return CreditAdjustmentQuote(profile=profile, currency=profile.currency, amount=amount,
                                 balance_before=profile.credit_balance,
                                 balance_after=profile.credit_balance + amount, memo=memo)


def add_credit(profile: Profile, amount: int, *, memo: str, actor,
               expected_balance: int | None = None) -> CreditEntry:
    """Add (positive) or remove (negative) prepaid credit; never below zero.

    With an actor this is a staff adjustment (finance, admins): it needs a memo and moves
    at most MAX_CREDIT_ADJUSTMENT either way. Without, a storefront top-up. The credit is
    the profile's own, also inside an organization. ``expected_balance`` (the balance a
    review showed) refuses the adjustment when the balance is no longer that.
    """
    _require(actor, Permission.CREDIT_ADJUST, "adjust prepaid credit")
    if actor is not None:
        amount = _adjustment_amount(amount, profile.currency)
    elif isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidInput("The amount must be a non-zero whole number of minor units.")
    memo = _memo(memo, required=actor is not None)
    if actor is None and amount < 0:
        raise InvalidInput("Only staff adjustments can remove credit.")
    if expected_balance is not None:
        locked = lock(Profile, profile.id, "Profile")
        if locked.credit_balance != expected_balance:
            raise Conflict(
                f"The credit of {locked.email} is now "
                f"{format_money(locked.credit_balance, locked.currency)}, not the "
                f"{format_money(expected_balance, locked.currency)} reviewed; nothing was "
                "changed. Review the adjustment again.")
    kind = CreditKind.ADJUSTMENT if actor is not None else CreditKind.TOP_UP
    entry = _post_credit(profile, amount, kind, actor=actor, memo=memo)
    audit.record(actor, f"credit.{kind.value}", entry.profile,
                 {"amount": amount, "balance_after": entry.balance_after, "memo": memo,
                  "entry_id": entry.id},
                 actor_label=None if actor else f"storefront:{entry.profile.email}")
    return entry


def _post_credit(profile: Profile, amount: int, kind: CreditKind, *, actor, memo: str = "",
                 order: Order | None = None,
                 legacy_account: LegacyAccount | None = None) -> CreditEntry:
    """Write one ledger entry and move the balance with it, under the profile's row lock.

    The caller writes the audit event of the operation the entry belongs to.
    """
    profile = lock(Profile, profile.id, "Profile")
    new_balance = profile.credit_balance + amount
    if new_balance < 0:
        raise _below_zero(profile, -amount)
    profile.credit_balance = new_balance
    entry = CreditEntry(profile_id=profile.id, amount=amount, balance_after=new_balance,
                        kind=kind, order_id=order.id if order else None,
                        legacy_account_id=legacy_account.id if legacy_account else None,
                        actor_id=actor.id if actor is not None else None, memo=memo,
                        created_at=utcnow())
    db.session.add(entry)
    db.session.flush()
    return entry


def check_legacy_transfer(account: LegacyAccount, profile: Profile) -> None:
    """Raise the reason a legacy balance cannot move to ``profile``, if there is one."""
    if account.transferred_at is not None:
        moved_to = account.transferred_to  # set with transferred_at (transfer_complete)
        raise Conflict(
            f"The balance of legacy account {account.legacy_number} was already moved to "
            f"{moved_to.email if moved_to else '?'} on {account.transferred_at:%Y-%m-%d}; "
            "it moves only once.")
    if account.credit_balance <= 0:
        raise Conflict(f"Legacy account {account.legacy_number} has no credit to move.")
    if account.currency != profile.currency:
        raise Conflict(f"Legacy account {account.legacy_number} holds {account.currency} but "
                       f"{profile.email} uses {profile.currency}; choose a {account.currency} "
                       "profile.")


@dataclass(frozen=True)
class LegacyTransferQuote:
    """What moving a legacy balance does (see :func:`quote_legacy_transfer`)."""

    account: LegacyAccount
    profile: Profile
    legacy_number: str
    currency: str
    #: the whole legacy balance, which moves
    amount: int
    profile_balance_before: int
    profile_balance_after: int


def quote_legacy_transfer(account: LegacyAccount, profile: Profile) -> LegacyTransferQuote:
    """What :func:`transfer_legacy_credit` would move; raises its refusal
    (:func:`check_legacy_transfer`). Writes nothing."""
    check_legacy_transfer(account, profile)
    return LegacyTransferQuote(
        account=account, profile=profile, legacy_number=account.legacy_number,
        currency=account.currency, amount=account.credit_balance,
        profile_balance_before=profile.credit_balance,
        profile_balance_after=profile.credit_balance + account.credit_balance)


def transfer_legacy_credit(legacy_account: LegacyAccount, profile: Profile, *,
                           actor) -> CreditEntry:
    """Move a legacy balance, once, to a regular-platform profile of the same currency.

    One transaction: the legacy balance goes to zero and the profile's ledger gets one
    ``legacy_transfer`` entry. The legacy row is locked first, so of two concurrent
    transfers the second sees the first's result and is refused.
    """
    _require(actor, Permission.LEGACY_CREDIT_WRITE, "move legacy credit")
    account = lock(LegacyAccount, legacy_account.id, "Legacy account")
    profile = lock(Profile, profile.id, "Profile")
    check_legacy_transfer(account, profile)
    amount = account.credit_balance
    entry = _post_credit(profile, amount, CreditKind.LEGACY_TRANSFER, actor=actor,
                         legacy_account=account,
                         memo=f"Legacy credit from account {account.legacy_number}")
    account.credit_balance = 0
    account.transferred_at = utcnow()
    account.transferred_by_id = actor.id if actor is not None else None
    account.transferred_to_id = profile.id
    account.transferred_amount = amount
    db.session.flush()
    audit.record(actor, "legacy_credit.transfer", account,
                 {"amount": amount, "currency": account.currency, "to": profile.email,
                  "entry_id": entry.id})
    return entry
