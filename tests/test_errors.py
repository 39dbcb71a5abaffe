"""Error pages, request ids and the request body limit.

Every HTTP error is a page in the console's layout (the menu when signed in) with a
sentence saying what to do, a way back and the request id; the id comes back in the
``X-Request-ID`` header of every response and is on every log record of the request.
"""

from __future__ import annotations

import io
import logging
import re

import pytest
from flask import abort, g
from sqlalchemy import func, select

from backoffice.config import from_environment
from backoffice.extensions import db, limiter
from backoffice.logconfig import REQUEST_ID, configure_logging
from backoffice.models import Reseller
from tests import factories
from tests.conftest import count_change_events, login

HEX_ID = re.compile(r"[0-9a-f]{32}")


def request_id_on(html: str) -> str:
    match = re.search(r'data-testid="request-id">([^<]*)<', html)
    assert match, "no request id on the page"
    return match.group(1)


def assert_error_page(response, code: int, text: str, *, signed_in: bool) -> str:
    """The page is the console's error page for ``code``; returns its request id."""
    html = response.get_data(as_text=True)
    assert response.status_code == code, html[:2000]
    assert f'data-code="{code}"' in html
    assert text in html
    assert "Back to the dashboard" in html and 'data-testid="go-back"' in html
    assert ('data-testid="whoami"' in html) is signed_in
    # the menu of a signed-in staff member; nothing of it for a stranger
    assert ('href="/admin/profile/"' in html) is signed_in
    rid = request_id_on(html)
    assert rid == response.headers["X-Request-ID"]
    return rid


# --------------------------------------------------------------------------- pages


def test_not_found_is_a_page_in_the_layout_with_the_menu(client_as):
    client = client_as("support")
    response = client.get("/admin/no-such-page/")
    assert_error_page(response, 404, "There is nothing at this address", signed_in=True)


def test_not_found_for_a_stranger_has_no_menu(app):
    response = app.test_client().get("/no-such-page")
    assert_error_page(response, 404, "There is nothing at this address", signed_in=False)


def test_go_back_returns_to_the_page_the_staff_member_came_from(client_as):
    client = client_as("support")
    came_from = "http://localhost/admin/profile/"
    response = client.get("/admin/nowhere/", headers={"Referer": came_from})
    assert f'href="{came_from}" data-testid="go-back"' in response.get_data(as_text=True)
    # another site is never linked: the browser's history is used instead
    other = client.get("/admin/nowhere/", headers={"Referer": "https://evil.example/"})
    html = other.get_data(as_text=True)
    assert "evil.example" not in html
    assert 'data-history-back href="#" data-testid="go-back"' in html
    assert "history.back" not in html  # no javascript: address: the CSP would refuse it


def test_forbidden_page(client_as):
    client = client_as("support")
    response = client.get("/admin/jobs/")  # admins only
    assert_error_page(response, 403, "Your role does not allow this", signed_in=True)


def test_method_not_allowed_page_keeps_the_allow_header(client_as):
    client = client_as("support")
    response = client.get("/logout")
    assert_error_page(response, 405, "does not take that kind of request", signed_in=True)
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("number", ["2147483648", "99999999999999999999", "9" * 5000, "١٢"])
def test_an_impossible_record_number_in_an_address_is_a_404(client_as, number):
    client = client_as("finance")
    for url in (f"/admin/billing/invoice/{number}", f"/admin/profile/credit/{number}/"):
        assert_error_page(client.get(url), 404, "There is nothing at this address",
                          signed_in=True)


def test_int_url_parts_are_ascii_record_ids(second_app):
    app = second_app()

    @app.route("/record/<int:number>")
    def record(number):
        return str(number)

    client = app.test_client()
    assert client.get("/record/2147483647").get_data(as_text=True) == "2147483647"
    assert client.get("/record/0").get_data(as_text=True) == "0"
    for odd in ("2147483648", "٣", "-1", "1.0"):
        assert client.get(f"/record/{odd}").status_code == 404


def test_bad_request_page_shows_the_sentence_given_to_abort(second_app, client_as):
    app = second_app()

    @app.route("/refuse")
    def refuse():
        abort(400, "Pick a month that is over.")

    response = app.test_client().get("/refuse")
    assert_error_page(response, 400, "Pick a month that is over.", signed_in=False)


def test_other_codes_get_the_page_too(second_app):
    app = second_app()

    @app.route("/teapot")
    def teapot():
        abort(415)

    @app.route("/later")
    def later():
        abort(503)

    client = app.test_client()
    assert_error_page(client.get("/teapot"), 415, "does not support the media type",
                      signed_in=False)
    assert_error_page(client.get("/later"), 503, "give an admin the request id",
                      signed_in=False)


def test_missing_csrf_token_is_a_400_page_that_says_what_to_do(second_app, staff):
    staff("support")
    app = second_app(WTF_CSRF_ENABLED=True)
    response = login(app.test_client(), "support@staff.test")
    assert_error_page(response, 400, "This form has expired or did not come from this console",
                      signed_in=False)


def test_too_many_sign_in_attempts_page(second_app, staff, monkeypatch):
    monkeypatch.setattr(limiter, "enabled", limiter.enabled)
    app = second_app(RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="1 per minute")
    staff("support")
    client = app.test_client()
    login(client, "support@staff.test", "wrong password here")
    response = login(client, "support@staff.test", "wrong password here")
    assert_error_page(response, 429, "Wait a minute and try again", signed_in=False)


# --------------------------------------------------------------------------- 413


TEN_MB = 10 * 1024 * 1024


def test_max_content_length_defaults_to_one_megabyte(app):
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    assert app.config["MAX_FORM_MEMORY_SIZE"] <= app.config["MAX_CONTENT_LENGTH"]
    assert app.config["MAX_FORM_PARTS"] == 1000


def test_max_content_length_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "2097152")
    assert from_environment(str(tmp_path))["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024


def test_a_ten_megabyte_form_gets_the_413_page_and_writes_nothing(app, appctx, client_as):
    client = client_as("admin")
    with appctx():
        before = db.session.scalar(select(func.count(Reseller.id)))
    response = client.post("/admin/reseller/new/", data={
        "company_name": "x" * TEN_MB, "address1": "1 Main Street", "city": "Springfield",
        "postal_code": "12345", "country": "US"})
    assert_error_page(response, 413, "larger than the console accepts", signed_in=True)
    with appctx():
        assert db.session.scalar(select(func.count(Reseller.id))) == before


def test_a_ten_megabyte_sign_in_gets_the_413_page(app):
    response = app.test_client().post("/login", data={"email": "a" * TEN_MB, "password": "x"})
    assert_error_page(response, 413, "larger than the console accepts", signed_in=False)


def test_one_multipart_field_over_the_form_memory_limit_is_refused(app, client_as):
    client = client_as("admin")
    big = "x" * (app.config["MAX_FORM_MEMORY_SIZE"] + 1)  # under MAX_CONTENT_LENGTH
    response = client.post("/admin/reseller/new/", data={"company_name": big},
                           content_type="multipart/form-data")
    assert_error_page(response, 413, "larger than the console accepts", signed_in=True)


def test_a_form_with_more_fields_than_max_form_parts_is_refused(app, client_as):
    client = client_as("admin")
    fields = {f"field{i}": "x" for i in range(app.config["MAX_FORM_PARTS"] + 1)}
    response = client.post("/admin/reseller/new/", data=fields,
                           content_type="multipart/form-data")
    assert_error_page(response, 413, "larger than the console accepts", signed_in=True)


# --------------------------------------------------------------------------- request ids


def test_a_sane_request_id_is_kept_and_returned(second_app):
    app = second_app()

    @app.route("/whoami-request")
    def whoami_request():
        return g.request_id

    client = app.test_client()
    for given in ("abc-123", "req.2026_11_22-0001", "x" * 64):
        response = client.get("/whoami-request", headers={"X-Request-ID": given})
        assert response.headers["X-Request-ID"] == given
        assert response.get_data(as_text=True) == given


@pytest.mark.parametrize("given", ["", "x" * 65, "has space", "new\nline", "<script>",
                                   "semi;colon", "ünïcode", "a/b"])
def test_an_odd_request_id_is_replaced_by_a_fresh_one(second_app, given):
    app = second_app()

    @app.route("/whoami-request")
    def whoami_request():
        return g.request_id

    headers = {"X-Request-ID": given} if "\n" not in given else {}
    response = app.test_client().get("/whoami-request", headers=headers)
    rid = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(rid) and rid != given
    assert response.get_data(as_text=True) == rid


def test_every_response_has_a_request_id_and_each_request_its_own(app, client_as):
    client = client_as("admin")
    responses = [client.get("/admin/"), client.get("/admin/profile/"),
                 client.get("/admin/nowhere"), client.get("/"),
                 client.post("/logout"), app.test_client().get("/login")]
    ids = [r.headers.get("X-Request-ID") for r in responses]
    assert [r.status_code for r in responses] == [200, 200, 404, 302, 303, 200]
    assert all(rid and HEX_ID.fullmatch(rid) for rid in ids)
    assert len(set(ids)) == len(ids)


@pytest.fixture
def root_logger():
    """The root logger, put back as it was afterwards (pytest's own handlers included)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_log_record_of_a_request_carries_its_id(second_app, root_logger):
    configure_logging("INFO")
    stream = io.StringIO()
    root_logger.handlers[0].setStream(stream)
    app = second_app()

    @app.route("/says-hello")
    def says_hello():
        logging.getLogger("backoffice.probe").info("hello from the view")
        return "ok"

    app.test_client().get("/says-hello", headers={"X-Request-ID": "req-42"})
    logging.getLogger("backoffice.probe").info("hello from outside")
    lines = stream.getvalue().splitlines()
    assert any("[req-42] INFO backoffice.probe: hello from the view" in line for line in lines)
    assert any("[-] INFO backoffice.probe: hello from outside" in line for line in lines)
    assert REQUEST_ID.get() == "-"  # nothing leaks into the next request


# --------------------------------------------------------------------------- 500


@pytest.fixture
def production_app(second_app):
    """An app that handles unhandled errors as production does, with a failing route."""
    app = second_app(TESTING=False, PROPAGATE_EXCEPTIONS=False,
                     AUDIT_KEY="production-like-audit-key-0123456789")

    @app.route("/admin/explodes", methods=["GET", "POST"])
    def explodes():
        factories.reseller("Half Written Ltd")  # flushed, never committed
        raise RuntimeError("the disk is on fire")

    return app


def test_an_unhandled_error_is_a_500_page_logged_with_the_request_id(
        production_app, staff, appctx, caplog):
    staff("support")
    client = production_app.test_client()
    assert login(client, "support@staff.test").status_code == 303
    with caplog.at_level(logging.ERROR):
        response = client.get("/admin/explodes", headers={"X-Request-ID": "req-500"})
    assert_error_page(response, 500, "give an admin the request id", signed_in=True)
    assert response.headers["X-Request-ID"] == "req-500"
    assert "the disk is on fire" not in response.get_data(as_text=True)
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(records) == 1, [r.getMessage() for r in records]  # logged once, not twice
    record = records[0]
    assert record.request_id == "req-500" and "req-500" in record.getMessage()
    assert record.exc_info and "the disk is on fire" in str(record.exc_info[1])
    with appctx():  # rolled back: nothing of the failed request was kept
        assert db.session.scalar(select(func.count(Reseller.id))) == 0
        assert count_change_events() == 0


def test_the_500_page_is_sent_even_when_the_layout_cannot_be_rendered(
        production_app, monkeypatch):
    admin = production_app.extensions["admin"][0]

    def broken_render(*_args, **_kwargs):
        raise RuntimeError("the templates are gone")

    monkeypatch.setattr(admin.index_view, "render", broken_render)
    response = production_app.test_client().get("/admin/explodes",
                                                headers={"X-Request-ID": "req-plain"})
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/html")
    assert "500 Something went wrong" in html and "Back to the dashboard" in html
    assert "Go back" in html and "<code>req-plain</code>" in html


def test_unhandled_errors_still_reach_tests_that_expect_them(second_app):
    app = second_app()  # TESTING: Flask propagates the exception

    @app.route("/explodes")
    def explodes():
        raise RuntimeError("expected by this test")

    with pytest.raises(RuntimeError, match="expected by this test"):
        app.test_client().get("/explodes")
