"""The base views every console page builds on: access by permission, formatting, lists
that cost the same at any size, and list and detail addresses that never fail.

Every model view's list and detail page checks what its address asks for before it
queries: the page, page size, sort column and direction, the search and every filter
value (enum choices, whole numbers inside their column's range, dates, no control
characters, bounded lengths), and the record id of details, edit and actions. A bad value
is left out with a message saying so (a flash, then a 303 to the same list without it);
an id that cannot name a record goes back to the list with a message. A database error
while building a list is the last resort: rolled back and answered with a 400 page.

Every model list (see :class:`ReadOnlyModelView` and :mod:`.paging`):

- pages by position (keyset: the sort key, then id) when its order is a NOT NULL column
  of its own table and its key a whole number; Next and Previous carry the position in
  the address (``after=`` / ``before=``, checked like any argument). Other lists (a text
  key, a nullable sort) keep page numbers.
- offers sorts only on indexed columns: the primary key, unique columns, or the leading
  column of an index that ends in the id; a view may list others (``column_sortable_list``)
  that lead an index.
- counts no big table: a filtered or searched list counts up to 10,001 rows and says
  "10,000+"; an unfiltered one shows the planner's estimate on PostgreSQL.
- searches a whole value first where the view names unique columns
  (``column_exact_search``: an email, a number); when a row has it, the list is that row.
  Otherwise every word is looked for inside every searchable column (``ILIKE '%word%'``,
  a trigram index search on PostgreSQL; related columns through ``EXISTS``).
- loads the related rows it shows for the page's rows only, one query per relationship
  (``selectinload``), after the page is chosen.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from babel.dates import format_timedelta
from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView, expose
from flask_admin.contrib.sqla import ModelView, tools
from flask_admin.contrib.sqla.filters import (
    EnumEqualFilter,
    EnumFilterEmpty,
    EnumFilterInList,
    EnumFilterNotEqual,
    EnumFilterNotInList,
    FilterConverter,
    FilterInList,
)
from flask_admin.model.filters import (
    BaseDateBetweenFilter,
    BaseDateFilter,
    BaseDateTimeBetweenFilter,
    BaseDateTimeFilter,
    BaseFloatFilter,
    BaseFloatListFilter,
    BaseIntFilter,
    BaseIntListFilter,
    convert,
)
from flask_admin.model.helpers import get_mdict_item_or_list
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import JSON, BigInteger, Integer, SmallInteger, String, Unicode, cast, or_
from sqlalchemy.exc import DataError, ProgrammingError
from sqlalchemy.orm import RelationshipProperty, selectinload
from sqlalchemy.schema import UniqueConstraint

from .. import dashboard
from ..clock import utcnow
from ..errors import DomainError
from ..extensions import db
from ..formats import format_day, format_moment
from ..money import format_money
from ..permissions import Permission, has_permission
from .forms import CONTROL_ANY, ConsoleForm, has_control_characters
from .labels import PeopleLabelsMixin
from .navigation import here, return_target, then, trail
from .paging import (
    COUNT_CAP,
    KEYSET_ARGS,
    MAX_OFFSET_ROWS,
    SEARCH_COUNT_CAP,
    RowCount,
    SortKey,
    as_column,
    capped_count,
    keyset_page,
    keyset_type,
    table_count,
    within_matches,
)

log = logging.getLogger(__name__)


def _locale() -> str:
    return current_app.config.get("DISPLAY_LOCALE", "en_US")


def fmt_datetime(value: datetime | None) -> str:
    """A UTC timestamp in the display locale, e.g. ``Nov 22, 2026, 7:38:00 AM UTC``."""
    return format_moment(value, _locale())


def fmt_date(value: date | None) -> str:
    """A date in the display locale, e.g. ``Nov 22, 2026``."""
    return format_day(value, _locale())


def fmt_relative(value: datetime | None, now: datetime | None = None) -> str:
    """How far a moment is from now, e.g. ``in 3 days`` or ``2 hours ago``."""
    if value is None:
        return ""
    return format_timedelta(value - (now or utcnow()), granularity="minute",
                            add_direction=True, locale=_locale())


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


def link_to(endpoint: str, obj, label: str | None = None, *,
            back: str | None = None) -> Markup | str:
    """A link to an object's detail page in another view, or "" when there is none;
    ``back`` is the page its Back returns to (Flask-Admin's ``url``)."""
    if obj is None:
        return ""
    url = url_for(f"{endpoint}.details_view", id=obj.id, url=back)
    return Markup('<a href="{}">{}</a>').format(url, label if label is not None else str(obj))


def link_formatter(endpoint: str, attr: str | None = None):
    """A column formatter that links a relationship to its detail page."""

    def formatter(_view, _context, model, name):
        return link_to(endpoint, getattr(model, attr or name))

    return formatter


def name_formatter(endpoint: str):
    """A column formatter that links a list row's name (its company name, email, number)
    to the row's own page, whose Back returns to the list; plain text on that page."""

    def formatter(_view, _context, model, name):
        value = _resolve(model, name)
        if value in (None, "") or (request.endpoint or "").endswith(".details_view"):
            return "" if value is None else value
        return link_to(endpoint, model, str(value), back=here())

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


# --------------------------------------------------------------------------- list filters


def _enum_member(filter_, value):
    """Our enum columns store member values (``str_enum``), so filters take values too."""
    return value if isinstance(value, filter_.enum_class) else filter_.enum_class(value)


class EnumValueEqualFilter(EnumEqualFilter):
    def clean(self, value):
        return _enum_member(self, value) if self.enum_class else super().clean(value)


class EnumValueNotEqualFilter(EnumFilterNotEqual):
    def clean(self, value):
        return _enum_member(self, value) if self.enum_class else super().clean(value)


class EnumValueInListFilter(EnumFilterInList):
    def clean(self, value):
        values = FilterInList.clean(self, value)
        return [_enum_member(self, v) for v in values] if self.enum_class else values


class EnumValueNotInListFilter(EnumFilterNotInList):
    def clean(self, value):
        values = FilterInList.clean(self, value)
        return [_enum_member(self, v) for v in values] if self.enum_class else values


class ConsoleFilterConverter(FilterConverter):
    """Flask-Admin's filters, plus our timezone-aware timestamp column type, with enum
    filters that take the stored values their own choices offer."""

    enum = (EnumValueEqualFilter, EnumValueNotEqualFilter, EnumFilterEmpty,
            EnumValueInListFilter, EnumValueNotInListFilter)

    @convert("UTCDateTime")
    def conv_utc_datetime(self, column, name, **kwargs):
        return [f(column, name, **kwargs) for f in self.datetime_filters]


#: the highest page a list opens (0-based, as Flask-Admin counts them)
MAX_PAGE = 1_000_000
#: the longest search a list takes, and the longest value of one filter or other argument
MAX_SEARCH = 200
MAX_FILTER_VALUE = 500
MAX_ARGUMENT = 2_000
#: the longest record id a details, edit or action address may carry
MAX_RECORD_ID = 200

_PAGE = re.compile(r"[0-9]{1,7}")
#: control characters, line breaks and tabs included (none belongs in an address)
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,19}")
_LIST_FILTERS = (FilterInList, BaseIntListFilter, BaseFloatListFilter)


def shown(value, limit: int = 40) -> str:
    """A value from an address, safe and short enough to quote in a message."""
    text = CONTROL_ANY.sub("?", str(value))
    return text if len(text) <= limit else text[:limit] + "…"


def integer_range(column_type) -> tuple[int, int] | None:
    """The values an integer column holds on every database we run on, else None."""
    column_type = getattr(column_type, "impl", column_type)
    if isinstance(column_type, SmallInteger):
        return -(2 ** 15), 2 ** 15 - 1
    if isinstance(column_type, BigInteger):
        return -(2 ** 63), 2 ** 63 - 1
    if isinstance(column_type, Integer):
        return -(2 ** 31), 2 ** 31 - 1
    return None


def column_value(column, text: str):
    """``text`` as a value of ``column`` (a record id part), or None when it cannot be one."""
    bounds = integer_range(column.type)
    if bounds is not None:
        if not _WHOLE_NUMBER.fullmatch(text) or not bounds[0] <= int(text) <= bounds[1]:
            return None
        return int(text)
    length = getattr(column.type, "length", None) if isinstance(column.type, String) else None
    if length is not None and len(text) > length:
        return None
    return text


def _filter_label(filter_) -> str:
    return f"{filter_.name} {filter_.operation()}".strip()


def filter_value_problem(filter_, value: str) -> str | None:
    """Why ``value`` cannot be used with list filter ``filter_``, or None when it can."""
    label = _filter_label(filter_)
    if len(value) > MAX_FILTER_VALUE:
        return f"The filter “{label}” takes at most {MAX_FILTER_VALUE} characters."
    if has_control_characters(value):
        return f"Remove the control characters (such as NUL) from the filter “{label}”."
    parts = ([v.strip() for v in value.split(",") if v.strip()]
             if isinstance(filter_, _LIST_FILTERS) else [value])
    column = getattr(filter_, "column", None)
    choices = getattr(getattr(column, "type", None), "enums", None)
    if getattr(filter_, "enum_class", None) is not None and choices \
            and not isinstance(filter_, EnumFilterEmpty):
        for part in parts:
            if part not in choices:
                return (f"“{shown(part)}” is not a choice of the filter “{label}”; choose "
                        f"one of: {', '.join(choices)}.")
    if isinstance(filter_, (BaseIntFilter, BaseIntListFilter)):
        low, high = integer_range(getattr(column, "type", None)) or (-(2 ** 63), 2 ** 63 - 1)
        for part in parts:
            if not _WHOLE_NUMBER.fullmatch(part) or not low <= int(part) <= high:
                return (f"The filter “{label}” takes whole numbers from {low:,} to {high:,}; "
                        f"“{shown(part)}” is not one.")
    if isinstance(filter_, (BaseFloatFilter, BaseFloatListFilter)):
        for part in parts:
            try:
                number = float(part)
            except ValueError:
                number = math.nan
            if not part.isascii() or not math.isfinite(number):
                return f"The filter “{label}” takes numbers; “{shown(part)}” is not one."
    try:
        valid = filter_.validate(value)
    except (ValueError, TypeError, KeyError, OverflowError):
        valid = False
    if not valid:
        hint = ""
        if isinstance(filter_, (BaseDateFilter, BaseDateBetweenFilter)):
            hint = " Dates are written YYYY-MM-DD, e.g. 2026-11-22."
        elif isinstance(filter_, (BaseDateTimeFilter, BaseDateTimeBetweenFilter)):
            hint = " Times are written YYYY-MM-DD HH:MM:SS, e.g. 2026-11-22 09:30:00."
        return f"“{shown(value)}” is not a value the filter “{label}” can use.{hint}"
    return None


def _is_json(column) -> bool:
    if isinstance(column, (list, tuple)):
        return any(_is_json(c) for c in column)
    return isinstance(getattr(column, "type", None), JSON)


def like_pattern(word: str) -> str:
    """``%word%`` for a case-insensitive LIKE, with LIKE's wildcards in ``word`` escaped
    (``ESCAPE '\\'``): a search for ``50%`` finds "50%", not every "50"."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def leads_an_index(column) -> bool:
    """Whether ``column`` is its table's primary key, unique, or the first column of an
    index or unique constraint: a sort on it can read an index in order."""
    column = as_column(column)
    table = getattr(column, "table", None)
    if table is None:
        return False
    if column.primary_key or column.unique:
        return True
    leading = [list(index.columns)[:1] for index in table.indexes]
    leading += [list(c.columns)[:1] for c in table.constraints
                if isinstance(c, UniqueConstraint)]
    return [column] in leading


def sorts_by_index(column) -> bool:
    """Whether a list may offer ``column`` as a sort without being told: its primary key,
    a unique column, or the first column of an index that also holds the primary key
    (so a keyset page of ``(column, id)`` reads straight off the index)."""
    column = as_column(column)
    table = getattr(column, "table", None)
    if table is None:
        return False
    if column.primary_key or column.unique:
        return True
    key = set(table.primary_key.columns)
    return any(list(index.columns)[:1] == [column] and key <= set(index.columns)
               for index in table.indexes)


@dataclass
class Listing:
    """What a list page shows besides its rows: the count and how to page."""

    count: RowCount
    #: True: First / Previous / Next by position; False: page numbers
    keyset: bool
    first_url: str | None = None
    prev_url: str | None = None
    next_url: str | None = None
    #: page-numbered lists: whether there is a next page
    has_next: bool = False
    #: the search found its exact value: the list is that row
    exact_match: bool = False


class SecureMixin:
    """Access rule shared by every console page: sign-in, then one named permission."""

    #: what a staff member needs to open this page at all
    permission: Permission = Permission.CONSOLE_READ

    def is_accessible(self) -> bool:
        return has_permission(current_user, self.permission)

    def _handle_view(self, name, **kwargs):
        response = super()._handle_view(name, **kwargs)
        # Flask-Admin redirects to ``url`` after a form or action: never to one a header
        # cannot carry (a line break there is an error) or no page of ours makes. (A list
        # only passes it on, and leaves it out like any other bad argument.)
        targets = request.values.getlist("url") if name != "index_view" else []
        if response is None and any(CONTROL_ANY.search(target) or len(target) > MAX_ARGUMENT
                                    for target in targets):
            abort(400, "The return address in this link is not one the console makes. Open "
                       "the page again from the menu.")
        return response

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
        """Each role's own work first; finance and admins also get the monthly charts."""
        sections = {
            "admin": dashboard.admin_queue() if self.can(Permission.JOB_RUN) else None,
            "support": dashboard.support_queue()
            if self.can(Permission.CORPORATE_WRITE) else None,
            "finance": dashboard.finance_queue()
            if self.can(Permission.REFUND_WRITE) else None,
        }
        if sections["finance"] is not None:  # counted over CLOSING_CAP + 1 rows at most
            sections["finance"]["closing_count"] = RowCount.up_to(
                sections["finance"]["closing_count"], dashboard.CLOSING_CAP)
        series = (dashboard.monthly_series().for_chart()
                  if self.can(Permission.REPORT_EXPORT) else None)
        return self.render("admin/index.html", sections=sections, series=series,
                           list_size=dashboard.LIST_SIZE,
                           customer_transactions=lambda cid: url_for(
                               "billing.customer_transactions", customer_id=cid))


class ReadOnlyModelView(SecureMixin, PeopleLabelsMixin, ModelView):
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
    #: every form Flask-Admin builds refuses control characters (see views/forms.py)
    form_base_class = ConsoleForm
    column_type_formatters = {**ModelView.column_type_formatters, **TYPE_FORMATTERS}
    column_type_formatters_detail = TYPE_FORMATTERS
    column_display_pk = True
    column_default_sort = ("id", True)
    filter_converter = ConsoleFilterConverter()
    list_template = "console/list.html"
    details_template = "admin/model/details.html"
    #: related rows are loaded for the page's rows after it is chosen, never joined first
    column_auto_select_related = False
    #: unique columns whose whole value a search tries first (``("email",)``)
    column_exact_search: tuple[str, ...] = ()
    #: relationships the list's formatters read beyond its columns (``"subscription.product"``
    #: for a subscription shown with its product's name), loaded for the page's rows
    column_list_loads: tuple[str, ...] = ()
    #: the same for a record's page (``"lines.certificate_type"``)
    column_details_loads: tuple[str, ...] = ()

    def __init__(self, model, session, **kwargs):
        super().__init__(model, session, **kwargs)
        # Details pages use the same formatters as the list unless a view says otherwise.
        if self.column_formatters and not self.column_formatters_detail:
            self.column_formatters_detail = self.column_formatters

    def get_sortable_columns(self):
        """The sorts a list offers: never a JSON column (PostgreSQL cannot order by
        ``json``); without ``column_sortable_list``, only the columns that
        :func:`sorts_by_index` allows."""
        columns = super().get_sortable_columns()
        listed = self.column_sortable_list is not None
        return {name: column for name, column in columns.items() if not _is_json(column)
                and not isinstance(column, (list, tuple))
                and (listed or sorts_by_index(column))}

    # ----------------------------------------------------------------------- the order

    def _id_column(self):
        """The model's primary key column when it is a single whole number, else None."""
        columns = list(self.model.__table__.primary_key.columns)
        if len(columns) == 1 and isinstance(columns[0].type, Integer):
            return columns[0]
        return None

    def _default_sort(self) -> tuple[str, Any, bool] | None:
        sort = self.column_default_sort
        if isinstance(sort, list):
            sort = sort[0] if sort else None
        if not sort:
            return None
        name, desc = (sort, False) if isinstance(sort, str) else sort
        return name, getattr(self.model, name), bool(desc)

    def list_sort_key(self, sort_column: str | None, sort_desc: bool) -> SortKey | None:
        """The keyset order of the list for this sort (its default without one), or None
        when the list pages by number: a key that is not one whole number, or a sort
        column that is nullable or not of the model's own table."""
        id_column = self._id_column()
        if id_column is None:
            return None
        if sort_column is not None and sort_column in self._sortable_columns:
            name, column, desc = sort_column, self._sortable_columns[sort_column], sort_desc
        else:
            default = self._default_sort()
            if default is None:
                return None
            name, column, desc = default
        column = as_column(column)
        if getattr(column, "table", None) is not self.model.__table__ \
                or keyset_type(column) is None:
            return None
        return SortKey(name, column, id_column, desc)

    def _requested_sort_key(self, refused: set[str]) -> SortKey | None:
        """The order the list's address asks for, its refused arguments left out."""
        raw = request.args.get("sort") if "sort" not in refused else None
        column = self._get_column_by_idx(int(raw)) if raw and self._sortable_index(raw) else None
        desc = "desc" not in refused and request.args.get("desc") == "1"
        return self.list_sort_key(column[0] if column else None, desc)

    # ----------------------------------------------------------------------- rows

    def list_loads(self) -> list:
        """Loader options for the related rows the list shows (its relationship columns,
        dotted paths included, and ``column_list_loads``): one SELECT … IN per
        relationship for the page's rows."""
        return self._loads([name for name, _ in self._list_columns]
                           + list(self.column_list_loads))

    def details_loads(self) -> list:
        """Loader options for the related rows a record's page shows (its relationship
        columns and ``column_details_loads``), each loaded once, not per row."""
        return self._loads([name for name, _ in self._details_columns]
                           + list(self.column_details_loads))

    def _loads(self, paths) -> list:
        options: dict[str, Any] = {}
        for path in paths:
            option: Any = None
            model, walked = self.model, []
            for part in path.split("."):
                attribute: Any = getattr(model, part, None)
                relation = getattr(attribute, "property", None)
                if not isinstance(relation, RelationshipProperty):
                    break
                option = selectinload(attribute) if option is None else \
                    option.selectinload(attribute)
                model = relation.mapper.class_
                walked.append(part)
            if option is not None:
                options.setdefault(".".join(walked), option)
        return list(options.values())

    def search_condition(self, column, path, pattern: str):
        """``column`` contains ``pattern``: an ILIKE on the column itself (so a trigram
        index can answer it), through EXISTS (``has``/``any``) for a related column."""
        condition = (column.ilike(pattern, escape="\\") if isinstance(column.type, String)
                     else cast(column, Unicode).ilike(pattern, escape="\\"))
        for relation in reversed(path or []):
            condition = (relation.any(condition) if relation.property.uselist
                         else relation.has(condition))
        return condition

    def apply_search(self, query, search: str):
        """Rows where every word of ``search`` is inside at least one searchable column."""
        for word in search.split():
            query = query.filter(or_(*(self.search_condition(column, path, like_pattern(word))
                                       for column, path in self._search_fields or [])))
        return query

    def exact_matches(self, query, search: str, key: SortKey | None, size: int) -> list:
        """The rows whose unique column (``column_exact_search``) is the whole search, as
        typed, lower- or upper-cased: an index lookup. [] when there is none."""
        text = search.strip()
        if not self.column_exact_search or not text or any(c.isspace() for c in text):
            return []
        candidates = sorted({text, text.lower(), text.upper()})
        query = query.filter(or_(*(getattr(self.model, name).in_(candidates)
                                   for name in self.column_exact_search)))
        if key is not None:
            query = query.order_by(*key.order_by())
        return query.options(*self.list_loads()).limit(size).all()

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True,
                 page_size=None):
        """The page of rows and their count (a :class:`~.paging.RowCount`); how to page
        goes to the template as ``listing``. See the module for what is read how."""
        if not execute:
            return super().get_list(page, sort_column, sort_desc, search, filters,
                                    execute=False, page_size=page_size)
        size = page_size or self.page_size
        query = self.get_query()
        unfiltered = query.whereclause is None and not filters and not search
        if filters and self._filters:
            query, _count, _joins, _count_joins = self._apply_filters(query, None, {}, {},
                                                                      filters)
        key = self.list_sort_key(sort_column, sort_desc)
        if search and self._search_supported:
            found = self.exact_matches(query, search, key, size)
            if found:
                g.console_listing = Listing(RowCount(len(found)), keyset=key is not None,
                                            exact_match=True)
                return g.console_listing.count, found
            query = self.apply_search(query, search)
        # a search's matches are counted one by one: it counts to fewer than a filter
        cap = SEARCH_COUNT_CAP if search and self._search_supported else COUNT_CAP
        if key is not None:
            rows, listing = self._keyset_list(query, key, page or 0, size, unfiltered, cap)
        else:
            rows, listing = self._numbered_list(query, sort_column, sort_desc, page or 0,
                                                size, unfiltered, cap)
        g.console_listing = listing
        return listing.count, rows

    def _count(self, query, unfiltered: bool, cap: int) -> RowCount:
        id_column = self._id_column()
        if id_column is None:
            id_column = list(self.model.__table__.primary_key.columns)[0]
        if unfiltered:
            return table_count(query, id_column, self.model.__table__.name)
        return capped_count(query, id_column, cap)

    def _keyset_list(self, query, key: SortKey, page: int, size: int, unfiltered: bool,
                     cap: int):
        after = key.parse(request.args.get("after"))
        before = None if after else key.parse(request.args.get("before"))
        offset = page * size if after is None and before is None else 0
        if offset > MAX_OFFSET_ROWS:
            flash(f"Page {page + 1:,} is further than page numbers reach on this list; use "
                  "Next and Previous. Here is its first page.", "warning")
            offset = 0
        if unfiltered:
            result = keyset_page(query.options(*self.list_loads()), key, size=size,
                                 after=after, before=before, offset=offset)
            if result.is_first and result.next_token is None:
                count = RowCount(len(result.rows))  # the whole list is on this page
            else:
                count = self._count(query, unfiltered, cap)
        else:
            # Counted first: when the matches are few enough to count, the page is
            # ordered from them rather than found by reading the sort index.
            count = self._count(query, unfiltered, cap)
            source = (within_matches(query, key, self.model, self.list_loads())
                      if count.exact else query.options(*self.list_loads()))
            result = keyset_page(source, key, size=size, after=after, before=before,
                                 offset=offset)
        listing = Listing(
            count, keyset=True,
            first_url=None if result.is_first else self._page_url(),
            prev_url=self._page_url(before=result.prev_token) if result.prev_token else None,
            next_url=self._page_url(after=result.next_token) if result.next_token else None)
        return result.rows, listing

    def _numbered_list(self, query, sort_column, sort_desc, page: int, size: int,
                       unfiltered: bool, cap: int):
        query, _joins = self._apply_sorting(query, {}, sort_column, sort_desc)
        query = query.order_by(*self.model.__table__.primary_key.columns)
        rows = query.options(*self.list_loads()).limit(size + 1).offset(page * size).all()
        has_next = len(rows) > size
        rows = rows[:size]
        if page == 0 and not has_next:
            count = RowCount(len(rows))
        else:
            count = self._count(query.order_by(None), unfiltered, cap)
        return rows, Listing(count, keyset=False, has_next=has_next)

    def _page_url(self, **position: str | None) -> str:
        """This list's address with its arguments, at ``position`` (``after=`` /
        ``before=``), or at its start without one."""
        args = [(k, v) for k, v in request.args.items(multi=True)
                if k not in ("page", *KEYSET_ARGS)]
        args += [(k, v) for k, v in position.items() if v]
        url = self.get_url(".index_view")
        return f"{url}?{urlencode(args)}" if args else url

    def _get_list_extra_args(self):
        # A new sort, search, filter or page size starts at the list's first page.
        view_args = super()._get_list_extra_args()
        for name in KEYSET_ARGS:
            view_args.extra_args.pop(name, None)
        return view_args

    def render(self, template, **kwargs):
        if template == self.list_template:
            kwargs.setdefault("listing", g.pop("console_listing", None))
        model = kwargs.get("model")
        if model is not None and template == self.details_template:
            kwargs.setdefault("breadcrumbs", self.record_breadcrumbs(model))
            kwargs.setdefault("back_url", return_target(referrer=False))
        elif model is not None and template == self.edit_template:
            kwargs.setdefault("breadcrumbs", then(self.record_breadcrumbs(model), "Edit"))
        elif template == self.create_template:
            kwargs.setdefault("breadcrumbs", [(self.name, self.get_url(".index_view")),
                                              ("New", None)])
        return super().render(template, **kwargs)

    def record_breadcrumbs(self, model) -> list[tuple[str, str | None]]:
        """The trail of a record's page: its kind's own (see :mod:`.navigation`), else
        this view's list and the record."""
        return trail(model) or [(self.name, self.get_url(".index_view")), (str(model), None)]

    # ----------------------------------------------------------------------- the list

    @expose("/")
    def index_view(self):
        """The list, once its address is checked (see :meth:`list_argument_problems`)."""
        problems, refused = self.list_argument_problems()
        if problems:
            for problem in problems:
                flash(problem, "error")
            kept = [(k, v) for k, v in request.args.items(multi=True) if k not in refused]
            url = self.get_url(".index_view")
            return redirect(f"{url}?{urlencode(kept)}" if kept else url, 303)
        try:
            return super().index_view()
        except (DataError, ProgrammingError, OverflowError):
            # Everything the address holds was checked above; this is the last resort.
            db.session.rollback()
            log.warning("The %s list could not be built for %s", self.endpoint,
                        shown(request.full_path, 300), exc_info=True)
            abort(400, "This list cannot be shown with these filters or this search. Open "
                       "the list again from the menu and change them.")

    def list_argument_problems(self) -> tuple[list[str], set[str]]:
        """What is wrong with the list's address: (messages, the arguments to leave out)."""
        problems: list[str] = []
        refused: set[str] = set()

        def refuse(name: str, message: str) -> None:
            if name not in refused:
                refused.add(name)
                problems.append(message)

        for name, value in request.args.items(multi=True):
            if has_control_characters(name) or has_control_characters(value):
                what = "the search" if name == "search" else f"“{shown(name)}”"
                refuse(name, f"Remove the control characters (such as NUL) from {what}; "
                             "it was left out.")
            elif name == "page":
                if value and not (_PAGE.fullmatch(value) and int(value) <= MAX_PAGE):
                    refuse(name, f"“{shown(value)}” is not a page of this list, so it opens "
                                 "at its first page.")
            elif name == "page_size":
                sizes = sorted({*self.page_size_options, self.page_size})
                if value and value != "0" and not (
                        value.isdigit() and value.isascii() and int(value) in sizes):
                    refuse(name, f"“{shown(value)}” is not a page size of this list "
                                 f"({', '.join(map(str, sizes))}), so it shows "
                                 f"{self.page_size} rows a page.")
            elif name == "sort":
                if not self._sortable_index(value):
                    refuse(name, f"This list cannot be sorted by column “{shown(value)}”, so "
                                 "it is in its usual order.")
            elif name == "desc":
                if value not in ("", "0", "1"):
                    refuse(name, f"“{shown(value)}” is not a sort direction (0 or 1), so the "
                                 "list is sorted the usual way.")
            elif name == "search":
                if len(value) > MAX_SEARCH:
                    refuse(name, f"Search for at most {MAX_SEARCH} characters; the search "
                                 "was left out.")
            elif name.startswith("flt"):
                problem = self._filter_argument_problem(name, value)
                if problem:
                    refuse(name, f"{problem} The filter was left out.")
            elif name in KEYSET_ARGS:
                continue  # checked below, once the order is known
            elif len(name) > 100 or len(value) > MAX_ARGUMENT:
                refuse(name, f"“{shown(name)}” is too long for a list address; it was "
                             "left out.")
        self._position_problems(refuse, refused)
        return problems, refused

    def _position_problems(self, refuse, refused: set[str]) -> None:
        """``after`` / ``before``: one of them, once, a position in the list's order."""
        given = [name for name in KEYSET_ARGS if name in request.args and name not in refused]
        if not given:
            return
        key = self._requested_sort_key(refused)
        for name in given:
            values = request.args.getlist(name)
            if key is None:
                refuse(name, "This list pages by page number, not from a row; it opens at "
                             "its first page.")
            elif len(values) > 1 or (name == "before" and "after" in given):
                refuse(name, "This page link names more than one place in the list; it "
                             "opens at its first page.")
            elif key.parse(values[0]) is None:
                refuse(name, "This page link is not one this list makes, or belongs to "
                             "another order of it; the list opens at its first page.")

    def _sortable_index(self, value: str) -> bool:
        if not (value.isdigit() and value.isascii() and len(value) <= 4):
            return False
        column = self._get_column_by_idx(int(value))
        return column is not None and column[0] in self._sortable_columns

    def _filter_argument_problem(self, name: str, value: str) -> str | None:
        """As Flask-Admin reads ``flt<position>_<filter>``; unknown filters are refused."""
        _position, _, key = name[3:].partition("_")
        found = (self._filter_args or {}).get(key) if key else None
        if found is None:
            return f"This list has no filter “{shown(name)}”."
        return filter_value_problem(found[1], value)

    # ----------------------------------------------------------------------- one record

    def record_key(self, raw) -> tuple | None:
        """The primary key an ``id`` from an address names, or None when it cannot name a
        record (wrong type, out of range, too long, control characters, several ids)."""
        if not isinstance(raw, str) or not raw or len(raw) > MAX_RECORD_ID \
                or has_control_characters(raw):
            return None
        parts = tools.iterdecode(raw)
        columns = self.model.__mapper__.primary_key
        # exactly as Flask-Admin writes ids (get_pk_value): "1.5" is not a way to say 15
        if len(parts) != len(columns) or ",".join(map(tools.escape, parts)) != raw:
            return None
        key = tuple(column_value(column, part) for column, part in zip(columns, parts, strict=True))
        return None if any(part is None for part in key) else key

    def get_one(self, id):
        key = self.record_key(id)
        return None if key is None else db.session.get(self.model, key,
                                                       options=self.details_loads())

    def _refuse_record_id(self):
        """A redirect to the list with a message when the address names no record."""
        raw = get_mdict_item_or_list(request.args, "id")
        if raw is None or raw == "":
            flash("Choose a record from the list to open it.", "error")
        elif self.record_key(raw) is None:
            given = ", ".join(raw) if isinstance(raw, (list, tuple)) else raw
            flash(f"“{shown(given)}” is not the id of a record in {self.name}; choose one "
                  "from the list.", "error")
        else:
            return None
        return redirect(self.get_url(".index_view"), 303)

    @expose("/details/")
    def details_view(self):
        if self.can_view_details:
            refusal = self._refuse_record_id()
            if refusal is not None:
                return refusal
        return super().details_view()

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        if self.can_edit:
            refusal = self._refuse_record_id()
            if refusal is not None:
                return refusal
        return super().edit_view()

    @expose("/action/", methods=("POST",))
    def action_view(self):
        """A list action, once every selected row id is one a record can have."""
        bad = [i for i in request.form.getlist("rowid") if self.record_key(i) is None]
        if bad:
            flash(f"“{shown(bad[0])}” is not the id of a record in {self.name}; nothing was "
                  "changed. Select the rows in the list and try again.", "error")
            return redirect(self.get_url(".index_view"), 303)
        return super().action_view()


#: the admin-only menu of raw tables
DATA_CATEGORY = "Data"


class DataTableView(ReadOnlyModelView):
    """A raw table for admins (the Data menu): rows other pages show in their context,
    such as order items on an order or lines on a transaction."""

    permission = Permission.DATA_READ


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
        return console_form(self.create_form_class or super().get_create_form())

    def get_edit_form(self):
        return console_form(self.edit_form_class or super().get_edit_form())

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

    def get_save_return_url(self, model, is_created: bool = False) -> str:
        """Create and Save land on the record, where the next step usually is."""
        if self.can_view_details and getattr(model, "id", None) is not None:
            return self.get_url(".details_view", id=model.id)
        return super().get_save_return_url(model, is_created)

    def _apply(self, operation):
        ok, result = run_domain(operation)
        if not ok:
            return False
        return result if result is not None else True

    def create_from_form(self, form):
        raise NotImplementedError

    def update_from_form(self, form, model):
        raise NotImplementedError


def console_form(form_class: type) -> type[ConsoleForm]:
    """``form_class`` refusing control characters like every console form: itself when it
    derives from ConsoleForm, else a subclass of it and ConsoleForm."""
    if issubclass(form_class, ConsoleForm):
        return form_class
    metaclass: Any = type(form_class)
    return metaclass(form_class.__name__, (form_class, ConsoleForm),
                     {"__module__": form_class.__module__})


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
