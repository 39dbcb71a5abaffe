"""The base views every console page builds on: access by permission, formatting."""

from __future__ import annotations

import enum
import re
from datetime import date, datetime

from babel.dates import format_date, format_datetime
from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.filters import FilterConverter
from flask_admin.model.filters import convert
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import Integer

from ..dashboard import summary
from ..errors import DomainError
from ..extensions import db
from ..money import format_money
from ..permissions import Permission, has_permission


def _locale() -> str:
    return current_app.config.get("DISPLAY_LOCALE", "en_US")


def fmt_datetime(value: datetime | None) -> str:
    """A UTC timestamp for staff, e.g. ``Nov 22, 2026, 7:38 AM UTC``."""
    if value is None:
        return ""
    return format_datetime(value, "medium", tzinfo=None, locale=_locale()) + " UTC"


def fmt_date(value: date | None) -> str:
    """A date for staff, e.g. ``Nov 22, 2026``."""
    return "" if value is None else format_date(value, "medium", locale=_locale())


def fmt_money(amount: int | None, currency: str | None) -> str:
    """Minor units in the console's display locale."""
    return format_money(amount, currency, locale=_locale())


def _resolve(obj, path: str):
    """Follow a dotted attribute path, stopping at None."""
    for part in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


def money_column(currency_path: str = "currency"):
    """A column formatter showing a minor-units column as money.

    ``currency_path`` is where the row's currency lives, e.g. ``"order.currency"``.
    """

    def formatter(_view, _context, model, name):
        return fmt_money(_resolve(model, name), _resolve(model, currency_path) or "USD")

    return formatter


def link_to(endpoint: str, obj, label: str | None = None) -> Markup | str:
    """A link to an object's detail page in another view, or "" when there is none."""
    if obj is None:
        return ""
    url = url_for(f"{endpoint}.details_view", id=obj.id)
    return Markup('<a href="{}">{}</a>').format(url, label if label is not None else str(obj))


def link_formatter(endpoint: str, attr: str | None = None):
    """A column formatter that links a relationship to its detail page."""

    def formatter(_view, _context, model, name):
        return link_to(endpoint, getattr(model, attr or name))

    return formatter


def links_formatter(endpoint: str):
    """A column formatter that lists a to-many relationship as links, one per line."""

    def formatter(_view, _context, model, name):
        return Markup("<br>").join(link_to(endpoint, obj) for obj in getattr(model, name))

    return formatter


TYPE_FORMATTERS = {
    enum.Enum: lambda _view, value, *args: str(value.value).replace("_", " "),
    datetime: lambda _view, value, *args: fmt_datetime(value),
    date: lambda _view, value, *args: fmt_date(value),
    bool: lambda _view, value, *args: "yes" if value else "no",
    type(None): lambda _view, value, *args: "",
    list: lambda _view, value, *args: ", ".join(str(v) for v in value),
    dict: lambda _view, value, *args: ", ".join(f"{k}: {v}" for k, v in value.items()),
}


#: the largest id an id column holds (PostgreSQL ``integer``)
MAX_ROW_ID = 2**31 - 1
_ROW_ID = re.compile(r"[0-9]{1,10}")


def is_row_id(value) -> bool:
    """Whether ``value`` (a string from a URL) can be a row's integer id."""
    text = value if isinstance(value, str) else str(value)
    return bool(_ROW_ID.fullmatch(text)) and int(text) <= MAX_ROW_ID


class ConsoleFilterConverter(FilterConverter):
    """Flask-Admin's filters, plus our timezone-aware timestamp column type."""

    @convert("UTCDateTime")
    def conv_utc_datetime(self, column, name, **kwargs):
        return [f(column, name, **kwargs) for f in self.datetime_filters]


class SecureMixin:
    """Access rule shared by every console page: sign-in, then one named permission."""

    #: what a staff member needs to open this page at all
    permission: Permission = Permission.CONSOLE_READ

    def is_accessible(self) -> bool:
        return has_permission(current_user, self.permission)

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def can(self, permission: Permission) -> bool:
        """Whether the signed-in staff member holds ``permission`` (for templates)."""
        return has_permission(current_user, permission)

    def require(self, permission: Permission) -> None:
        """Re-check a write permission on the server before acting."""
        if not has_permission(current_user, permission):
            abort(403)


class SecureBaseView(SecureMixin, BaseView):
    """A custom console page (``@expose``) behind a permission."""


class ConsoleIndexView(SecureMixin, AdminIndexView):
    """The dashboard."""

    @expose("/")
    def index(self):
        return self.render("admin/index.html", summary=summary())


class ReadOnlyModelView(SecureMixin, ModelView):
    """A list and detail view of a table that staff read but never edit here.

    Money and ledger tables stay read-only in generic views: they change only through
    domain functions behind their own review/confirm pages.
    """

    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    can_set_page_size = True
    page_size = 50
    form_base_class = FlaskForm
    column_type_formatters = {**ModelView.column_type_formatters, **TYPE_FORMATTERS}
    column_type_formatters_detail = TYPE_FORMATTERS
    column_display_pk = True
    column_default_sort = ("id", True)
    filter_converter = ConsoleFilterConverter()
    list_template = "admin/model/list.html"
    details_template = "admin/model/details.html"

    def __init__(self, model, session, **kwargs):
        super().__init__(model, session, **kwargs)
        # Details pages use the same formatters as the list unless a view says otherwise.
        if self.column_formatters and not self.column_formatters_detail:
            self.column_formatters_detail = self.column_formatters

    def get_one(self, id):
        """The row with this id, or None when no row can have it.

        On PostgreSQL an ``?id=`` such as "abc" or a number beyond the column's range is a
        database error, not a missing row; Flask-Admin then says the record does not exist.
        """
        primary_key = self.model.__mapper__.primary_key
        if (len(primary_key) == 1 and isinstance(primary_key[0].type, Integer)
                and not is_row_id(id)):
            return None
        return super().get_one(id)


class DomainModelView(ReadOnlyModelView):
    """A view whose create/edit forms go through domain functions, not the ORM directly.

    Subclasses set ``write_permission`` and implement ``create_from_form`` and/or
    ``update_from_form``; the view commits once, or rolls back and flashes the
    domain's message on the form.
    """

    write_permission: Permission | None = None
    allow_create = False
    allow_edit = False
    #: the forms staff fill in; their fields are what the domain function takes
    create_form_class: type[FlaskForm] | None = None
    edit_form_class: type[FlaskForm] | None = None

    def get_create_form(self):
        return self.create_form_class or super().get_create_form()

    def get_edit_form(self):
        return self.edit_form_class or super().get_edit_form()

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self.allow_create and self._may_write()

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.allow_edit and self._may_write()

    def _may_write(self) -> bool:
        return self.write_permission is not None and has_permission(
            current_user, self.write_permission
        )

    def _handle_view(self, name, **kwargs):
        response = super()._handle_view(name, **kwargs)
        # Flask-Admin would skip a disallowed action with a redirect; say "forbidden" instead.
        writing = name in ("create_view", "edit_view", "delete_view", "action_view")
        if response is None and writing and not self._may_write():
            abort(403)
        return response

    def create_model(self, form):
        return self._apply(lambda: self.create_from_form(form))

    def update_model(self, form, model):
        return self._apply(lambda: self.update_from_form(form, model))

    def delete_model(self, model):  # deleting is never a console action
        abort(403)

    def _apply(self, operation):
        ok, result = run_domain(operation)
        if not ok:
            return False
        return result if result is not None else True

    def create_from_form(self, form):
        raise NotImplementedError

    def update_from_form(self, form, model):
        raise NotImplementedError


def run_domain(operation, success_message: str | None = None):
    """Run one domain operation as the request's unit of work.

    Commits once on success and flashes ``success_message``; on a DomainError rolls back
    everything and flashes the domain's sentence. Returns (ok, result).
    """
    try:
        result = operation()
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return False, None
    if success_message:
        flash(success_message, "success")
    return True, result
