"""Catalog menu: certificate types and subscription products (admins edit them)."""

from __future__ import annotations

from flask_admin.contrib.sqla.fields import QuerySelectMultipleField
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from .. import subscriptions
from ..errors import InvalidInput
from ..extensions import db
from ..models import (
    CertificateKind,
    CertificateType,
    SubscriptionProduct,
)
from ..money import format_money
from ..permissions import Permission
from .base import DomainModelView

CATEGORY = "Catalog"


class CertificateTypeCreateForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=32)],
                       description="Short unique code, e.g. DV, OV, EV-CAAS.")
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind", choices=[SelectChoice(k.value) for k in CertificateKind])
    yearly_price = IntegerField(
        "Yearly price (minor units)", validators=[InputRequired(), NumberRange(min=0)],
        description="Price of one certificate for twelve months, in cents: 5000 = 50.00.")


class CertificateTypeEditForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    yearly_price = IntegerField(
        "Yearly price (minor units)", validators=[InputRequired(), NumberRange(min=0)],
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


class ProductForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    certificate_types = QuerySelectMultipleField(
        "Certificate types", query_factory=_certificate_type_query,
        get_label=lambda t: f"{t.code} ({t.name})")
    terms_months = StringField("Terms (months)", default="12, 24, 36",
                               validators=[DataRequired()],
                               description="Comma-separated, e.g. 12, 24, 36.")
    active = BooleanField("Active (offered for new subscriptions)", default=True)


def _parse_terms(text: str) -> list[int]:
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise InvalidInput(f"'{text}' is not a list of month counts such as 12, 24, 36.")
    return [int(p) for p in parts]


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

    create_form_class = ProductForm
    edit_form_class = ProductForm

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None and not form.is_submitted():
            form.terms_months.data = ", ".join(str(t) for t in obj.terms_months)
        return form

    def create_from_form(self, form):
        return subscriptions.create_product(
            name=form.name.data, certificate_types=[t.code for t in form.certificate_types.data],
            terms_months=_parse_terms(form.terms_months.data), actor=current_user)

    def update_from_form(self, form, model):
        return subscriptions.update_product(
            model, name=form.name.data,
            certificate_types=[t.code for t in form.certificate_types.data],
            terms_months=_parse_terms(form.terms_months.data), active=form.active.data,
            actor=current_user)


def register(admin, db) -> None:
    """Add the Catalog menu to the console."""
    admin.add_view(CertificateTypeView(CertificateType, db, name="Certificate types",
                                       category=CATEGORY))
    admin.add_view(SubscriptionProductView(SubscriptionProduct, db,
                                           name="Subscription products", category=CATEGORY))
