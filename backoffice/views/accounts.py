"""Accounts menu: storefront profiles, organizations, requests, legacy credit, orders.

Lists and details are read-only; every change is a custom page behind its own
permission that calls one domain verb of :mod:`backoffice.accounts`. Money operations
show a review first and apply only on Confirm.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request
from flask_admin import expose
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from .. import accounts
from ..errors import DomainError, InvalidInput
from ..extensions import db
from ..models import (
    CorporateRequest,
    CreditEntry,
    LegacyAccount,
    License,
    Order,
    OrderItem,
    Organization,
    Profile,
    RequestStatus,
)
from ..money import to_minor
from ..permissions import Permission
from .base import (
    ReadOnlyModelView,
    fmt_datetime,
    fmt_money,
    link_formatter,
    link_to,
    links_formatter,
    money_column,
    run_domain,
)

CATEGORY = "Accounts"
#: how many rows a search on an operation page offers at most
SEARCH_LIMIT = 20


def _like(text: str) -> str:
    """A case-insensitive LIKE pattern for ``text``, with its wildcards escaped."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def tracking_url(ca_reference: str) -> str:
    """Where the tracking system shows a licence (``TRACKING_URL_TEMPLATE``, ``{ref}``)."""
    return current_app.config["TRACKING_URL_TEMPLATE"].format(ref=ca_reference)


# --------------------------------------------------------------------------- profiles


class ProfileView(ReadOnlyModelView):
    column_list = ("id", "email", "name", "currency", "organization", "org_role",
                   "credit_balance", "created_at")
    column_details_list = ("id", "email", "name", "currency", "organization", "org_role",
                           "linked_at", "credit_balance", "created_at")
    column_searchable_list = ("email", "name")
    column_filters = ("currency", "org_role", "organization.name", "created_at")
    column_sortable_list = ("id", "email", "name", "credit_balance", "created_at")
    column_formatters = {
        "credit_balance": money_column(),
        "organization": link_formatter("organization"),
    }
    column_labels = {"org_role": "Role in organization", "credit_balance": "Prepaid credit"}
    details_template = "accounts/profile_details.html"

    # Helpers for the details template.
    def visible_orders(self, profile: Profile) -> list[Order]:
        return accounts.visible_orders(profile)

    def ledger(self, profile: Profile) -> list[CreditEntry]:
        return list(db.session.scalars(
            select(CreditEntry).where(CreditEntry.profile_id == profile.id)
            .order_by(CreditEntry.id.desc())))

    def _back(self, profile_id: int):
        return redirect(self.get_url(".details_view", id=profile_id), code=303)

    @expose("/upgrade/<int:profile_id>/", methods=("POST",))
    def upgrade_view(self, profile_id):
        """Make an individual profile the main contact of a new organization."""
        self.require(Permission.CORPORATE_WRITE)
        profile = db.get_or_404(Profile, profile_id)
        name = request.form.get("organization_name", "")
        run_domain(lambda: accounts.upgrade_to_corporate(profile, organization_name=name,
                                                         actor=current_user),
                   f"{profile.email} is now the main contact of {name.strip()}.")
        return self._back(profile_id)

    @expose("/link/<int:profile_id>/", methods=("GET", "POST"))
    def link_view(self, profile_id):
        """Search organizations by name, then link the profile as a secondary user."""
        self.require(Permission.CORPORATE_WRITE)
        profile = db.get_or_404(Profile, profile_id)
        if request.method == "POST":
            raw = request.form.get("organization_id", "")
            organization = db.session.get(Organization, int(raw)) if raw.isdigit() else None
            if organization is None:
                flash("Choose an organization from the search results.", "error")
                return redirect(self.get_url(".link_view", profile_id=profile_id), code=303)
            ok, _ = run_domain(
                lambda: accounts.link_profile(organization, profile, actor=current_user),
                f"{profile.email} is linked to {organization.name}.")
            if ok:
                return self._back(profile_id)
            return redirect(self.get_url(".link_view", profile_id=profile_id,
                                         q=organization.name), code=303)
        query = (request.args.get("q") or "").strip()
        results = []
        if query:
            results = list(db.session.scalars(
                select(Organization).where(Organization.name.ilike(_like(query), escape="\\"))
                .order_by(Organization.name, Organization.id).limit(SEARCH_LIMIT)))
        return self.render("accounts/profile_link.html", profile=profile, query=query,
                           results=results)

    @expose("/unlink/<int:profile_id>/", methods=("GET", "POST"))
    def unlink_view(self, profile_id):
        """Take a secondary user out of its organization (admins, with a reason)."""
        self.require(Permission.PROFILE_UNLINK)
        profile = db.get_or_404(Profile, profile_id)
        if request.method == "POST":
            organization = profile.organization
            ok, _ = run_domain(
                lambda: accounts.unlink_profile(profile, reason=request.form.get("reason"),
                                                actor=current_user),
                f"{profile.email} is no longer linked to "
                f"{organization.name if organization else 'an organization'}.")
            if ok:
                return self._back(profile_id)
        return self.render("accounts/profile_unlink.html", profile=profile,
                           reason=request.form.get("reason", ""))

    @expose("/credit/<int:profile_id>/", methods=("GET", "POST"))
    def credit_view(self, profile_id):
        """Add or remove credit with a memo: form, review, then Confirm (finance, admins)."""
        self.require(Permission.CREDIT_ADJUST)
        profile = db.get_or_404(Profile, profile_id)
        form = {"direction": request.form.get("direction", "add"),
                "amount": request.form.get("amount", ""),
                "memo": request.form.get("memo", "")}
        if request.method == "GET":
            return self.render("accounts/credit_adjust.html", profile=profile, form=form)
        try:
            amount = self._signed_amount(profile, form)
            if not form["memo"].strip():
                raise InvalidInput("A credit adjustment needs a memo saying why.")
            if profile.credit_balance + amount < 0:
                balance = fmt_money(profile.credit_balance, profile.currency)
                raise InvalidInput(
                    f"{profile.email} has only {balance} of credit; removing "
                    f"{fmt_money(-amount, profile.currency)} would leave it below zero.")
        except DomainError as exc:
            flash(str(exc), "error")
            return self.render("accounts/credit_adjust.html", profile=profile, form=form), 400
        if request.form.get("step") != "confirm":
            return self.render("accounts/credit_review.html", profile=profile, form=form,
                               amount=amount, new_balance=profile.credit_balance + amount)
        ok, _ = run_domain(
            lambda: accounts.add_credit(profile, amount, memo=form["memo"], actor=current_user),
            f"{'Added' if amount > 0 else 'Removed'} {fmt_money(abs(amount), profile.currency)} "
            f"{'to' if amount > 0 else 'from'} the credit of {profile.email}.")
        if ok:
            return self._back(profile_id)
        return self.render("accounts/credit_adjust.html", profile=profile, form=form), 409

    @staticmethod
    def _signed_amount(profile: Profile, form: dict) -> int:
        if form["direction"] not in ("add", "remove"):
            raise InvalidInput("Choose whether to add or remove credit.")
        amount = to_minor(form["amount"], profile.currency)
        if amount <= 0:
            raise InvalidInput("Enter an amount greater than zero, e.g. 12.50.")
        return amount if form["direction"] == "add" else -amount


# --------------------------------------------------------------------------- organizations


class OrganizationView(ReadOnlyModelView):
    column_list = ("id", "name", "main_contact", "created_at")
    column_details_list = ("id", "name", "main_contact", "members", "financial_terms",
                           "created_at")
    column_searchable_list = ("name",)
    column_filters = ("created_at",)
    column_formatters = {
        "main_contact": link_formatter("profile"),
        "members": links_formatter("profile"),
    }
    column_labels = {"financial_terms": "Agreed financial conditions", "members": "Users"}
    details_template = "accounts/organization_details.html"

    def orders(self, organization: Organization) -> list[Order]:
        return accounts.organization_orders(organization)


# --------------------------------------------------------------------------- corporate requests


class CorporateRequestView(ReadOnlyModelView):
    """The queue of open requests (oldest first); ``?all=1`` shows every request."""

    column_list = ("id", "organization_name", "main_contact_email", "secondary_emails",
                   "status", "created_at", "processed_by", "processed_at")
    column_details_list = ("id", "organization_name", "main_contact_email",
                           "secondary_emails", "status", "created_at", "processed_by",
                           "processed_at", "organization", "outcome")
    column_searchable_list = ("organization_name", "main_contact_email")
    column_filters = ("status", "created_at", "processed_at")
    column_sortable_list = ("id", "organization_name", "main_contact_email", "status",
                            "created_at", "processed_at")
    column_default_sort = ("created_at", False)
    column_formatters = {"organization": link_formatter("organization")}
    column_labels = {"secondary_emails": "Secondary users"}
    list_template = "accounts/request_list.html"
    details_template = "accounts/request_details.html"

    def showing_all(self) -> bool:
        return request.args.get("all") == "1" or any(
            key.startswith("flt") for key in request.args)

    def get_query(self):
        query = super().get_query()
        return query if self.showing_all() else query.filter(
            CorporateRequest.status == RequestStatus.OPEN)

    def get_count_query(self):
        query = super().get_count_query()
        return query if self.showing_all() else query.filter(
            CorporateRequest.status == RequestStatus.OPEN)

    def matches(self, corporate_request: CorporateRequest) -> dict:
        return accounts.request_matches(corporate_request)

    def _back(self, request_id: int):
        return redirect(self.get_url(".details_view", id=request_id), code=303)

    @expose("/enter/", methods=("GET", "POST"))
    def enter_view(self):
        """Enter a customer's request: organization, main contact, secondary emails."""
        self.require(Permission.CORPORATE_WRITE)
        form = {name: request.form.get(name, "") for name in
                ("organization_name", "main_contact_email", "secondary_emails")}
        if request.method == "POST":
            ok, created = run_domain(
                lambda: accounts.submit_corporate_request(
                    organization_name=form["organization_name"],
                    main_contact_email=form["main_contact_email"],
                    secondary_emails=form["secondary_emails"].splitlines(),
                    actor=current_user),
                "The request is in the queue.")
            if ok:
                return self._back(created.id)
            return self.render("accounts/request_enter.html", form=form), 400
        return self.render("accounts/request_enter.html", form=form)

    @expose("/complete/<int:request_id>/", methods=("GET", "POST"))
    def complete_view(self, request_id):
        """Show what completing will do; on Confirm link every matching profile."""
        self.require(Permission.CORPORATE_WRITE)
        corporate_request = db.get_or_404(CorporateRequest, request_id)
        if request.method == "GET":
            if corporate_request.status != RequestStatus.OPEN:
                flash(f"Request #{request_id} is already {corporate_request.status.value}.",
                      "error")
                return redirect(self.get_url(".details_view", id=request_id))
            return self.render("accounts/request_complete.html", req=corporate_request,
                               matches=accounts.request_matches(corporate_request))
        ok, organization = run_domain(
            lambda: accounts.complete_corporate_request(corporate_request, actor=current_user))
        if ok:
            unknown = [e for e in accounts.request_matches(corporate_request)["unknown"]
                       if e != corporate_request.main_contact_email]
            flash(f"Request #{request_id} is completed: {organization.name} has "
                  f"{len(organization.members)} users. A confirmation email to "
                  f"{corporate_request.main_contact_email} is queued.", "success")
            if unknown:
                flash("No profile for these emails; they were not linked: "
                      f"{', '.join(unknown)}.", "warning")
        return self._back(request_id)

    @expose("/reject/<int:request_id>/", methods=("POST",))
    def reject_view(self, request_id):
        """Reject a request with a reason."""
        self.require(Permission.CORPORATE_WRITE)
        corporate_request = db.get_or_404(CorporateRequest, request_id)
        run_domain(lambda: accounts.reject_corporate_request(
            corporate_request, reason=request.form.get("reason"), actor=current_user),
            f"Request #{request_id} is rejected.")
        return self._back(request_id)


# --------------------------------------------------------------------------- legacy credit


def _transfer_state(_view, _context, model: LegacyAccount, _name) -> Markup | str:
    moved_to = model.transferred_to  # set with transferred_at (transfer_complete)
    if model.transferred_at is None or moved_to is None:
        return "waiting" if model.credit_balance > 0 else "nothing to move"
    return Markup("moved {} to {} on {}").format(
        fmt_money(model.transferred_amount, model.currency),
        link_to("profile", moved_to, moved_to.email),
        fmt_datetime(model.transferred_at))


class LegacyAccountView(ReadOnlyModelView):
    column_list = ("id", "legacy_number", "email", "name", "currency", "credit_balance",
                   "transfer_state", "transferred_by")
    column_details_list = ("id", "legacy_number", "email", "name", "currency",
                           "credit_balance", "transfer_state", "transferred_at",
                           "transferred_by", "transferred_to", "transferred_amount")
    column_searchable_list = ("legacy_number", "email", "name")
    column_filters = ("currency", "transferred_at")
    column_sortable_list = ("id", "legacy_number", "email", "credit_balance", "transferred_at")
    column_formatters = {
        "credit_balance": money_column(),
        "transferred_amount": money_column(),
        "transferred_to": link_formatter("profile"),
        "transfer_state": _transfer_state,
    }
    column_labels = {"legacy_number": "Legacy account", "transfer_state": "Transfer"}
    details_template = "accounts/legacy_details.html"

    @expose("/transfer/<int:account_id>/", methods=("GET",))
    def transfer_view(self, account_id):
        """Pick the regular-platform profile that receives the balance (search by email)."""
        self.require(Permission.LEGACY_CREDIT_WRITE)
        account = db.get_or_404(LegacyAccount, account_id)
        if account.transferred_at is not None:
            try:
                accounts.check_legacy_transfer(account, account.transferred_to)
            except DomainError as exc:
                flash(str(exc), "error")
            return redirect(self.get_url(".details_view", id=account_id))
        query = request.args.get("q")
        query = account.email if query is None else query.strip()
        results = []
        if query:
            results = list(db.session.scalars(
                select(Profile).where(Profile.email.ilike(_like(query), escape="\\"))
                .order_by(Profile.email).limit(SEARCH_LIMIT)))
        return self.render("accounts/legacy_transfer.html", account=account, query=query,
                           results=results)

    @expose("/transfer/<int:account_id>/review/", methods=("GET",))
    def transfer_review_view(self, account_id):
        """What will move, from where to whom; Confirm applies it."""
        self.require(Permission.LEGACY_CREDIT_WRITE)
        account = db.get_or_404(LegacyAccount, account_id)
        raw = request.args.get("profile_id", "")
        profile = db.session.get(Profile, int(raw)) if raw.isdigit() else None
        if profile is None:
            flash("Choose the profile that receives the credit.", "error")
            return redirect(self.get_url(".transfer_view", account_id=account_id))
        try:
            accounts.check_legacy_transfer(account, profile)
        except DomainError as exc:
            flash(str(exc), "error")
            if account.transferred_at is not None:
                return redirect(self.get_url(".details_view", id=account_id))
            return redirect(self.get_url(".transfer_view", account_id=account_id))
        return self.render("accounts/legacy_review.html", account=account, profile=profile)

    @expose("/transfer/<int:account_id>/confirm/", methods=("POST",))
    def transfer_confirm_view(self, account_id):
        """Move the balance (once)."""
        self.require(Permission.LEGACY_CREDIT_WRITE)
        account = db.get_or_404(LegacyAccount, account_id)
        raw = request.form.get("profile_id", "")
        profile = db.session.get(Profile, int(raw)) if raw.isdigit() else None
        if profile is None:
            abort(400)
        amount, currency = account.credit_balance, account.currency
        run_domain(lambda: accounts.transfer_legacy_credit(account, profile, actor=current_user),
                   f"Moved {fmt_money(amount, currency)} from legacy account "
                   f"{account.legacy_number} to {profile.email}.")
        return redirect(self.get_url(".details_view", id=account_id), code=303)


# --------------------------------------------------------------------------- orders


class OrderView(ReadOnlyModelView):
    column_list = ("number", "placed_by", "paid_by", "status", "payment_method", "currency",
                   "total", "created_at", "paid_at")
    column_details_list = ("number", "placed_by", "paid_by", "status", "payment_method",
                           "billing", "currency", "total", "invoice", "created_at", "paid_at")
    column_searchable_list = ("number",)
    column_filters = ("status", "payment_method", "currency", "created_at", "paid_at",
                      "placed_by.email", "paid_by.email")
    column_sortable_list = ("number", "status", "total", "created_at", "paid_at")
    column_default_sort = ("created_at", True)
    column_formatters = {
        "total": money_column(),
        "placed_by": link_formatter("profile"),
        "paid_by": link_formatter("profile"),
        "invoice": link_formatter("invoice"),
    }
    column_labels = {"placed_by": "Placed by", "paid_by": "Paid by"}
    details_template = "accounts/order_details.html"

    def tracking_url(self, ca_reference: str) -> str:
        return tracking_url(ca_reference)


class OrderItemView(ReadOnlyModelView):
    column_list = ("id", "order", "certificate_type", "quantity", "unit_price", "amount")
    column_filters = ("certificate_type.code",)
    column_formatters = {
        "order": link_formatter("order"),
        "unit_price": money_column("order.currency"),
        "amount": money_column("order.currency"),
    }


def _tracking_link(_view, _context, model: License, _name) -> Markup:
    return Markup('<a href="{}" target="_blank" rel="noopener">{}</a>').format(
        tracking_url(model.ca_reference), model.ca_reference)


class LicenseView(ReadOnlyModelView):
    column_list = ("ca_reference", "kind", "order_item.order", "acme_directory_url",
                   "eab_key_id", "created_at")
    column_searchable_list = ("ca_reference",)
    column_filters = ("kind", "created_at")
    column_formatters = {"ca_reference": _tracking_link}
    column_labels = {"ca_reference": "CA Reference", "order_item.order": "Order",
                     "eab_key_id": "EAB key id", "acme_directory_url": "ACME directory URL"}


class CreditEntryView(ReadOnlyModelView):
    column_list = ("id", "profile", "kind", "amount", "balance_after", "order",
                   "legacy_account", "actor", "memo", "created_at")
    column_filters = ("kind", "created_at", "profile.email")
    column_searchable_list = ("memo",)
    column_formatters = {
        "amount": money_column("profile.currency"),
        "balance_after": money_column("profile.currency"),
        "profile": link_formatter("profile"),
        "order": link_formatter("order"),
    }


def register(admin, db) -> None:
    """Add the Accounts menu to the console."""
    admin.add_view(ProfileView(Profile, db, name="Profiles", category=CATEGORY))
    admin.add_view(OrganizationView(Organization, db, name="Organizations", category=CATEGORY))
    admin.add_view(CorporateRequestView(CorporateRequest, db, name="Corporate requests",
                                        category=CATEGORY))
    admin.add_view(LegacyAccountView(LegacyAccount, db, name="Legacy accounts",
                                     category=CATEGORY))
    admin.add_view(OrderView(Order, db, name="Orders", category=CATEGORY))
    admin.add_view(OrderItemView(OrderItem, db, name="Order items", category=CATEGORY))
    admin.add_view(LicenseView(License, db, name="Licenses", category=CATEGORY))
    admin.add_view(CreditEntryView(CreditEntry, db, name="Credit ledger", category=CATEGORY))
