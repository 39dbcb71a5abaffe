"""List and detail addresses of every model view: bad values are messages, never a 500.

The base views (``views/base.py``) check the page, page size, sort, search, every filter
value and every record id before they query, on SQLite and PostgreSQL alike; a bad value
is left out with a message (a flash and a 303 to the list without it).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask_admin.contrib.sqla.filters import DateEqualFilter, IntEqualFilter
from sqlalchemy import JSON, func, select, text
from sqlalchemy.exc import DataError

from backoffice.extensions import db
from backoffice.models import AuditEvent, Order, OrderStatus, StaffUser
from backoffice.views.base import (
    ConsoleForm,
    EnumValueEqualFilter,
    EnumValueInListFilter,
    ReadOnlyModelView,
)
from backoffice.views.forms import CONTROL_MESSAGE

HUGE = "99999999999999999999"


def model_views(app) -> list[ReadOnlyModelView]:
    views = [v for v in app.extensions["admin"][0]._views if hasattr(v, "model")]
    assert views and all(isinstance(v, ReadOnlyModelView) for v in views)
    return views


def view_of(app, endpoint: str) -> ReadOnlyModelView:
    (view,) = [v for v in model_views(app) if v.endpoint == endpoint]
    return view


def filter_arg(view, column: str, filter_class) -> str:
    """The ``flt0_<n>`` argument of ``view``'s filter ``filter_class`` on ``column``."""
    for key, (_index, flt) in view._filter_args.items():
        if type(flt) is filter_class and getattr(flt.column, "key", None) == column:
            return f"flt0_{key}"
    raise AssertionError(f"{view.endpoint} has no {filter_class.__name__} on {column}")


def flashes(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", m) for m in re.findall(
        r'<div class="alert[^"]*"[^>]*>(.*?)</div>', html, re.S))


def assert_left_out(client, url: str, query: dict, name: str, message: str) -> str:
    """``query[name]`` is refused: a 303 to the list without it, then the message."""
    response = client.get(url, query_string=query)
    assert response.status_code == 303, (url, query, response.data[:1000])
    location = urlsplit(response.headers["Location"])
    assert location.path == url
    kept = dict(parse_qsl(location.query, keep_blank_values=True))
    assert name not in kept
    assert kept == {k: v for k, v in query.items() if k != name}
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert message in flashes(html), flashes(html)
    return html


# --------------------------------------------------------------------------- every view


BAD_LIST_ARGS = [
    ("page", "-1"), ("page", "abc"), ("page", HUGE), ("page", "²"), ("page", "٣"),
    ("page", "1" * 5000), ("page_size", HUGE), ("page_size", "7"), ("page_size", "-50"),
    ("sort", "99"), ("sort", "-1"), ("sort", "abc"), ("sort", HUGE), ("desc", "yes"),
    ("search", "a\x00b"), ("search", "x" * 10_000), ("flt0_0", "\x00"), ("flt0_0", "a\x00b"),
    ("flt0_999", "x"), ("flt", "x"), ("url", "\x00"), ("\x00", "x"),
]


def test_every_list_leaves_out_bad_arguments_with_a_message(app, demo, client_as):
    client = client_as("admin")
    for view in model_views(app):
        url = f"/admin/{view.endpoint}/"
        for name, value in BAD_LIST_ARGS:
            response = client.get(url, query_string={name: value})
            assert response.status_code == 303, (url, name, value, response.data[:1000])
            location = urlsplit(response.headers["Location"])
            assert location.path == url and location.query == "", (url, name, value)
        page = client.get(url)
        assert page.status_code == 200
        assert flashes(page.get_data(as_text=True))  # the messages are shown on the list


def test_every_list_takes_the_arguments_its_own_links_make(app, demo, client_as):
    client = client_as("admin")
    for view in model_views(app):
        url = f"/admin/{view.endpoint}/"
        sortable = [i for i, (name, _) in enumerate(view._list_columns)
                    if name in view._sortable_columns]
        queries = [{"page": "1"}, {"page": "999999"}, {"page_size": "20"}, {"page_size": "100"},
                   {"search": "a b", "page": "0"}, {"desc": "1"}]
        queries += [{"sort": str(i), "desc": "1"} for i in sortable]
        for query in queries:
            response = client.get(url, query_string=query)
            assert response.status_code == 200, (url, query, response.data[:1000])


def test_json_columns_are_never_sortable(app):
    for view in model_views(app):
        for name, column in view._sortable_columns.items():
            assert not isinstance(getattr(column, "type", None), JSON), (view.endpoint, name)


def test_the_audit_log_cannot_be_sorted_by_its_details(app, demo, client_as):
    client = client_as("admin")
    view = view_of(app, "auditevent")
    details = [name for name, _ in view._list_columns].index("details")
    assert_left_out(client, "/admin/auditevent/", {"sort": str(details)}, "sort",
                    "cannot be sorted by column")
    assert client.get("/admin/auditevent/", query_string={"sort": "0"}).status_code == 200


# --------------------------------------------------------------------------- messages


def test_page_messages_and_other_arguments_are_kept(app, demo, client_as):
    client = client_as("admin")
    for page in ("-1", "abc", HUGE, "①"):
        assert_left_out(client, "/admin/profile/", {"page": page, "search": "example"},
                        "page", "is not a page of this list, so it opens at its first page")
    assert_left_out(client, "/admin/profile/", {"page_size": HUGE}, "page_size",
                    "is not a page size of this list (20, 50, 100)")
    assert_left_out(client, "/admin/profile/", {"sort": "99", "desc": "1"}, "sort",
                    "This list cannot be sorted by column “99”")


def test_search_messages(app, demo, client_as):
    client = client_as("admin")
    assert_left_out(client, "/admin/profile/", {"search": "ann\x00"}, "search",
                    "Remove the control characters (such as NUL) from the search")
    assert_left_out(client, "/admin/profile/", {"search": "x" * 10_000}, "search",
                    "Search for at most 200 characters")
    found = client.get("/admin/profile/", query_string={"search": "x" * 200})
    assert found.status_code == 200


def test_enum_filters_take_their_own_choices(app, appctx, demo, client_as):
    client = client_as("admin")
    view = view_of(app, "order")
    equals = filter_arg(view, "status", EnumValueEqualFilter)
    in_list = filter_arg(view, "status", EnumValueInListFilter)
    with appctx():
        paid = db.session.scalar(select(func.count(Order.id))
                                 .where(Order.status == OrderStatus.PAID))
        numbers = db.session.scalars(select(Order.number)
                                     .where(Order.status == OrderStatus.PAID)).all()
    assert paid > 0
    response = client.get("/admin/order/", query_string={equals: "paid", "page_size": "100"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert all(number in html for number in numbers)
    assert client.get("/admin/order/", query_string={in_list: "paid, cancelled"}
                      ).status_code == 200


@pytest.mark.parametrize("value", ["nope", "PAID", "paid,nope", "\x00", HUGE])
def test_unknown_enum_choices_are_a_message(app, demo, client_as, value):
    client = client_as("admin")
    view = view_of(app, "order")
    name = filter_arg(view, "status", EnumValueInListFilter if "," in value
                      else EnumValueEqualFilter)
    message = ("Remove the control characters" if "\x00" in value
               else "is not a choice of the filter “Status")
    assert_left_out(client, "/admin/order/", {name: value}, name, message)


@pytest.mark.parametrize("value", [HUGE, "-" + HUGE, "2147483648", "²", "①", "٣", "1e3",
                                   "1" * 400, "", "x", " 1", "1_000"])
def test_integer_filters_take_whole_numbers_in_their_column_range(app, demo, client_as, value):
    client = client_as("admin")
    name = filter_arg(view_of(app, "subscription"), "term_months", IntEqualFilter)
    assert_left_out(client, "/admin/subscription/", {name: value}, name,
                    "takes whole numbers from -2,147,483,648 to 2,147,483,647")
    assert client.get("/admin/subscription/", query_string={name: "2147483647"}
                      ).status_code == 200


def test_a_filter_value_is_at_most_500_characters(app, demo, client_as):
    client = client_as("admin")
    name = filter_arg(view_of(app, "subscription"), "term_months", IntEqualFilter)
    assert_left_out(client, "/admin/subscription/", {name: "1" * 5000}, name,
                    "takes at most 500 characters")


@pytest.mark.parametrize("value", ["2026-02-30", "10000-01-01", "x", "2026-13-01", ""])
def test_date_filters_take_calendar_dates(app, demo, client_as, value):
    client = client_as("admin")
    name = filter_arg(view_of(app, "subscription"), "start_date", DateEqualFilter)
    assert_left_out(client, "/admin/subscription/", {name: value}, name,
                    "Dates are written YYYY-MM-DD")


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "2028-02-29"])
def test_far_dates_are_valid_filters(app, demo, client_as, value):
    client = client_as("admin")
    name = filter_arg(view_of(app, "subscription"), "start_date", DateEqualFilter)
    assert client.get("/admin/subscription/", query_string={name: value}).status_code == 200


def test_an_unknown_filter_is_a_message(app, demo, client_as):
    client = client_as("admin")
    assert_left_out(client, "/admin/profile/", {"flt0_999": "x"}, "flt0_999",
                    "This list has no filter “flt0_999”")


def test_a_database_error_while_building_a_list_is_a_400_page(
        app, demo, client_as, monkeypatch, is_postgres):
    client = client_as("admin")
    view = view_of(app, "profile")

    def failing_get_list(*_args, **_kwargs):
        if is_postgres:  # a real one: the transaction is aborted until rolled back
            db.session.execute(text("SELECT CAST('abc' AS integer)"))
        raise DataError("SELECT ...", {}, ValueError("simulated"))

    monkeypatch.setattr(view, "get_list", failing_get_list)
    response = client.get("/admin/profile/")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "This list cannot be shown with these filters or this search" in html
    assert response.headers["X-Request-ID"] in html
    monkeypatch.undo()
    assert client.get("/admin/profile/").status_code == 200


# --------------------------------------------------------------------------- record ids


BAD_IDS = ["abc", "None", "\x00", "1\x00", HUGE, "-" + HUGE, "²", "①", "1,2", "1.5",
           "x" * 10_000, " 1"]


def test_details_with_an_id_that_names_no_record_go_back_to_the_list(app, demo, client_as):
    client = client_as("admin")
    for view in model_views(app):
        url = f"/admin/{view.endpoint}/"
        for query in [{"id": v} for v in BAD_IDS] + [{}, {"id": ""}]:
            response = client.get(f"{url}details/", query_string=query)
            # 302: an id a text key could have, but no record has ("Record does not exist")
            assert response.status_code in (302, 303), (view.endpoint, query)
            assert urlsplit(response.headers["Location"]).path == url
        html = client.get(url).get_data(as_text=True)
        assert "is not the id of a record in" in flashes(html)
        assert "Choose a record from the list to open it" in flashes(html)


def test_a_missing_record_is_a_message_too(app, demo, client_as):
    client = client_as("admin")
    response = client.get("/admin/profile/details/", query_string={"id": "2147483647"},
                          follow_redirects=True)
    assert response.status_code == 200
    assert "Record does not exist" in flashes(response.get_data(as_text=True))


def test_details_of_a_record_with_a_text_key(app, demo, client_as):
    client = client_as("admin")
    assert client.get("/admin/counter/details/", query_string={"id": "order"}
                      ).status_code == 200
    too_long = client.get("/admin/counter/details/", query_string={"id": "o" * 33})
    assert too_long.status_code == 303


def test_edit_with_an_id_that_names_no_record_goes_back_to_the_list(app, demo, client_as):
    client = client_as("admin")
    editable = [v for v in model_views(app) if getattr(v, "allow_edit", False)]
    assert editable
    for view in editable:
        url = f"/admin/{view.endpoint}/"
        for query in [{"id": v} for v in BAD_IDS] + [{}]:
            for method in (client.get, client.post):
                response = method(f"{url}edit/", query_string=query, data={"name": "x"})
                assert response.status_code == 303, (view.endpoint, query)
                assert urlsplit(response.headers["Location"]).path == url


@pytest.mark.parametrize("rowid", ["²", "①", HUGE, "abc", "\x00", "1,2"])
def test_a_list_action_on_a_bad_row_id_changes_nothing(app, appctx, staff, client_as, rowid):
    other = staff("support")
    client = client_as("admin")
    with appctx():
        events = db.session.scalar(select(func.count(AuditEvent.id)))
    response = client.post("/admin/staffuser/action/", data={
        "action": "deactivate", "rowid": [str(other), rowid]})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "nothing was changed" in flashes(page)
    with appctx():
        assert db.session.get(StaffUser, other).active
        assert db.session.scalar(select(func.count(AuditEvent.id))) == events


@pytest.mark.parametrize("target", ["\r\nSet-Cookie: x=1", "\x00", "/admin/\n", "x" * 3000])
def test_a_return_address_no_page_makes_is_a_400_page(app, appctx, staff, client_as, target):
    other = staff("support")
    client = client_as("admin")
    details = client.get("/admin/staffuser/details/", query_string={"id": other, "url": target})
    assert details.status_code == 400
    assert "The return address in this link is not one the console makes" in \
        details.get_data(as_text=True)
    action = client.post("/admin/staffuser/action/", data={
        "action": "deactivate", "rowid": str(other), "url": target})
    assert action.status_code == 400
    with appctx():
        assert db.session.get(StaffUser, other).active


# --------------------------------------------------------------------------- forms


def test_every_model_form_refuses_control_characters(app):
    for view in model_views(app):
        assert issubclass(view.form_base_class, ConsoleForm), view.endpoint
        for form_class in (view._create_form_class, view._edit_form_class,
                           view.get_action_form(), view.get_delete_form()):
            assert issubclass(form_class, ConsoleForm), (view.endpoint, form_class)


@pytest.mark.parametrize("url, data", [
    ("/admin/staffuser/new/", {"email": "new@staff.test", "name": "New\x00Person",
                               "role": "support", "password": ""}),
    ("/admin/certificatetype/new/", {"code": "D\x00V", "name": "Domain", "kind": "traditional",
                                     "yearly_price": "100"}),
])
def test_a_model_form_with_a_nul_byte_writes_nothing(app, appctx, client_as, url, data):
    client = client_as("admin")
    with appctx():
        events = db.session.scalar(select(func.count(AuditEvent.id)))
    response = client.post(url, data=data)
    assert response.status_code == 200
    assert CONTROL_MESSAGE in response.get_data(as_text=True)
    with appctx():
        assert db.session.scalar(select(func.count(AuditEvent.id))) == events
