"""Catalog menu: certificate types and subscription products (admins edit them).

Prices are typed as money ("50.00") and kept as minor units; terms as a list of month
counts ("12, 24, 36"). Both are parsed by their fields, so a bad value is a message on the
form; the domain then checks the catalog's rules.
"""

from __future__ import annotations

import re

from flask_admin.contrib.sqla.fields import QuerySelectMultipleField
from flask_login import current_user
from sqlalchemy import select
from wtforms import BooleanField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from .. import subscriptions
from ..errors import InvalidInput
from ..extensions import db
from ..models import (
    CertificateKind,
    CertificateType,
    SubscriptionProduct,
)
from ..money import format_money, to_decimal, to_minor
from ..permissions import Permission
from .base import DomainModelView
from .forms import ConsoleForm

CATEGORY = "Catalog"

#: a yearly price is the same number of minor units in every currency; it is typed with
#: this currency's decimals
PRICE_CURRENCY = "USD"

#: an amount as staff type it: ASCII digits, thousands commas, a decimal point
_AMOUNT = re.compile(r"[0-9][0-9,]{0,15}(\.[0-9]{1,10})?")


class YearlyPriceField(StringField):
    """A yearly price typed as money ("50.00", "1,234.50"), kept as minor units, from 0 to
    ``subscriptions.MAX_YEARLY_PRICE``."""

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        text = valuelist[0].strip() if isinstance(valuelist[0], str) else ""
        self.data = None
        if not text:
            raise ValueError("Enter the yearly price, e.g. 50.00.")
        if not _AMOUNT.fullmatch(text):
            raise ValueError("Enter the price as an amount of 0 or more, such as 50.00.")
        try:
            amount = to_minor(text, PRICE_CURRENCY)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from exc
        if amount > subscriptions.MAX_YEARLY_PRICE:
            raise ValueError(f"A yearly price can be at most "
                             f"{to_decimal(subscriptions.MAX_YEARLY_PRICE, PRICE_CURRENCY):,}.")
        self.data = amount

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        if self.data is None:
            return ""
        return str(to_decimal(self.data, PRICE_CURRENCY))


PRICE_REQUIRED = InputRequired(message="Enter the yearly price, e.g. 50.00.")


class CertificateTypeCreateForm(ConsoleForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=32)],
                       description="Short unique code, e.g. DV, OV, EV-CAAS.")
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind", choices=[SelectChoice(k.value) for k in CertificateKind],
                       invalid_choice_message="Choose traditional or caas.")
    yearly_price = YearlyPriceField(
        "Yearly price", validators=[PRICE_REQUIRED],
        description="Price of one certificate for twelve months, e.g. 50.00; the same "
                    "number in every currency.")


class CertificateTypeEditForm(ConsoleForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    yearly_price = YearlyPriceField(
        "Yearly price", validators=[PRICE_REQUIRED],
        description="Applies to charges from now on; recorded charges keep their price.")
    active = BooleanField("Active (offered for new sales)")


class CertificateTypeView(DomainModelView):
    write_permission = Permission.CATALOG_WRITE
    allow_create = True
    allow_edit = True
    column_list = ("code", "name", "kind", "yearly_price", "active", "created_at")
    column_details_list = column_list
    column_searchable_list = ("code", "name")
    column_filters = ("kind", "active")
    column_default_sort = ("code", False)
    column_formatters = {
        "yearly_price": lambda v, c, m, n: format_money(m.yearly_price, "USD").lstrip("$"),
    }
    column_labels = {"yearly_price": "Yearly price"}

    form_base_class = ConsoleForm
    create_form_class = CertificateTypeCreateForm
    edit_form_class = CertificateTypeEditForm

    def create_from_form(self, form):
        return subscriptions.create_certificate_type(
            code=form.code.data, name=form.name.data, kind=form.kind.data,
            yearly_price=form.yearly_price.data, actor=current_user)

    def update_from_form(self, form, model):
        return subscriptions.update_certificate_type(
            model, name=form.name.data, yearly_price=form.yearly_price.data,
            active=form.active.data, actor=current_user)


def _certificate_type_query():
    return db.session.scalars(select(CertificateType).order_by(CertificateType.code)).all()


class TermsField(StringField):
    """Term lengths typed as month counts, "12, 24, 36", kept as a list of whole numbers.

    Each count is ASCII digits; the domain checks the range (1 to 120 months).
    """

    def process_data(self, value):
        self.data = list(value) if value is not None else None

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        text = valuelist[0] if isinstance(valuelist[0], str) else ""
        self.data = None
        if len(text) > 100:
            raise ValueError("List at most a few terms, e.g. 12, 24, 36.")
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise ValueError(f"'{text}' is not a list of month counts such as 12, 24, 36.")
        if any(len(part) > 3 for part in parts):
            raise ValueError("Terms are whole numbers of months between 1 and 120.")
        self.data = [int(part) for part in parts]

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return ", ".join(str(term) for term in self.data or ())


class CertificateTypesField(QuerySelectMultipleField):
    """Flask-Admin's multiple select of rows, refusing ids that are not in its list.

    Flask-Admin's own check looks for unknown ids before it has read the posted ones, so
    it would drop them silently; reading the data first makes them a message.
    """

    def pre_validate(self, form) -> None:
        _ = self.data  # matches the posted ids to rows and notes any unknown one
        super().pre_validate(form)


class ProductForm(ConsoleForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    certificate_types = CertificateTypesField(
        "Certificate types", query_factory=_certificate_type_query,
        get_label=lambda t: f"{t.code} ({t.name})")
    terms_months = TermsField("Terms (months)", default=[12, 24, 36],
                              validators=[InputRequired()],
                              description="Comma-separated, e.g. 12, 24, 36.")
    active = BooleanField("Active (offered for new subscriptions)", default=True)


class SubscriptionProductView(DomainModelView):
    write_permission = Permission.CATALOG_WRITE
    allow_create = True
    allow_edit = True
    column_list = ("name", "certificate_types", "terms_months", "active", "created_at")
    column_details_list = column_list
    column_searchable_list = ("name",)
    column_filters = ("active",)
    column_default_sort = ("name", False)
    column_formatters = {
        "certificate_types": lambda v, c, m, n: ", ".join(t.code for t in m.certificate_types),
        "terms_months": lambda v, c, m, n: ", ".join(str(t) for t in m.terms_months),
    }

    form_base_class = ConsoleForm
    create_form_class = ProductForm
    edit_form_class = ProductForm

    def create_from_form(self, form):
        return subscriptions.create_product(
            name=form.name.data, certificate_types=[t.code for t in form.certificate_types.data],
            terms_months=form.terms_months.data, actor=current_user)

    def update_from_form(self, form, model):
        return subscriptions.update_product(
            model, name=form.name.data,
            certificate_types=[t.code for t in form.certificate_types.data],
            terms_months=form.terms_months.data, active=form.active.data,
            actor=current_user)


def register(admin, db) -> None:
    """Add the Catalog menu to the console."""
    admin.add_view(CertificateTypeView(CertificateType, db, name="Certificate types",
                                       category=CATEGORY))
    admin.add_view(SubscriptionProductView(SubscriptionProduct, db,
                                           name="Subscription products", category=CATEGORY))
