"""Accounts menu: storefront profiles, organizations, requests, legacy credit, orders.

Lists and details are read-only; every change is a custom page behind its own
permission that calls one domain verb of :mod:`backoffice.accounts`. Every change of
credit or of an account's structure (credit adjustments, legacy transfers, completing a
request, upgrade, link, unlink) shows the domain's review first and applies only on
Confirm, through the one mechanism of :mod:`.review`. Entering and rejecting a request
are plain forms.
"""

from __future__ import annotations

from flask import current_app, flash, redirect, request
from flask_admin import expose
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import EmailField, RadioField, SelectChoice, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, InputRequired, Length, ValidationError
from wtforms.widgets import HiddenInput

from .. import accounts
from ..errors import DomainError
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
from ..permissions import Permission
from ..validation import normalize_email
from .base import (
    DATA_CATEGORY,
    DataTableView,
    ReadOnlyModelView,
    fmt_datetime,
    fmt_money,
    link_formatter,
    link_to,
    links_formatter,
    money_column,
    name_formatter,
    run_domain,
)
from .forms import (
    MAX_ROW_ID,
    ConsoleForm,
    MoneyField,
    ReviewForm,
    WholeNumberField,
    has_control_characters,
)
from .navigation import (
    came_from,
    legacy_trail,
    profile_trail,
    request_trail,
    return_target,
    then,
)
from .paging import RowsPage, SortKey, record_rows
from .review import Operation, review_confirm

CATEGORY = "Accounts"
#: orders on a profile's or an organization's page: newest first, 50 a page
NEWEST_ORDERS = SortKey.of("created_at", Order.created_at, Order.id, True)
ORDER_LOADS = (selectinload(Order.placed_by), selectinload(Order.paid_by))
#: a profile's ledger on its page: newest first, 50 a page
NEWEST_ENTRIES = SortKey.of("created_at", CreditEntry.created_at, CreditEntry.id, True)
#: how many rows a search on an operation page offers at most
SEARCH_LIMIT = 20
#: the longest search text (an email address, ``profile.email``)
MAX_SEARCH = 254


def _like(text: str) -> str:
    """A case-insensitive LIKE pattern for ``text``, with its wildcards escaped."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def tracking_url(ca_reference: str) -> str:
    """Where the tracking system shows a licence (``TRACKING_URL_TEMPLATE``, ``{ref}``)."""
    return current_app.config["TRACKING_URL_TEMPLATE"].format(ref=ca_reference)


def _search_text(raw: str | None, default: str = "") -> str:
    """The ``q`` of a search on an operation page, stripped; "" (with a flash) when it
    cannot be searched for."""
    if raw is None:
        return default
    text = raw.strip()
    if has_control_characters(text):
        flash("Remove the control characters (such as NUL) from the search.", "error")
        return ""
    if len(text) > MAX_SEARCH:
        flash(f"Search for at most {MAX_SEARCH} characters.", "error")
        return ""
    return text


# --------------------------------------------------------------------------- forms


DIRECTION_CHOICES = [SelectChoice("add", "Add credit"), SelectChoice("remove", "Remove credit")]


class CreditForm(ReviewForm):
    """A staff credit adjustment: add or remove an amount, with a memo."""

    direction = RadioField("Direction", choices=DIRECTION_CHOICES, default="add",
                           validators=[InputRequired(
                               message="Choose whether to add or remove credit.")],
                           invalid_choice_message="Choose whether to add or remove credit.")
    amount = MoneyField("Amount", maximum=accounts.MAX_CREDIT_ADJUSTMENT)
    memo = StringField("Memo (why)", validators=[
        DataRequired(message="A credit adjustment needs a memo saying why."),
        Length(max=accounts.MAX_MEMO_LENGTH)])

    def signed_amount(self) -> int:
        """The amount in minor units: negative when removing."""
        return self.amount.data if self.direction.data == "add" else -self.amount.data


class UpgradeForm(ReviewForm):
    organization_name = StringField("Organization name", validators=[
        DataRequired(message="Give the organization a name."),
        Length(max=accounts.MAX_ORGANIZATION_NAME)])


class LinkForm(ReviewForm):
    """The organization chosen from the search results."""

    organization_id = WholeNumberField("Organization", minimum=1, maximum=MAX_ROW_ID,
                                       blank=None, widget=HiddenInput())


class UnlinkForm(ReviewForm):
    reason = TextAreaField("Reason (kept in the audit log)", validators=[
        DataRequired(message="Unlinking needs a reason."),
        Length(max=accounts.MAX_REASON_LENGTH)])


def _email_lines(_form, field) -> None:
    """One valid email address per line (blank lines ignored), at most
    MAX_SECONDARY_EMAILS of them."""
    lines = [(number, line.strip()) for number, line in
             enumerate((field.data or "").splitlines(), start=1) if line.strip()]
    if len(lines) > accounts.MAX_SECONDARY_EMAILS:
        raise ValidationError(f"List at most {accounts.MAX_SECONDARY_EMAILS} secondary emails; "
                              f"there are {len(lines)}.")
    problems = []
    for number, line in lines:
        if len(line) > 254:
            problems.append(f"line {number} is longer than an email address can be")
            continue
        try:
            normalize_email(line)
        except DomainError:
            problems.append(f"line {number}, '{line}', is not a valid email address")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValidationError("Check the secondary emails: " + "; ".join(problems[:5])
                              + more + ".")


class RequestForm(ConsoleForm):
    """A corporate request as a customer sends it."""

    organization_name = StringField("Organization name", validators=[
        DataRequired(message="The request needs an organization name."),
        Length(max=accounts.MAX_ORGANIZATION_NAME)])
    main_contact_email = EmailField("Main contact email", validators=[
        DataRequired(message="The request needs the main contact's email."),
        Length(max=254), Email(message="Enter a valid email address, e.g. it@acme.example.com.")])
    secondary_emails = TextAreaField(
        "Secondary emails (one per line)",
        validators=[Length(max=accounts.MAX_SECONDARY_EMAILS * 256), _email_lines],
        description=f"At most {accounts.MAX_SECONDARY_EMAILS}; the main contact and "
                    "duplicates are left out.")

    def secondary_list(self) -> list[str]:
        return [line for line in (self.secondary_emails.data or "").splitlines()
                if line.strip()]


class RejectForm(ConsoleForm):
    reason = TextAreaField("Reason", validators=[
        DataRequired(message="Rejecting a request needs a reason."),
        Length(max=accounts.MAX_REASON_LENGTH)])


class CompleteForm(ReviewForm):
    """Completing a request takes no inputs: the review is of the request as it is."""


class LegacyTransferForm(ReviewForm):
    """The profile chosen from the search results."""

    profile_id = WholeNumberField("Profile", minimum=1, maximum=MAX_ROW_ID, blank=None,
                                  widget=HiddenInput())


# --------------------------------------------------------------------------- profiles


def order_rows(orders_of, *, url) -> RowsPage:
    """One page of the orders a profile or an organization sees (``orders_of(**page)``,
    see :func:`backoffice.accounts.orders_of`), with who placed and paid each."""

    def fetch(condition, order_by, limit, _offset):
        return orders_of(where=condition, order_by=order_by, limit=limit, options=ORDER_LOADS)

    return record_rows(fetch, NEWEST_ORDERS, prefix="orders", url=url, anchor="orders")


class ProfileView(ReadOnlyModelView):
    column_list = ("id", "email", "name", "currency", "organization", "org_role",
                   "credit_balance", "created_at")
    column_details_list = ("id", "email", "name", "currency", "organization", "org_role",
                           "linked_at", "credit_balance", "created_at")
    column_searchable_list = ("email", "name")
    column_exact_search = ("email",)
    column_filters = ("currency", "org_role", "organization.name", "created_at")
    column_sortable_list = ("id", "email", "name", "created_at")
    column_formatters = {
        "email": name_formatter("profile"),
        "name": name_formatter("profile"),
        "credit_balance": money_column(),
        "organization": link_formatter("organization"),
    }
    column_labels = {"org_role": "Role in organization", "credit_balance": "Prepaid credit"}
    details_template = "accounts/profile_details.html"

    column_details_loads = ("organization",)

    # Helpers for the details template: one page of each list.
    def visible_orders(self, profile: Profile) -> RowsPage:
        return order_rows(lambda **page: accounts.visible_orders(profile, **page),
                          url=self._details_page)

    def ledger(self, profile: Profile) -> RowsPage:
        return record_rows(
            select(CreditEntry).where(CreditEntry.profile_id == profile.id)
            .options(selectinload(CreditEntry.order), selectinload(CreditEntry.actor)),
            NEWEST_ENTRIES, prefix="ledger", url=self._details_page, anchor="ledger")

    def _details_page(self, **args) -> str:
        return self.get_url(".details_view", **args)

    def render(self, template, **kwargs):
        if template == self.details_template and "model" in kwargs:
            kwargs["upgrade_form"] = UpgradeForm(formdata=None)
        return super().render(template, **kwargs)

    def _details_url(self, profile_id: int) -> str:
        return self.get_url(".details_view", id=profile_id)

    @expose("/upgrade/<int:profile_id>/", methods=("GET", "POST"))
    def upgrade_view(self, profile_id):
        """Make an individual profile the main contact of a new organization: name,
        review, Confirm."""
        self.require(Permission.CORPORATE_WRITE)
        profile = db.get_or_404(Profile, profile_id)
        form = UpgradeForm()
        details_url = self._details_url(profile_id)
        cancel_url = came_from(details_url)
        crumbs = then(profile_trail(profile), "Upgrade to corporate")

        def show_form():
            return self.render("accounts/profile_upgrade.html", profile=profile, form=form,
                               cancel_url=cancel_url, breadcrumbs=crumbs)

        if not form.validate_on_submit():
            return show_form()
        name = form.organization_name.data
        operation = Operation(
            name="organization.upgrade", target=f"profile:{profile.id}",
            review=lambda: accounts.review_upgrade(profile, organization_name=name),
            apply=lambda review: accounts.upgrade_to_corporate(
                profile, organization_name=review.organization_name, actor=current_user),
            landing=lambda _organization: details_url,
            done=lambda organization: f"{profile.email} is now the main contact of "
                                      f"{organization.name}.")

        def show_review(review, token):
            return self.render("accounts/profile_upgrade_review.html", review=review,
                               form=form, token=token, back_url=cancel_url,
                               breadcrumbs=crumbs)

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)

    @expose("/link/<int:profile_id>/", methods=("GET", "POST"))
    def link_view(self, profile_id):
        """Search organizations by name, review the link, Confirm: the profile becomes a
        secondary user."""
        self.require(Permission.CORPORATE_WRITE)
        profile = db.get_or_404(Profile, profile_id)
        form = LinkForm()
        details_url = self._details_url(profile_id)
        cancel_url = came_from(details_url)
        crumbs = then(profile_trail(profile), "Link to organization")
        query = _search_text(request.args.get("q"))

        def show_form():
            results = []
            if query:
                results = list(db.session.scalars(
                    select(Organization)
                    .where(Organization.name.ilike(_like(query), escape="\\"))
                    .order_by(Organization.name, Organization.id).limit(SEARCH_LIMIT)))
            return self.render("accounts/profile_link.html", profile=profile, query=query,
                               results=results, form=form, cancel_url=cancel_url,
                               breadcrumbs=crumbs)

        if not form.validate_on_submit():
            if form.is_submitted():
                flash("Choose an organization from the search results.", "error")
            return show_form()
        organization = db.session.get(Organization, form.organization_id.data)
        if organization is None:
            flash("That organization no longer exists; search again.", "error")
            return show_form()
        operation = Operation(
            name="organization.link", target=f"profile:{profile.id}",
            review=lambda: accounts.review_link(organization, profile),
            apply=lambda _review: accounts.link_profile(organization, profile,
                                                        actor=current_user),
            landing=lambda _result: details_url,
            done=f"{profile.email} is linked to {organization.name}.")

        def show_review(review, token):
            return self.render("accounts/profile_link_review.html", review=review, form=form,
                               token=token, breadcrumbs=crumbs, back_url=self.get_url(
                                   ".link_view", profile_id=profile_id, q=query or None,
                                   url=return_target()))

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)

    @expose("/unlink/<int:profile_id>/", methods=("GET", "POST"))
    def unlink_view(self, profile_id):
        """Take a secondary user out of its organization (admins, with a reason): reason,
        review, Confirm."""
        self.require(Permission.PROFILE_UNLINK)
        profile = db.get_or_404(Profile, profile_id)
        form = UnlinkForm()
        details_url = self._details_url(profile_id)
        cancel_url = came_from(details_url)
        crumbs = then(profile_trail(profile), "Unlink")

        def show_form():
            return self.render("accounts/profile_unlink.html", profile=profile, form=form,
                               cancel_url=cancel_url, breadcrumbs=crumbs)

        if not form.validate_on_submit():
            return show_form()
        reason = form.reason.data
        operation = Operation(
            name="organization.unlink", target=f"profile:{profile.id}",
            review=lambda: accounts.review_unlink(profile, reason=reason),
            apply=lambda review: _unlinked(profile, review),
            landing=lambda _review: details_url,
            done=lambda review: f"{profile.email} is no longer linked to "
                                f"{review.organization.name}.")

        def show_review(review, token):
            return self.render("accounts/profile_unlink_review.html", review=review,
                               form=form, token=token, back_url=cancel_url,
                               breadcrumbs=crumbs)

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)

    @expose("/credit/<int:profile_id>/", methods=("GET", "POST"))
    def credit_view(self, profile_id):
        """Add or remove credit with a memo: form, review, then Confirm (finance, admins)."""
        self.require(Permission.CREDIT_ADJUST)
        profile = db.get_or_404(Profile, profile_id)
        form = CreditForm()
        form.amount.currency = profile.currency
        details_url = self._details_url(profile_id)
        cancel_url = came_from(details_url)
        crumbs = then(profile_trail(profile), "Adjust credit")

        def show_form():
            return self.render("accounts/credit_adjust.html", profile=profile, form=form,
                               cancel_url=cancel_url, breadcrumbs=crumbs)

        if not form.validate_on_submit():
            return show_form()
        amount, memo = form.signed_amount(), form.memo.data
        operation = Operation(
            name="credit.adjust", target=f"profile:{profile.id}",
            review=lambda: accounts.quote_credit_adjustment(profile, amount, memo=memo),
            apply=lambda quote: accounts.add_credit(
                profile, quote.amount, memo=quote.memo, actor=current_user,
                expected_balance=quote.balance_before),
            landing=lambda _entry: details_url,
            done=lambda entry: (
                f"{'Added' if entry.amount > 0 else 'Removed'} "
                f"{fmt_money(abs(entry.amount), profile.currency)} "
                f"{'to' if entry.amount > 0 else 'from'} the credit of {profile.email}; "
                f"the balance is now {fmt_money(entry.balance_after, profile.currency)}."))

        def show_review(quote, token):
            return self.render("accounts/credit_review.html", quote=quote, form=form,
                               token=token, back_url=cancel_url, breadcrumbs=crumbs)

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)


def _unlinked(profile: Profile, review: accounts.UnlinkReview) -> accounts.UnlinkReview:
    accounts.unlink_profile(profile, reason=review.reason, actor=current_user)
    return review


# --------------------------------------------------------------------------- organizations


class OrganizationView(ReadOnlyModelView):
    column_list = ("id", "name", "main_profile", "created_at")
    column_details_list = ("id", "name", "main_contact", "members", "financial_terms",
                           "created_at")
    column_searchable_list = ("name",)
    column_filters = ("created_at",)
    column_sortable_list = ("id", "name")
    column_formatters = {
        "name": name_formatter("organization"),
        "main_contact": link_formatter("profile"),
        "main_profile": link_formatter("profile"),
        "members": links_formatter("profile"),
    }
    column_labels = {"financial_terms": "Agreed financial conditions", "members": "Users",
                     "main_profile": "Main contact"}
    details_template = "accounts/organization_details.html"

    column_details_loads = ("main_profile",)

    def orders(self, organization: Organization) -> RowsPage:
        return order_rows(lambda **page: accounts.organization_orders(organization, **page),
                          url=lambda **args: self.get_url(".details_view", **args))


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
    column_sortable_list = ("id", "main_contact_email", "created_at")
    column_default_sort = ("created_at", False)
    column_formatters = {"organization_name": name_formatter("corporaterequest"),
                         "organization": link_formatter("organization")}
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

    def matches(self, corporate_request: CorporateRequest) -> dict:
        return accounts.request_matches(corporate_request)

    def completion_blocker(self, corporate_request: CorporateRequest) -> str | None:
        """Why the request cannot be completed as it stands (no profile for the main
        contact, a profile in another organization...), or None when it can."""
        try:
            accounts.quote_corporate_request_completion(corporate_request)
        except DomainError as refusal:
            return str(refusal)
        return None

    def render(self, template, **kwargs):
        if template == self.details_template and "model" in kwargs:
            kwargs.setdefault("reject_form", RejectForm(formdata=None))
        return super().render(template, **kwargs)

    def _details_url(self, request_id: int) -> str:
        return self.get_url(".details_view", id=request_id)

    @expose("/enter/", methods=("GET", "POST"))
    def enter_view(self):
        """Enter a customer's request: organization, main contact, secondary emails."""
        self.require(Permission.CORPORATE_WRITE)
        form = RequestForm()
        if form.validate_on_submit():
            ok, created = run_domain(
                lambda: accounts.submit_corporate_request(
                    organization_name=form.organization_name.data,
                    main_contact_email=form.main_contact_email.data,
                    secondary_emails=form.secondary_list(), actor=current_user),
                "The request is in the queue.")
            if ok:
                return redirect(self._details_url(created.id), code=303)
        return self.render("accounts/request_enter.html", form=form,
                           cancel_url=came_from(self.get_url(".index_view")),
                           breadcrumbs=[(self.name, self.get_url(".index_view")),
                                        ("Enter a request", None)])

    @expose("/complete/<int:request_id>/", methods=("GET", "POST"))
    def complete_view(self, request_id):
        """The review of what completing will do (this page), then Confirm."""
        self.require(Permission.CORPORATE_WRITE)
        corporate_request = db.get_or_404(CorporateRequest, request_id)
        form = CompleteForm()
        details_url = self._details_url(request_id)

        def show_form():
            # The request's page says why (the flash) and what can be done instead.
            return redirect(details_url, code=303)

        if request.method == "POST" and not form.validate_on_submit():
            flash("Nothing was applied: this page had expired. Check the review and "
                  "confirm again.", "warning")
            return redirect(self.get_url(".complete_view", request_id=request_id), code=303)
        operation = Operation(
            name="corporate_request.complete", target=f"corporate_request:{request_id}",
            review=lambda: accounts.quote_corporate_request_completion(corporate_request),
            apply=lambda quote: (accounts.complete_corporate_request(
                corporate_request, actor=current_user), quote),
            landing=lambda _result: details_url,
            done=lambda result: _completed(corporate_request, *result))

        def show_review(quote, token):
            return self.render("accounts/request_complete.html", req=corporate_request,
                               quote=quote, matches=accounts.request_matches(corporate_request),
                               form=form, token=token, back_url=came_from(details_url),
                               breadcrumbs=then(request_trail(corporate_request), "Complete"))

        # The GET is the review: completing takes no inputs.
        return review_confirm(operation, form, show_form=show_form, show_review=show_review)

    @expose("/reject/<int:request_id>/", methods=("GET", "POST"))
    def reject_view(self, request_id):
        """Reject a request with a reason."""
        self.require(Permission.CORPORATE_WRITE)
        corporate_request = db.get_or_404(CorporateRequest, request_id)
        form = RejectForm()
        if form.validate_on_submit():
            ok, _ = run_domain(lambda: accounts.reject_corporate_request(
                corporate_request, reason=form.reason.data, actor=current_user),
                f"Request #{request_id} is rejected.")
            if ok:
                return redirect(self._details_url(request_id), code=303)
        return self.render("accounts/request_reject.html", req=corporate_request, form=form,
                           cancel_url=came_from(self._details_url(request_id)),
                           breadcrumbs=then(request_trail(corporate_request), "Reject"))


def _completed(corporate_request: CorporateRequest, organization: Organization,
               quote: accounts.RequestCompletionQuote) -> str:
    """The success message of a completion; the emails left out are flashed as a warning."""
    if quote.unknown:
        flash("No profile for these emails; they were not linked: "
              f"{', '.join(quote.unknown)}.", "warning")
    return (f"Request #{corporate_request.id} is completed: {organization.name} has "
            f"{len(organization.members)} users. A confirmation email to "
            f"{corporate_request.main_contact_email} is queued.")


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
    column_exact_search = ("legacy_number",)
    column_filters = ("currency", "transferred_at")
    column_sortable_list = ("id", "legacy_number", "email")
    column_list_loads = ("transferred_to",)
    column_formatters = {
        "legacy_number": name_formatter("legacyaccount"),
        "credit_balance": money_column(),
        "transferred_amount": money_column(),
        "transferred_to": link_formatter("profile"),
        "transfer_state": _transfer_state,
    }
    column_labels = {"legacy_number": "Legacy account", "transfer_state": "Transfer"}
    details_template = "accounts/legacy_details.html"

    @expose("/transfer/<int:account_id>/", methods=("GET", "POST"))
    def transfer_view(self, account_id):
        """Find the regular-platform profile by email, review what moves, Confirm (once)."""
        self.require(Permission.LEGACY_CREDIT_WRITE)
        account = db.get_or_404(LegacyAccount, account_id)
        details_url = self.get_url(".details_view", id=account_id)
        cancel_url = came_from(details_url)
        crumbs = then(legacy_trail(account), "Transfer credit")
        form = LegacyTransferForm()
        query = _search_text(request.args.get("q"), default=account.email)

        def show_form():
            if account.transferred_at is not None:
                return redirect(details_url, code=303)
            results = []
            if query:
                results = list(db.session.scalars(
                    select(Profile).where(Profile.email.ilike(_like(query), escape="\\"))
                    .order_by(Profile.email).limit(SEARCH_LIMIT)))
            return self.render("accounts/legacy_transfer.html", account=account, query=query,
                               results=results, form=form, cancel_url=cancel_url,
                               breadcrumbs=crumbs)

        if request.method == "GET" and account.transferred_at is not None:
            try:
                accounts.check_legacy_transfer(account, account.transferred_to)
            except DomainError as exc:
                flash(str(exc), "error")
            return redirect(details_url, code=303)
        if not form.validate_on_submit():
            if form.is_submitted():
                flash("Choose the profile that receives the credit from the search results.",
                      "error")
            return show_form()
        profile = db.session.get(Profile, form.profile_id.data)
        if profile is None:
            flash("That profile no longer exists; search again.", "error")
            return show_form()
        operation = Operation(
            name="legacy_credit.transfer", target=f"legacy_account:{account.id}",
            review=lambda: accounts.quote_legacy_transfer(account, profile),
            apply=lambda _quote: accounts.transfer_legacy_credit(account, profile,
                                                                 actor=current_user),
            landing=lambda _entry: details_url,
            done=lambda entry: f"Moved {fmt_money(entry.amount, account.currency)} from legacy "
                               f"account {account.legacy_number} to {profile.email}.")

        def show_review(quote, token):
            return self.render("accounts/legacy_review.html", quote=quote, form=form,
                               token=token, breadcrumbs=crumbs, back_url=self.get_url(
                                   ".transfer_view", account_id=account_id, q=query or None,
                                   url=return_target()))

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)


# --------------------------------------------------------------------------- orders


class OrderView(ReadOnlyModelView):
    column_list = ("number", "placed_by", "paid_by", "status", "payment_method", "currency",
                   "total", "created_at", "paid_at")
    column_details_list = ("number", "placed_by", "paid_by", "status", "payment_method",
                           "billing", "currency", "total", "invoice", "created_at", "paid_at")
    column_searchable_list = ("number",)
    column_exact_search = ("number",)
    column_filters = ("status", "payment_method", "currency", "created_at", "paid_at",
                      "placed_by.email", "paid_by.email")
    column_sortable_list = ("number", "created_at")
    column_default_sort = ("created_at", True)
    column_formatters = {
        "number": name_formatter("order"),
        "total": money_column(),
        "placed_by": link_formatter("profile"),
        "paid_by": link_formatter("profile"),
        "invoice": link_formatter("invoice"),
    }
    column_labels = {"placed_by": "Placed by", "paid_by": "Paid by"}
    details_template = "accounts/order_details.html"

    def tracking_url(self, ca_reference: str) -> str:
        return tracking_url(ca_reference)


class OrderItemView(DataTableView):
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
    column_exact_search = ("ca_reference",)
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
    admin.add_view(OrderItemView(OrderItem, db, name="Order items", category=DATA_CATEGORY))
    admin.add_view(LicenseView(License, db, name="Licenses", category=CATEGORY))
    admin.add_view(CreditEntryView(CreditEntry, db, name="Credit ledger", category=CATEGORY))
