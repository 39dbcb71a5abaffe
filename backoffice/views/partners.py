"""Partners menu: resellers, customers, their subscriptions and inventory.

Every operation that charges, changes inventory or changes a status shows a review first
and applies only on Confirm, through the one mechanism of ``views/review.py``: new
subscriptions and inventory additions (a quote), renewal inventory, suspend and enable a
subscription, disable and enable a reseller (a status change, ``status_review.html``).
"""

from __future__ import annotations

from urllib.parse import urlencode

import pycountry
from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_admin.helpers import get_redirect_target
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import (
    BooleanField,
    EmailField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    Email,
    InputRequired,
    Length,
    Optional,
    ValidationError,
)

from .. import partners, subscriptions
from ..clock import today
from ..extensions import db
from ..models import (
    Customer,
    CustomerAdmin,
    Inventory,
    Reseller,
    ResellerStatus,
    Subscription,
    SubscriptionProduct,
    SubscriptionTerm,
    Transaction,
)
from ..permissions import Permission
from .base import (
    DATA_CATEGORY,
    DataTableView,
    DomainModelView,
    ReadOnlyModelView,
    link_formatter,
    links_formatter,
    name_formatter,
)
from .finance import customer_transactions_url, refund_states, transaction_rows
from .forms import MAX_ROW_ID, ConsoleForm, DayField, ReviewForm, quantities, quantity_form
from .navigation import (
    came_from,
    customer_trail,
    reseller_trail,
    return_target,
    subscription_trail,
    then,
)
from .paging import SortKey, capped_count, record_rows
from .review import Operation, review_confirm

CATEGORY = "Partners"

#: the tabs of a customer's page
CUSTOMER_TABS = ("details", "subscriptions", "transactions")
#: a customer's subscriptions: oldest first, 50 a page, each with product and inventory
SUBSCRIPTIONS_BY_ID = SortKey.of("id", Subscription.id, Subscription.id, False)
SUBSCRIPTION_LOADS = (
    selectinload(Subscription.product),
    selectinload(Subscription.inventory).selectinload(Inventory.certificate_type),
)

#: an id in a page's URL: a whole number an id column can hold, so a larger one is a 404
#: rather than a database error
ID = f"int(max={MAX_ROW_ID})"

COUNTRY_CHOICES = [SelectChoice("", "Choose a country")] + sorted(
    (SelectChoice(c.alpha_2, c.name) for c in pycountry.countries),
    key=lambda choice: choice.label)
CURRENCY_CHOICES = [SelectChoice(code) for code in ("USD", "EUR", "GBP")]
RESPONSIBILITY_CHOICES = [SelectChoice("partner", "Partner administered"),
                          SelectChoice("customer", "Customer administered")]


class SubscriptionForm(ReviewForm):
    """Term, start date and auto-renew of a new subscription; the quantities are added per
    product by :func:`~.forms.quantity_form`."""

    term_months = SelectField("Term", coerce=int, choices=[],
                              validators=[InputRequired(message="Choose a term.")],
                              invalid_value_message="Choose one of the product's terms.",
                              invalid_choice_message="Choose one of the product's terms.")
    start_date = DayField(
        "Start date", validators=[Optional()],
        description="Today, or backdated as long as a day of the term is left; the charge "
                    "is then prorated by days.")
    auto_renew = BooleanField("Auto-renew")


class InventoryForm(ReviewForm):
    """Certificates added to a subscription's current inventory (quantities per type)."""


class RenewalInventoryForm(ReviewForm):
    """What the next term holds, per certificate type (quantities per type)."""


class StatusChangeForm(ReviewForm):
    """A status change with nothing to type: its review is the page itself."""


class ResellerDisableForm(ReviewForm):
    reason = TextAreaField(
        "Reason", render_kw={"rows": 3},
        validators=[DataRequired(message="Disabling a reseller needs a reason."),
                    Length(max=partners.REASON_MAX_LENGTH)],
        description="Required. Kept with the reseller, shown on its page and in the audit log.")


class AddressForm(ConsoleForm):
    company_name = StringField("Company name", validators=[DataRequired(), Length(max=200)])
    address1 = StringField("Address 1", validators=[DataRequired(), Length(max=200)])
    address2 = StringField("Address 2", validators=[Optional(), Length(max=200)])
    address3 = StringField("Address 3", validators=[Optional(), Length(max=200)])
    city = StringField("City", validators=[DataRequired(), Length(max=100)])
    postal_code = StringField("Postal code", validators=[DataRequired(), Length(max=20)])
    state = StringField("State / province", validators=[Optional(), Length(max=100)])
    country = SelectField("Country", choices=COUNTRY_CHOICES,
                          validators=[DataRequired(message="Choose a country.")])

    def address(self) -> dict:
        return {name: getattr(self, name).data or "" for name in partners.ADDRESS_FIELDS
                + ("country",)}


# --------------------------------------------------------------------------- resellers


class ResellerView(DomainModelView):
    write_permission = Permission.RESELLER_WRITE
    allow_create = True
    allow_edit = True
    column_list = ("id", "company_name", "city", "country", "status", "status_changed_at",
                   "created_at")
    column_details_list = ("id", "company_name", "address1", "address2", "address3", "city",
                           "postal_code", "state", "country", "status", "status_reason",
                           "status_changed_by", "status_changed_at", "customers", "created_at")
    column_searchable_list = ("company_name", "city")
    column_filters = ("status", "country", "created_at")
    column_sortable_list = ("id", "company_name")
    column_formatters = {"company_name": name_formatter("reseller"),
                         "customers": links_formatter("customer")}
    column_labels = {"status_reason": "Reason"}
    details_template = "partners/reseller_details.html"

    create_form_class = AddressForm
    edit_form_class = AddressForm

    def create_from_form(self, form):
        return partners.create_reseller(**form.address(), actor=current_user)

    def update_from_form(self, form, model):
        return partners.update_reseller(model, **form.address(), actor=current_user)

    def _details_url(self, reseller_id: int) -> str:
        return self.get_url(".details_view", id=reseller_id)

    @expose(f"/disable/<{ID}:reseller_id>/", methods=("GET", "POST"))
    def disable_view(self, reseller_id):
        """Show what disabling stops and ask for a reason, review, Confirm (admins)."""
        self.require(Permission.RESELLER_STATUS)
        reseller = db.get_or_404(Reseller, reseller_id)
        details_url = self._details_url(reseller_id)
        cancel_url = came_from(details_url)
        crumbs = then(reseller_trail(reseller), "Disable")
        form = ResellerDisableForm()

        def show_form():
            return self.render("partners/reseller_disable.html", reseller=reseller, form=form,
                               impact=partners.reseller_impact(reseller),
                               cancel_url=cancel_url, breadcrumbs=crumbs)

        if not form.validate_on_submit():
            return show_form()
        reason = form.reason.data
        operation = Operation(
            name="reseller.disable", target=f"reseller:{reseller.id}",
            review=lambda: partners.review_disable_reseller(reseller, reason),
            apply=lambda _review: partners.disable_reseller(reseller, reason=reason,
                                                            actor=current_user),
            landing=lambda _result: details_url,
            done=f"{reseller.company_name} is disabled.")
        return status_change(self, operation, form, show_form=show_form,
                             title=f"Review: disable {reseller.company_name}",
                             confirm_label="Disable reseller", button_class="btn-danger",
                             back_url=cancel_url, breadcrumbs=crumbs)

    @expose(f"/enable/<{ID}:reseller_id>/", methods=("GET", "POST"))
    def enable_view(self, reseller_id):
        """Review what enabling a disabled reseller restores, then Confirm (admins)."""
        self.require(Permission.RESELLER_STATUS)
        reseller = db.get_or_404(Reseller, reseller_id)
        details_url = self._details_url(reseller_id)
        operation = Operation(
            name="reseller.enable", target=f"reseller:{reseller.id}",
            review=lambda: partners.review_enable_reseller(reseller),
            apply=lambda _review: partners.enable_reseller(reseller, actor=current_user),
            landing=lambda _result: details_url,
            done=f"{reseller.company_name} is active again.")
        return status_change(self, operation, StatusChangeForm(),
                             title=f"Review: enable {reseller.company_name}",
                             confirm_label="Enable reseller", button_class="btn-success",
                             back_url=came_from(details_url),
                             breadcrumbs=then(reseller_trail(reseller), "Enable"))


def status_change(view, operation: Operation, form: ReviewForm, *, title: str,
                  confirm_label: str, back_url: str, breadcrumbs: list,
                  button_class: str = "btn-primary", show_form=None):
    """The page of a reviewed status change (``partners/status_review.html``).

    Without ``show_form`` there is nothing to type: a GET shows the review with its
    Confirm at once, and a refusal goes back to ``back_url`` with the domain's sentence.
    """
    if show_form is None:
        if request.method == "POST" and not form.validate_on_submit():
            flash("This confirmation was not sent as expected; nothing was changed. Here "
                  "is the review again.", "warning")
            return redirect(request.path, code=303)

        def show_form():
            return redirect(back_url, code=303)

    def show_review(review, token):
        return view.render("partners/status_review.html", review=review, token=token,
                           form=form, title=title, confirm_label=confirm_label,
                           button_class=button_class, back_url=back_url,
                           breadcrumbs=breadcrumbs)

    return review_confirm(operation, form, show_form=show_form, show_review=show_review)


# --------------------------------------------------------------------------- customers


def _reseller_query():
    return db.session.scalars(select(Reseller).order_by(Reseller.company_name)).all()


def _reseller_label(reseller: Reseller) -> str:
    disabled = " (disabled)" if reseller.status == ResellerStatus.DISABLED else ""
    return f"{reseller.company_name}{disabled}"


class ResellerField(QuerySelectField):
    """The partner management: one of the listed resellers, or Direct. Anything else (an
    id that does not exist, a malformed or a missing value) is a message on the field,
    never a customer silently made direct."""

    def pre_validate(self, form):
        chosen = self.raw_data[0] if self.raw_data else None
        if chosen is None or (chosen != "__None" and self.data is None):
            raise ValidationError("Choose a reseller from the list, or Direct (no partner "
                                  "management).")
        super().pre_validate(form)


class CustomerCreateForm(AddressForm):
    reseller = ResellerField("Partner management", query_factory=_reseller_query,
                             get_label=_reseller_label, allow_blank=True,
                             blank_text="Direct (no partner management)")
    administrative_responsibility = RadioField(
        "Administrative responsibility", choices=RESPONSIBILITY_CHOICES, default="partner",
        description="Fixed once the customer is created.")
    customer_admin_email = EmailField(
        "Customer administrator's email", validators=[Optional(), Email(), Length(max=254)],
        description="Becomes the customer's first administrator.",
        render_kw={"data-shown-when": "administrative_responsibility=customer"})
    currency = SelectField("Currency", choices=CURRENCY_CHOICES, default="USD")


class CustomerEditForm(AddressForm):
    reseller = CustomerCreateForm.reseller
    administrative_responsibility = RadioField(
        "Administrative responsibility", choices=RESPONSIBILITY_CHOICES,
        render_kw={"disabled": True},
        description="Set when the customer was created; it cannot be changed.")
    customer_admin_email = CustomerCreateForm.customer_admin_email


class CustomerView(DomainModelView):
    write_permission = Permission.PARTNER_WRITE
    allow_create = True
    allow_edit = True
    column_list = ("id", "company_name", "city", "country", "reseller",
                   "administrative_responsibility", "currency", "created_at")
    column_details_list = ("id", "company_name", "address1", "address2", "address3", "city",
                           "postal_code", "state", "country", "reseller",
                           "administrative_responsibility", "customer_admin_email", "admins",
                           "currency", "created_at")
    column_searchable_list = ("company_name", "customer_admin_email", "city")
    column_filters = ("administrative_responsibility", "country", "currency",
                      "reseller.company_name", "created_at")
    column_sortable_list = ("id", "company_name")
    column_formatters = {
        "company_name": name_formatter("customer"),
        "reseller": link_formatter("reseller"),
        "admins": lambda v, c, m, n: ", ".join(a.email for a in m.admins),
    }
    column_labels = {"reseller": "Partner management",
                     "administrative_responsibility": "Administrative responsibility",
                     "admins": "Customer administrators"}
    details_template = "partners/customer_details.html"
    #: the tabs of its page, each its own address (the first is the page's own)
    record_tabs = CUSTOMER_TABS

    create_form_class = CustomerCreateForm
    edit_form_class = CustomerEditForm

    def create_from_form(self, form):
        return partners.create_customer(
            **form.address(), reseller=form.reseller.data,
            administrative_responsibility=form.administrative_responsibility.data,
            customer_admin_email=form.customer_admin_email.data or None,
            currency=form.currency.data, actor=current_user)

    def update_from_form(self, form, model):
        fields = {**form.address(), "reseller": form.reseller.data,
                  "customer_admin_email": form.customer_admin_email.data}
        # The field is disabled on the page; a value that arrives anyway goes to the domain,
        # which refuses any change.
        if form.administrative_responsibility.raw_data:
            fields["administrative_responsibility"] = form.administrative_responsibility.data
        return partners.update_customer(model, **fields, actor=current_user)

    @expose("/details/")
    @expose(f"/<{ID}:id>/")
    @expose(f"/<{ID}:id>/<any({', '.join(CUSTOMER_TABS[1:])}):tab>")
    def details_view(self, id=None, tab=None):
        """A customer's page, one address per tab: ``/admin/customer/12/`` (details),
        ``/12/subscriptions`` and ``/12/transactions``; an unknown tab is a 404. The old
        ``details/?id=12&tab=...`` address moves to the tab's own."""
        if id is None:
            return self._moved_details()
        customer = self.get_one(str(id))
        if customer is None:
            abort(404)
        return self.render(self.details_template, model=customer, active_tab=tab or "details",
                           details_columns=self._details_columns,
                           get_value=self.get_detail_value,
                           return_url=get_redirect_target() or self.get_url(".index_view"))

    def _moved_details(self):
        refusal = self._refuse_record_id()
        if refusal is not None:
            return refusal
        key = self.record_key(request.args.get("id"))
        if key is None or self.get_one(request.args["id"]) is None:
            return super().details_view()  # no such customer: the list, with a message
        tab = request.args.get("tab")
        others = [(k, v) for k, v in request.args.items(multi=True) if k not in ("id", "tab")]
        url = self.tab_url(key[0], tab if tab in CUSTOMER_TABS else "details")
        return redirect(f"{url}?{urlencode(others)}" if others else url, 302)

    def tab_url(self, customer_id: int, tab: str, **args) -> str:
        """The address of one tab of a customer's page."""
        return self.get_url(".details_view", id=customer_id,
                            tab=None if tab == "details" else tab, **args)

    def render(self, template, **kwargs):
        if template == self.details_template and "model" in kwargs:
            customer = kwargs["model"]
            kwargs.setdefault("active_tab", "details")
            back = return_target(referrer=False)
            kwargs["tab_urls"] = {tab: self.tab_url(customer.id, tab, url=back)
                                  for tab in CUSTOMER_TABS}
            subscriptions = select(Subscription).where(Subscription.customer_id == customer.id)
            kwargs["subscription_count"] = capped_count(subscriptions, Subscription.id)
            # Only the tab shown is read: each is its own address.
            if kwargs["active_tab"] == "subscriptions":
                kwargs["subscriptions"] = record_rows(
                    subscriptions.options(*SUBSCRIPTION_LOADS), SUBSCRIPTIONS_BY_ID,
                    prefix="subscriptions",
                    url=lambda **args: self.tab_url(customer.id, "subscriptions", **args))
            elif kwargs["active_tab"] == "transactions":
                kwargs["transactions"] = transaction_rows(
                    Transaction.customer_id == customer.id,
                    url=lambda **args: self.tab_url(customer.id, "transactions", **args))
                kwargs["refund_states"] = refund_states(self, kwargs["transactions"])
                kwargs["transactions_url"] = customer_transactions_url(customer.id)
            kwargs["next_invoice_url"] = url_for("billing.next_invoice",
                                                 customer_id=customer.id)
        return super().render(template, **kwargs)

    @expose(f"/subscribe/<{ID}:customer_id>/", methods=("GET", "POST"))
    def subscribe_view(self, customer_id):
        """Add a subscription: choose product and term, quantities, review, Confirm."""
        self.require(Permission.PARTNER_WRITE)
        customer = db.get_or_404(Customer, customer_id)
        products = db.session.scalars(
            select(SubscriptionProduct).where(SubscriptionProduct.active.is_(True))
            .order_by(SubscriptionProduct.name)).all()
        product = _chosen(products, request.values.get("product_id"))
        subscriptions_tab = self.tab_url(customer_id, "subscriptions")
        context = {"customer": customer, "products": products, "product": product,
                   "cancel_url": came_from(subscriptions_tab),
                   "breadcrumbs": then(customer_trail(customer), "Add subscription")}
        if product is None:
            return self.render("partners/subscription_form.html", form=None, **context)
        form = quantity_form(product.certificate_types, base=SubscriptionForm)(
            start_date=today())
        form.term_months.choices = [SelectChoice(t, f"{t} months")
                                    for t in product.terms_months]

        def show_form():
            return self.render("partners/subscription_form.html", form=form, **context)

        if not form.validate_on_submit():
            return show_form()
        args = {"term_months": form.term_months.data, "start_date": form.start_date.data,
                "inventory": quantities(form)}
        operation = Operation(
            name="subscription.add", target=f"customer:{customer.id}",
            review=lambda: subscriptions.quote_subscription(customer, product, **args),
            apply=lambda _quote: subscriptions.add_subscription(
                customer, product, **args, auto_renew=form.auto_renew.data,
                actor=current_user),
            landing=lambda _subscription: subscriptions_tab,
            done=lambda subscription: Markup(
                'Subscription <a href="{}">#{}</a> added for {}.').format(
                url_for("subscription.details_view", id=subscription.id), subscription.id,
                customer.company_name))

        def show_review(quote, token):
            return self.render(
                "partners/quote_review.html", quote=quote, token=token, form=form,
                title=f"Review: new subscription to {product.name} for {customer.company_name}",
                auto_renew=form.auto_renew.data, back_url=context["cancel_url"],
                breadcrumbs=context["breadcrumbs"])

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)


def _chosen(products, raw: str | None):
    """The product whose id was chosen, or None for a missing or malformed choice."""
    return next((p for p in products if str(p.id) == (raw or "").strip()), None)


class CustomerAdminView(DataTableView):
    column_list = ("id", "email", "customer", "created_at")
    column_searchable_list = ("email",)
    column_sortable_list = ("id", "email")
    column_formatters = {"customer": link_formatter("customer")}


# --------------------------------------------------------------------------- subscriptions


class SubscriptionView(ReadOnlyModelView):
    column_list = ("id", "customer", "product", "term_months", "start_date", "end_date",
                   "auto_renew", "status")
    column_details_list = ("id", "customer", "product", "term_months", "start_date",
                           "end_date", "auto_renew", "status", "created_at")
    column_filters = ("status", "auto_renew", "term_months", "end_date", "start_date",
                      "product.name", "customer.company_name")
    column_searchable_list = ("customer.company_name",)
    column_sortable_list = ("id", "end_date")
    column_formatters = {"customer": link_formatter("customer"),
                         "product": link_formatter("subscriptionproduct")}
    column_labels = {"term_months": "Term (months)", "start_date": "Term start",
                     "end_date": "Term end (exclusive)"}
    details_template = "partners/subscription_details.html"

    column_details_loads = ("product", "customer.reseller", "inventory.certificate_type",
                            "terms")

    def render(self, template, **kwargs):
        if template == self.details_template and "model" in kwargs:
            subscription = kwargs["model"]
            kwargs["transactions"] = transaction_rows(
                Transaction.subscription_id == subscription.id,
                url=lambda **args: self.get_url(".details_view", **args),
                anchor="transactions")
            kwargs["refund_states"] = refund_states(self, kwargs["transactions"])
            kwargs["can_write"] = self.can(Permission.PARTNER_WRITE)
        return super().render(template, **kwargs)

    def _details_url(self, subscription_id: int) -> str:
        return self.get_url(".details_view", id=subscription_id)

    @expose(f"/inventory/<{ID}:subscription_id>/", methods=("GET", "POST"))
    def inventory_view(self, subscription_id):
        """Add current inventory: quantities, review of the prorated charge, Confirm."""
        self.require(Permission.PARTNER_WRITE)
        subscription = db.get_or_404(Subscription, subscription_id)
        form = quantity_form(subscription.product.certificate_types, base=InventoryForm)()
        details_url = self._details_url(subscription_id)
        cancel_url = came_from(details_url)
        crumbs = then(subscription_trail(subscription), "Add inventory")

        def show_form():
            return self.render("partners/inventory_form.html", subscription=subscription,
                               form=form, cancel_url=cancel_url, breadcrumbs=crumbs,
                               current={f"qty_{row.certificate_type.code}": row.quantity
                                        for row in subscription.inventory})

        if not form.validate_on_submit():
            return show_form()
        additions = quantities(form)
        operation = Operation(
            name="inventory.add", target=f"subscription:{subscription.id}",
            review=lambda: subscriptions.quote_inventory(subscription, additions),
            apply=lambda _quote: subscriptions.add_inventory(subscription, additions,
                                                             actor=current_user),
            landing=lambda _transaction: details_url,
            done="Inventory added; the charge will be on the next invoice.")

        def show_review(quote, token):
            return self.render(
                "partners/quote_review.html", quote=quote, token=token, form=form,
                title=f"Review: add inventory to subscription #{subscription.id}",
                auto_renew=None, back_url=cancel_url, breadcrumbs=crumbs)

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)

    @expose(f"/renewal/<{ID}:subscription_id>/", methods=("GET", "POST"))
    def renewal_view(self, subscription_id):
        """Set the renewal inventory: what the next term holds; review, Confirm. Charges
        nothing now."""
        self.require(Permission.PARTNER_WRITE)
        subscription = db.get_or_404(Subscription, subscription_id)
        rows = subscription.inventory
        form = quantity_form([row.certificate_type for row in rows],
                             base=RenewalInventoryForm)(
            data={f"qty_{row.certificate_type.code}": row.renewal_quantity for row in rows})
        details_url = self._details_url(subscription_id)
        cancel_url = came_from(details_url)
        crumbs = then(subscription_trail(subscription), "Set renewal inventory")

        def show_form():
            return self.render("partners/renewal_form.html", subscription=subscription,
                               form=form, cancel_url=cancel_url, breadcrumbs=crumbs,
                               current={f"qty_{row.certificate_type.code}": row.quantity
                                        for row in subscription.inventory})

        if not form.validate_on_submit():
            return show_form()
        counts = quantities(form)
        operation = Operation(
            name="subscription.renewal_inventory", target=f"subscription:{subscription.id}",
            review=lambda: subscriptions.quote_renewal_inventory(subscription, counts),
            apply=lambda _review: subscriptions.set_renewal_inventory(subscription, counts,
                                                                      actor=current_user),
            landing=lambda _result: details_url,
            done="Renewal inventory saved; nothing is charged until the renewal.")

        def show_review(review, token):
            return self.render(
                "partners/renewal_review.html", review=review, token=token, form=form,
                title=f"Review: renewal inventory of subscription #{subscription.id}",
                back_url=cancel_url, breadcrumbs=crumbs)

        return review_confirm(operation, form, show_form=show_form, show_review=show_review)

    @expose(f"/suspend/<{ID}:subscription_id>/", methods=("GET", "POST"))
    def suspend_view(self, subscription_id):
        """Review, then suspend: no additions and no renewal until enabled."""
        return self._status_change(
            subscription_id, "suspend", subscriptions.review_suspend_subscription,
            subscriptions.suspend_subscription, "Subscription #{id} is suspended.",
            button_class="btn-warning")

    @expose(f"/enable/<{ID}:subscription_id>/", methods=("GET", "POST"))
    def enable_view(self, subscription_id):
        """Review, then enable a suspended subscription."""
        return self._status_change(
            subscription_id, "enable", subscriptions.review_enable_subscription,
            subscriptions.enable_subscription, "Subscription #{id} is active again.",
            button_class="btn-success")

    def _status_change(self, subscription_id, verb, review, apply, done, *, button_class):
        self.require(Permission.PARTNER_WRITE)
        subscription = db.get_or_404(Subscription, subscription_id)
        details_url = self._details_url(subscription_id)
        operation = Operation(
            name=f"subscription.{verb}", target=f"subscription:{subscription.id}",
            review=lambda: review(subscription),
            apply=lambda _review: apply(subscription, actor=current_user),
            landing=lambda _result: details_url, done=done.format(id=subscription_id))
        return status_change(self, operation, StatusChangeForm(),
                             title=f"Review: {verb} subscription #{subscription.id}",
                             confirm_label=f"{verb.capitalize()} subscription",
                             button_class=button_class, back_url=came_from(details_url),
                             breadcrumbs=then(subscription_trail(subscription),
                                              verb.capitalize()))


class InventoryView(DataTableView):
    column_list = ("id", "subscription", "certificate_type", "quantity", "renewal_quantity")
    column_filters = ("certificate_type.code",)
    column_list_loads = ("subscription.product",)
    column_formatters = {"subscription": link_formatter("subscription")}
    column_labels = {"quantity": "Current inventory", "renewal_quantity": "Renewal inventory"}


class SubscriptionTermView(DataTableView):
    column_list = ("id", "subscription", "start_date", "end_date", "created_at")
    column_filters = ("start_date", "end_date")
    column_list_loads = ("subscription.product",)
    column_formatters = {"subscription": link_formatter("subscription")}


def register(admin, db) -> None:
    """Add the Partners menu to the console."""
    admin.add_view(ResellerView(Reseller, db, name="Resellers", category=CATEGORY))
    admin.add_view(CustomerView(Customer, db, name="Customers", category=CATEGORY))
    admin.add_view(CustomerAdminView(CustomerAdmin, db, name="Customer admins",
                                     category=DATA_CATEGORY))
    admin.add_view(SubscriptionView(Subscription, db, name="Subscriptions", category=CATEGORY))
    admin.add_view(InventoryView(Inventory, db, name="Inventory", category=DATA_CATEGORY))
    admin.add_view(SubscriptionTermView(SubscriptionTerm, db, name="Subscription terms",
                                        category=DATA_CATEGORY))

