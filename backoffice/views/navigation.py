"""Where a page sits in the console and where its Back and Cancel go.

- **Breadcrumbs.** Every record page and every operation page shows its trail, e.g.
  "Customers › Acme Ltd › Subscription #49 › Add inventory": a list of ``(label, url)``
  passed to the template as ``breadcrumbs`` and drawn by ``backoffice_base.html`` (the last
  item, the page itself, has no address). :func:`trail` gives a record's trail, written
  once per kind of record (a subscription's starts with its customer's), and
  :func:`then` adds the operation.
- **Back and Cancel.** :func:`return_target` is the console page the staff member came
  from: the ``url`` argument (Flask-Admin's own name for it, carried by list links and by
  the operation forms) or else, for Cancel, the browser's Referer, kept only when it is a
  relative path inside the console (``/admin/...``) of this host; never another host
  (``//evil.example``, ``https://evil.example``) nor another scheme (``javascript:``).
  :func:`came_from` falls back to a page of the caller's choosing (the record's page).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from flask import request, url_for
from flask_admin.helpers import is_safe_url

from ..models import (
    CorporateRequest,
    Customer,
    Invoice,
    LegacyAccount,
    Order,
    Organization,
    Profile,
    Reseller,
    StaffUser,
    Subscription,
    Transaction,
)
from .forms import CONTROL_ANY

#: one step of a trail: its label and address (None for the page itself)
Crumb = tuple[str, str | None]

#: the console's pages live under this path (Flask-Admin's url)
CONSOLE_PATH = "/admin"
#: the longest return address kept (as every other argument of an address)
MAX_RETURN = 2_000


# --------------------------------------------------------------------------- trails


def _list(endpoint: str, label: str) -> Crumb:
    return label, url_for(f"{endpoint}.index_view")


def _record(endpoint: str, record, label: str) -> Crumb:
    return label, url_for(f"{endpoint}.details_view", id=record.id)


def customer_trail(customer: Customer) -> list[Crumb]:
    return [_list("customer", "Customers"), _record("customer", customer, customer.company_name)]


def subscription_trail(subscription: Subscription) -> list[Crumb]:
    return customer_trail(subscription.customer) + [
        _record("subscription", subscription, f"Subscription #{subscription.id}")]


def transaction_trail(transaction: Transaction) -> list[Crumb]:
    return customer_trail(transaction.customer) + [
        ("Transactions & Refunds", url_for("billing.customer_transactions",
                                           customer_id=transaction.customer_id)),
        _record("transaction", transaction, f"Transaction T{transaction.id}")]


def reseller_trail(reseller: Reseller) -> list[Crumb]:
    return [_list("reseller", "Resellers"), _record("reseller", reseller, reseller.company_name)]


def profile_trail(profile: Profile) -> list[Crumb]:
    return [_list("profile", "Profiles"), _record("profile", profile, profile.email)]


def organization_trail(organization: Organization) -> list[Crumb]:
    return [_list("organization", "Organizations"),
            _record("organization", organization, organization.name)]


def order_trail(order: Order) -> list[Crumb]:
    return [_list("order", "Orders"), _record("order", order, f"Order {order.number}")]


def invoice_trail(invoice: Invoice) -> list[Crumb]:
    """A monthly invoice under its customer, a retail one under its order."""
    if invoice.customer is not None:
        start = customer_trail(invoice.customer)
    elif invoice.order is not None:
        start = order_trail(invoice.order)
    else:
        start = [_list("invoice", "Invoices")]
    return start + [(f"Invoice {invoice.number}",
                     url_for("billing.invoice", invoice_id=invoice.id))]


def staff_trail(user: StaffUser) -> list[Crumb]:
    return [_list("staffuser", "Staff"), _record("staffuser", user, user.email)]


def request_trail(corporate_request: CorporateRequest) -> list[Crumb]:
    return [_list("corporaterequest", "Corporate requests"),
            _record("corporaterequest", corporate_request, f"Request #{corporate_request.id}")]


def legacy_trail(account: LegacyAccount) -> list[Crumb]:
    return [_list("legacyaccount", "Legacy accounts"),
            _record("legacyaccount", account, f"Legacy account {account.legacy_number}")]


#: the trail of each kind of record that has its own
TRAILS: dict[type, Callable[..., list[Crumb]]] = {
    Customer: customer_trail,
    Subscription: subscription_trail,
    Transaction: transaction_trail,
    Reseller: reseller_trail,
    Profile: profile_trail,
    Organization: organization_trail,
    Order: order_trail,
    Invoice: invoice_trail,
    StaffUser: staff_trail,
    CorporateRequest: request_trail,
    LegacyAccount: legacy_trail,
}


def trail(record) -> list[Crumb] | None:
    """The breadcrumbs of ``record``'s page, or None for a kind without its own trail."""
    make = TRAILS.get(type(record))
    return make(record) if make is not None else None


def then(crumbs: list[Crumb], *labels: str) -> list[Crumb]:
    """``crumbs`` followed by the pages of an operation (the last is the page itself)."""
    return [*crumbs, *((label, None) for label in labels)]


# --------------------------------------------------------------------------- return addresses


def safe_return(target: str | None) -> str | None:
    """``target`` when it is a console page of this site written as a relative path
    (``/admin/...``, with its query), else None."""
    if not target or len(target) > MAX_RETURN or CONTROL_ANY.search(target) or "\\" in target:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not is_safe_url(target):
        return None
    if parts.path != CONSOLE_PATH and not parts.path.startswith(CONSOLE_PATH + "/"):
        return None
    return target


def _referrer() -> str | None:
    """The Referer as a relative path, when it is a page of this host other than this one."""
    raw = request.referrer
    if not raw or len(raw) > MAX_RETURN:
        return None
    parts = urlsplit(raw)
    if parts.scheme != request.scheme or parts.netloc != request.host:
        return None
    if parts.path == request.path:
        return None
    return safe_return(parts.path + (f"?{parts.query}" if parts.query else ""))


def return_target(*, referrer: bool = True) -> str | None:
    """The console page the staff member came from: ``url`` if it is one, else (with
    ``referrer``) the Referer; None when neither is.

    Record pages take ``url`` only (a list's links carry it, and their tabs pass it on):
    after a Confirm the Referer is the operation's own page, no place to go back to."""
    given = request.values.getlist("url")
    if given:
        return safe_return(given[0]) if len(given) == 1 else None
    return _referrer() if referrer else None


def came_from(default: str) -> str:
    """Where Back or Cancel goes: the page the staff member came from, else ``default``."""
    return return_target() or default


def here() -> str:
    """This page's address as a return address for the links it shows."""
    return request.full_path.rstrip("?")
