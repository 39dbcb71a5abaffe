"""The back-office console: ``create_app`` assembles configuration, extensions and views."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, make_response, request, url_for
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from limits.errors import StorageError
from markupsafe import escape
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from . import audit, cli, staff
from .config import DEFAULT_SECRET_KEY, DEV_AUDIT_KEY, MIN_AUDIT_KEY_LENGTH, from_environment
from .extensions import configure_sqlite, csrf, db, login_manager, mail, migrate
from .jobs import start_in_process
from .logconfig import REQUEST_ID
from .permissions import Permission, has_permission
from .views import init_admin, login, security, throttle
from .views.base import fmt_date, fmt_datetime, fmt_money, fmt_relative
from .views.forms import has_control_characters

PROJECT_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def create_app(config: Mapping | None = None) -> Flask:
    """Build an app; ``config`` overrides any setting (tests pass their database here)."""
    app = ConsoleFlask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    # Before any route exists: every <int:...> in the console's addresses is a record id.
    app.url_map.converters["int"] = RecordIdConverter
    app.config.update(from_environment(app.instance_path))
    if config:
        app.config.update(config)
    _refuse_default_secret(app)
    _require_audit_key(app)
    _trust_proxies(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True,
                     compare_type=True)
    csrf.init_app(app)
    throttle.init_app(app)
    login_manager.init_app(app)
    mail.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to open that page."
    login_manager.session_protection = "strong"

    audit.use_key(_current_audit_key)
    if app.config.get("PASSWORD_HASH_METHOD"):
        staff.use_password_hash_method(app.config["PASSWORD_HASH_METHOD"])

    app.register_blueprint(login.bp)
    init_admin(app)
    cli.register(app)
    app.jinja_env.globals.update(
        fmt_money=fmt_money, fmt_date=fmt_date, fmt_datetime=fmt_datetime,
        fmt_relative=fmt_relative,
        has_permission=has_permission, Permission=Permission,
    )
    _register_request_id(app)
    _register_error_pages(app)
    security.register(app)

    if app.config.get("SCHEDULER_ENABLED") and not app.config.get("TESTING"):
        start_in_process(app)
    return app


def _refuse_default_secret(app: Flask) -> None:
    """Never run a real deployment with the key that ships in the code."""
    if app.config["SECRET_KEY"] == DEFAULT_SECRET_KEY and not (app.debug or app.testing):
        raise RuntimeError(
            "SECRET_KEY is the built-in development key. Set SECRET_KEY in the environment "
            "(or run with FLASK_DEBUG=1 for local development)."
        )


def _require_audit_key(app: Flask) -> None:
    """No real deployment without its own audit key; debug and testing runs without one
    use the development key."""
    key = app.config.get("AUDIT_KEY") or ""
    if app.debug or app.testing:
        app.config["AUDIT_KEY"] = key or DEV_AUDIT_KEY
        return
    if not key or key == DEV_AUDIT_KEY:
        raise RuntimeError(
            "AUDIT_KEY is not set. Set AUDIT_KEY in the environment to a random key of at "
            f"least {MIN_AUDIT_KEY_LENGTH} characters, kept out of the database (or run with "
            "FLASK_DEBUG=1 for local development)."
        )
    if len(key) < MIN_AUDIT_KEY_LENGTH:
        raise RuntimeError(f"AUDIT_KEY is too short: use at least {MIN_AUDIT_KEY_LENGTH} "
                           "random characters.")


def _current_audit_key() -> str:
    """The audit key of the app in whose context an event is hashed."""
    return current_app.config["AUDIT_KEY"]


def _trust_proxies(app: Flask) -> None:
    """Behind ``PROXY_FIX`` reverse proxies, take the client address and scheme from the
    last that many X-Forwarded-For / X-Forwarded-Proto entries (those the proxies wrote);
    with 0 the headers are ignored, so a client cannot choose its own address. The Host
    header is the proxy's to pass on (nginx: ``proxy_set_header Host $host``); an
    X-Forwarded-Host is never trusted, since links such as password-reset links are built
    from the host."""
    value = app.config.get("PROXY_FIX", 0)
    hops = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdigit():
        hops = int(value)
    if hops is None or hops < 0:
        raise RuntimeError(f"PROXY_FIX={value!r} must be the number of reverse proxies in "
                           "front of the app (0 when there is none).")
    app.config["PROXY_FIX"] = hops
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=0, x_port=0, x_prefix=0)


#: what a request may call itself in ``X-Request-ID`` (anything else gets a fresh id)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_REQUEST_ID_KEY = "backoffice.request_id"
_REQUEST_ID_TOKEN = "backoffice.request_id_token"


def request_id() -> str:
    """This request's id: the caller's ``X-Request-ID`` when it is a sane token (at most
    64 of ``A-Z a-z 0-9 . _ -``), else a fresh uuid4. Kept on ``g.request_id``, sent
    back in the ``X-Request-ID`` header and put on every log record of the request."""
    environ = request.environ
    rid = environ.get(_REQUEST_ID_KEY)
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        environ[_REQUEST_ID_KEY] = rid
        environ[_REQUEST_ID_TOKEN] = REQUEST_ID.set(rid)
    g.request_id = rid
    return rid


def _register_request_id(app: Flask) -> None:
    # First of all before-request functions, so even a refusal by CSRF or the rate limit
    # is logged and answered with the id.
    def _take_request_id() -> None:
        request_id()

    app.before_request_funcs.setdefault(None, []).insert(0, _take_request_id)

    @app.after_request
    def _send_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response

    @app.teardown_request
    def _forget_request_id(_error=None) -> None:
        token = request.environ.pop(_REQUEST_ID_TOKEN, None)
        if token is not None:
            with suppress(ValueError):  # set in another context, which ends with it
                REQUEST_ID.reset(token)


#: code -> (title, what the staff member can do about it)
ERROR_PAGES = {
    400: ("Bad request", "The console could not use what was sent. Go back, check the "
                         "form or the address, and try again."),
    403: ("Not allowed", "Your role does not allow this. Ask an admin if you need it."),
    404: ("Not found", "There is nothing at this address. Check the link, or find the "
                       "record through the menu."),
    405: ("Not allowed here", "This address does not take that kind of request. Go back "
                              "and use the buttons on the page."),
    413: ("Too much data", "What was sent is larger than the console accepts. Go back and "
                           "send less at once, for example shorter text."),
    429: ("Too many attempts", "Too many sign-in attempts. Wait a minute and try again."),
    503: ("Unavailable", "The console cannot do this right now. Try again in a minute; if it "
                         "goes on, give an admin the request id below."),
    500: ("Something went wrong", "The console hit an error and could not finish this "
                                  "request. Check the record before you try again; if it "
                                  "happens again, give an admin the request id below."),
}
CSRF_TEXT = ("This form has expired or did not come from this console. Go back, reload the "
             "page and try again.")

_PLAIN_ERROR_PAGE = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    "<title>{code} {title} - Back-office</title></head><body>"
    "<h1>{code} {title}</h1><p>{text}</p>"
    '<p><a {back_attribute}href="{back_url}" data-testid="go-back">Go back</a> · '
    '<a href="{dashboard}">Back to the dashboard</a></p>'
    "<p>Request id: <code>{request_id}</code></p>"
    '<script src="{console_js}"></script></body></html>'
)


#: the largest id a table holds (INTEGER primary keys on PostgreSQL)
MAX_RECORD_ID = 2 ** 31 - 1


class RecordIdConverter(IntegerConverter):
    """``<int:...>`` in the console's addresses: ASCII digits, at most MAX_RECORD_ID, so an
    address with a bigger or odd number is a 404 page rather than a database error."""

    regex = r"[0-9]+"

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_RECORD_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class ConsoleFlask(Flask):
    """Flask, except that unhandled errors are logged by the 500 page's handler (with the
    request id and the rollback it did) instead of by Flask beforehand as well."""

    def log_exception(self, exc_info) -> None:
        pass


#: the "Go back" link when the referrer is unknown: console.js goes back in the history
#: (a ``javascript:`` address would be refused by the Content-Security-Policy)
HISTORY_BACK = "#"


def _back_url() -> str:
    """The page the staff member came from when it is on this site, else HISTORY_BACK."""
    referrer = request.referrer or ""
    parts = urlsplit(referrer)
    if parts.scheme in ("http", "https") and parts.netloc == request.host \
            and referrer != request.url and not has_control_characters(referrer):
        return referrer
    return HISTORY_BACK


def error_page(code: int, text: str | None = None, title: str | None = None):
    """The console's page for an HTTP error ``code``: in the layout (menu when signed in),
    with what to do, a way back and the request id. Never fails: if the layout cannot be
    rendered, a plain page says the same."""
    default_title, default_text = ERROR_PAGES.get(code) or ERROR_PAGES[500 if code >= 500 else 400]
    context = {"code": code, "title": title or default_title, "text": text or default_text,
               "request_id": request_id(), "back_url": _back_url()}
    try:
        admin = current_app.extensions["admin"][0]
        return admin.index_view.render("error.html", **context), code
    except Exception:
        log.exception("The %s page could not be rendered in the layout; sent a plain one", code)
    try:
        dashboard, console_js = url_for("admin.index"), url_for("static", filename="console.js")
    except Exception:
        dashboard, console_js = "/admin/", "/static/console.js"
    back_attribute = "data-history-back " if context["back_url"] == HISTORY_BACK else ""
    page = _PLAIN_ERROR_PAGE.format(dashboard=escape(dashboard), console_js=escape(console_js),
                                    back_attribute=back_attribute,
                                    **{k: escape(v) for k, v in context.items()})
    return page, code, {"Content-Type": "text/html; charset=utf-8"}


def _http_error(error: HTTPException):
    """Any HTTP error raised while handling a request (abort, routing, CSRF, limits)."""
    if error.code is None or error.code < 400:
        return error
    text = None
    if isinstance(error, CSRFError):
        text = CSRF_TEXT
    elif isinstance(error, RateLimitExceeded) and error.limit.error_message:
        text = error.description  # the sign-in limits' sentence, with the wait
    elif error.code not in ERROR_PAGES and error.code < 500:
        text = error.description  # Werkzeug's sentence for a code we have none for
    elif error.description and error.description != type(error).description \
            and error.code not in (429, 500):
        text = error.description  # a sentence the code gave with abort(code, "...")
    title = ERROR_PAGES[error.code][0] if error.code in ERROR_PAGES else error.name
    body, code, *headers = error_page(error.code, text, title)
    response = make_response(body, code, *headers)
    for name, value in error.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def _server_error(error: InternalServerError):
    """An unhandled exception: log it with the request id, roll back, show the 500 page."""
    original = error.original_exception
    rid = request_id()
    exc_info = (type(original), original, original.__traceback__) if original else None
    log.error("Unhandled error in request %s: %s %s", rid, request.method, request.path,
              exc_info=exc_info, extra={"request_id": rid})
    try:
        db.session.rollback()
    except Exception:
        log.exception("Rolling back after the error in request %s failed", rid)
    return error_page(500)


#: the 503 page's sentence when the sign-in attempts cannot be counted
LIMITER_DOWN_TEXT = ("Signing in is unavailable for a moment: the console cannot reach the "
                     "store that counts sign-in attempts. Try again in a minute; if it goes "
                     "on, tell an admin (with the request id below).")


def _limiter_down(error: StorageError):
    """The limiter's storage (Redis) failed: the limited request (a sign-in) is refused
    rather than let through uncounted."""
    cause = error.storage_error
    log.error("Rate limit storage failed in request %s (%s %s): %s: %s; the request is refused",
              request_id(), request.method, request.path, type(cause).__name__, cause)
    body, code, *headers = error_page(503, LIMITER_DOWN_TEXT, "Sign-in unavailable")
    response = make_response(body, code, *headers)
    response.headers["Retry-After"] = "60"
    return response


def _register_error_pages(app: Flask) -> None:
    """The console's error pages (see :func:`error_page`) for every HTTP error."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(StorageError, _limiter_down)


__all__ = ["create_app", "error_page", "request_id"]
