"""System and Catalog menus: staff accounts, audit log, jobs, outbox, the catalog."""

from __future__ import annotations

from flask import flash
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectMultipleField
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import select
from wtforms import BooleanField, EmailField, IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from .. import staff, subscriptions
from ..errors import InvalidInput
from ..extensions import db
from ..models import (
    AuditEvent,
    CertificateKind,
    CertificateType,
    Counter,
    JobLock,
    JobRun,
    OutboxEmail,
    StaffRole,
    StaffUser,
    SubscriptionProduct,
)
from ..money import format_money
from ..permissions import Permission
from .base import DomainModelView, ReadOnlyModelView, run_domain

CATEGORY = "System"
CATALOG = "Catalog"

ROLE_CHOICES = [(r.value, r.value.title()) for r in StaffRole]


class StaffCreateForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    password = StringField(
        "Password", validators=[Optional()],
        description=f"At least {staff.MIN_PASSWORD_LENGTH} characters. Leave empty to "
                    "generate one; it is shown once.",
    )


class StaffEditForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES)


class StaffUserView(DomainModelView):
    """Staff accounts: admins create them, change roles, deactivate and reset passwords."""

    write_permission = Permission.STAFF_WRITE
    allow_create = True
    allow_edit = True
    column_list = ("id", "email", "name", "role", "active", "last_login_at", "created_at")
    column_details_list = column_list
    column_searchable_list = ("email", "name")
    column_filters = ("role", "active")
    column_default_sort = ("email", False)

    create_form_class = StaffCreateForm
    edit_form_class = StaffEditForm

    def create_from_form(self, form):
        password = form.password.data or staff.generate_password()
        user = staff.create_staff(email=form.email.data, name=form.name.data,
                                 role=form.role.data, password=password, actor=current_user)
        if not form.password.data:
            flash(Markup("Password for {}: <code>{}</code> (shown once).").format(
                user.email, password), "info")
        return user

    def update_from_form(self, form, model):
        staff.update_staff(model, name=form.name.data, role=form.role.data, actor=current_user)
        return model

    def is_action_allowed(self, name):
        return self._may_write() and super().is_action_allowed(name)

    def _each_selected(self, ids, operation, message):
        self.require(Permission.STAFF_WRITE)
        # row ids arrive as strings; PostgreSQL will not compare them with an integer column
        ids = [int(i) for i in ids if str(i).isdigit()]
        users = db.session.scalars(select(StaffUser).where(StaffUser.id.in_(ids))).all()

        def apply():
            return [operation(user) for user in users]

        ok, results = run_domain(apply)
        if ok:
            for text in results:
                if text:
                    flash(text, "success")
            flash(message.format(count=len(users)), "success")

    @action("deactivate", "Deactivate", "Deactivate the selected staff accounts?")
    def action_deactivate(self, ids):
        self._each_selected(
            ids, lambda u: staff.set_staff_active(u, False, actor=current_user),
            "{count} account(s) deactivated.")

    @action("activate", "Activate", "Reactivate the selected staff accounts?")
    def action_activate(self, ids):
        self._each_selected(
            ids, lambda u: staff.set_staff_active(u, True, actor=current_user),
            "{count} account(s) reactivated.")

    @action("reset_password", "Reset password",
            "Generate a new password for the selected accounts? The old ones stop working.")
    def action_reset_password(self, ids):
        def reset(user):
            password = staff.generate_password()
            staff.set_staff_password(user, password, actor=current_user)
            return Markup("New password for {}: <code>{}</code> (shown once).").format(
                user.email, password)

        self._each_selected(ids, reset, "{count} password(s) reset.")


class AuditEventView(ReadOnlyModelView):
    """The audit log: read-only for everyone, newest first."""

    column_list = ("seq", "created_at", "actor_label", "action", "target_type", "target_id",
                   "details")
    column_details_list = ("seq", "created_at", "actor_label", "action", "target_type",
                           "target_id", "details", "prev_hash", "hash")
    column_searchable_list = ("action", "actor_label", "target_id")
    column_filters = ("action", "target_type", "actor_label", "created_at")
    column_default_sort = ("seq", True)
    column_labels = {"seq": "#", "actor_label": "Actor", "target_type": "Target",
                     "target_id": "Target id"}


class JobRunView(ReadOnlyModelView):
    column_list = ("id", "job", "trigger", "status", "started_at", "finished_at", "processed",
                   "details", "error")
    column_filters = ("job", "status", "trigger", "started_at")
    column_default_sort = ("started_at", True)


class JobLockView(ReadOnlyModelView):
    column_list = ("job", "holder", "lease_until")
    column_default_sort = ("job", False)


class OutboxEmailView(ReadOnlyModelView):
    column_list = ("id", "to", "subject", "created_at", "sent_at", "attempts", "last_error")
    column_details_list = ("id", "to", "subject", "body", "created_at", "sent_at", "attempts",
                           "next_attempt_at", "last_error")
    column_searchable_list = ("to", "subject")
    column_filters = ("sent_at", "created_at")


class CounterView(ReadOnlyModelView):
    column_list = ("name", "value")
    column_default_sort = ("name", False)


# --------------------------------------------------------------------------- catalog


class CertificateTypeCreateForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=32)],
                       description="Short unique code, e.g. DV, OV, EV-CAAS.")
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind", choices=[(k.value, k.value) for k in CertificateKind])
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
    """Add the System and Catalog menus to the console."""
    admin.add_view(CertificateTypeView(CertificateType, db, name="Certificate types",
                                       category=CATALOG))
    admin.add_view(SubscriptionProductView(SubscriptionProduct, db,
                                           name="Subscription products", category=CATALOG))
    admin.add_view(StaffUserView(StaffUser, db, name="Staff", category=CATEGORY))
    admin.add_view(AuditEventView(AuditEvent, db, name="Audit log", category=CATEGORY))
    admin.add_view(JobRunView(JobRun, db, name="Job runs", category=CATEGORY))
    admin.add_view(JobLockView(JobLock, db, name="Job leases", category=CATEGORY))
    admin.add_view(OutboxEmailView(OutboxEmail, db, name="Email outbox", category=CATEGORY))
    admin.add_view(CounterView(Counter, db, name="Counters", category=CATEGORY))
