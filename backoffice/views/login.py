"""Sign-in and sign-out pages (the ``auth`` blueprint), the check of the staff session on
every request, the public page of a password reset link, and Flask-Login's user loader.

Signing in takes up to three steps: the password; then, for an account with two-factor
sign-in, a code from the authenticator app (or a recovery code); or, for a role that must
use it and has not yet, the enrolment. Each browser gets a server-side session
(:mod:`backoffice.sessions`) whose random key is the only thing the cookie carries about
it; a session opens the console only once every step is done, and an ended one is
refused on its next request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask_login import current_user, login_user, logout_user
from markupsafe import Markup
from sqlalchemy.exc import OperationalError
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .. import sessions, twofactor
from ..errors import DomainError, InvalidInput
from ..extensions import db, limiter, login_manager
from ..models import StaffRole, StaffSession, StaffUser
from ..staff import LINK_UNKNOWN, ResetLinkUnusable, authenticate, open_reset_link, use_reset_link
from .forms import ConsoleForm, NewPasswordForm
from .throttle import forget_failed_sign_ins, sign_in_limits, two_factor_limits

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

#: the Flask session's entry holding the staff session's key
SESSION_KEY = "staff_session"
#: the Flask session's entry holding the reference to an enrolment this browser started
ENROLMENT_KEY = "two_factor_enrolment"

#: the roles that must use two-factor sign-in when TWO_FACTOR_REQUIRED_ROLES is not set
DEFAULT_REQUIRED_ROLES = "admin,finance"

#: what a browser whose session ended is told, by the reason it ended
ENDED_MESSAGES = {
    "sign-out": "You signed out of that session. Sign in again.",
    "expired": "Your sign-in has expired. Sign in again.",
    "password": "Your password was changed, so you were signed out. Sign in again.",
    "deactivated": "Your account was deactivated.",
    "role": "Your role was changed, so you were signed out. Sign in again.",
    "2fa-reset": "Your two-factor sign-in was reset by an admin, so you were signed out. "
                 "Sign in again to set it up.",
    "2fa-enrol": "Two-factor sign-in was turned on for your account, so you were signed "
                 "out here. Sign in again.",
    "admin": "An admin ended your session. Sign in again.",
}
ENDED_MESSAGE = "Your session has ended. Sign in again."


class LoginForm(ConsoleForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class LogoutForm(ConsoleForm):
    """The Sign out button on every page: nothing but its CSRF token."""


class CodeForm(ConsoleForm):
    """The second step: a code from the app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(message="Type the code."),
                                           Length(max=64)])


class EnrolForm(ConsoleForm):
    """The enrolment's confirmation: the first code the app shows."""

    code = StringField("Code from the app", validators=[DataRequired(message="Type the code."),
                                                         Length(max=64)])


class RestartForm(ConsoleForm):
    """"Show a new QR code": nothing but its CSRF token."""


# --------------------------------------------------------------------------- settings


@bp.record_once
def _settle_two_factor_roles(state: BlueprintSetupState) -> None:
    """TWO_FACTOR_REQUIRED_ROLES left unset means admin and finance, except under debug
    or testing (nobody then). A value naming an unknown role stops the app from starting."""
    app = state.app
    if app.config.get("TWO_FACTOR_REQUIRED_ROLES") is None:
        app.config["TWO_FACTOR_REQUIRED_ROLES"] = (
            "" if app.debug or app.testing else DEFAULT_REQUIRED_ROLES)
    try:
        twofactor.parse_roles(app.config["TWO_FACTOR_REQUIRED_ROLES"])
    except DomainError as exc:
        raise RuntimeError(str(exc)) from exc


def required_roles() -> frozenset[StaffRole]:
    """The roles that must use two-factor sign-in (TWO_FACTOR_REQUIRED_ROLES)."""
    return twofactor.parse_roles(current_app.config.get("TWO_FACTOR_REQUIRED_ROLES"))


def _pending_user_id() -> int | None:
    """The account whose code this browser owes (the key of the two-factor limit)."""
    row = current_staff_session()
    return row.user_id if row is not None else None


#: on every page that checks a two-factor code: TWO_FACTOR_RATE_LIMIT per account,
#: whichever session or address sends the codes, and the address's sign-in budget
two_factor_limit = two_factor_limits(_pending_user_id)


# --------------------------------------------------------------------------- the session


def current_staff_session() -> StaffSession | None:
    """This request's open staff session (signed in or between the steps), or None.

    Pass it as ``keep`` to :func:`backoffice.sessions.end_sessions` to end a user's other
    sessions but not this one; without ``keep`` this one ends too and its next request
    is refused. (Looked up here when a request was answered before the check ran, e.g.
    a CSRF refusal, so its error page still knows who is signed in.)
    """
    if "staff_session" not in g:
        _check_staff_session()
    return g.staff_session


def stage(row: StaffSession) -> str:
    """Where the sign-in of ``row`` stands: "signed-in"; "code" (the app's code is owed);
    "enrol" (the role must use two-factor sign-in and the user has not set it up); or
    "password" (start again)."""
    user = row.user
    enrolled = twofactor.is_enrolled(user)
    required = twofactor.is_required(user, required_roles())
    if row.second_factor_done:
        return "enrol" if required and not enrolled else "signed-in"
    if enrolled:
        return "code"
    return "enrol" if required else "password"


def _client_ip() -> str:
    return request.remote_addr or ""


def _in_own_transaction(work: Callable[[], object]) -> None:
    """Do bookkeeping writes of a request in a short transaction of their own, ending the
    request's reads first (on SQLite a read-only request's transaction never has to
    become a writer). Bookkeeping that cannot be written now is skipped."""
    try:
        db.session.commit()
        work()
        db.session.commit()
    except OperationalError:
        db.session.rollback()
        log.warning("Session bookkeeping skipped: the database was busy", exc_info=True)


def _refuse(row: StaffSession | None, reason: str = "") -> None:
    """Forget an ended, expired or unknown session and say so on the next page."""
    if row is not None and row.ended_at is not None:
        reason = row.end_reason
    if row is not None and not row.user.active:
        reason = "deactivated"
    session.clear()
    g.session_refused = True
    flash(ENDED_MESSAGES.get(reason, ENDED_MESSAGE), "info")


@bp.before_app_request
def _check_staff_session() -> None:
    """Look up the staff session of the cookie on every request: refuse an ended or
    unknown one, end an expired one, and note when it was last seen (once a minute)."""
    g.staff_session = None
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint.endswith(".static"):
        return
    key = session.get(SESSION_KEY)
    if not key:
        return
    row = sessions.find_session(key)
    if row is None or row.ended_at is not None or not row.user.active:
        _refuse(row)
        return
    if sessions.expired(row, current_app.permanent_session_lifetime):
        _in_own_transaction(lambda: sessions.end_session(row, "expired", actor=None))
        _refuse(None, "expired")
        return
    if sessions.needs_touch(row):
        session_id = row.id
        _in_own_transaction(lambda: sessions.touch(session_id))
    g.staff_session = row


@login_manager.user_loader
def _load_user(user_id: str) -> StaffUser | None:
    """The signed-in user: only through an open session of theirs with every step done."""
    row = current_staff_session()
    if row is None or str(row.user_id) != user_id or stage(row) != "signed-in":
        return None
    return row.user if row.user.active else None


# --------------------------------------------------------------------------- pages


def _safe_next(target: str | None) -> str:
    """Only follow a ``next`` that stays on this site."""
    if target:
        parts = urlsplit(target)
        # Browsers read "//host", "/\\host" and control characters as another site.
        local = (target.startswith("/") and not target.startswith("//")
                 and "\\" not in target and not any(ord(c) < 32 for c in target))
        if local and not parts.scheme and not parts.netloc:
            return target
    return url_for("admin.index")


def _next_arg() -> dict:
    target = request.args.get("next")
    return {"next": target} if target else {}


def _step_page(row: StaffSession):
    """Send a half signed-in browser to the step it owes."""
    endpoint = {"code": "auth.second_factor", "enrol": "auth.enrol"}.get(stage(row))
    if endpoint is None:
        return None
    return redirect(url_for(endpoint, **_next_arg()), code=303)


def _finish_sign_in(row: StaffSession, method: str) -> None:
    """Every step is done: Flask-Login's session, the audit event, the last sign-in."""
    login_user(row.user)
    sessions.record_sign_in(row, method=method)


@bp.route("/login", methods=["GET", "POST"])
@sign_in_limits
def login():
    """Sign a staff member in: the password step."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    row = current_staff_session()
    if request.method == "GET" and row is not None and (step := _step_page(row)):
        return step
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            known = sessions.account_for(form.email.data)
            reason = ("unknown account" if known is None
                      else "deactivated" if not known.active else "password")
            sessions.record_sign_in_failure(form.email.data, known, ip=_client_ip(),
                                            reason=reason)
            db.session.commit()
            flash("Wrong email or password, or the account is deactivated.", "error")
            return render_template("login/login.html", form=form), 401
        forget_failed_sign_ins()
        if row is not None:  # a sign-in this browser left half-way
            sessions.end_session(row, "replaced", actor=None)
        # A new Flask session and a new key, whatever the browser brought (fixation).
        session.clear()
        enrolled = twofactor.is_enrolled(user)
        done = not enrolled and not twofactor.is_required(user, required_roles())
        row, key = sessions.open_session(user, ip=_client_ip(),
                                         user_agent=request.user_agent.string,
                                         second_factor_done=done)
        session[SESSION_KEY] = key
        g.staff_session = row
        if done:
            _finish_sign_in(row, "password")
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")), code=303)
        sessions.record_password_accepted(row)
        if not enrolled:
            session[ENROLMENT_KEY] = twofactor.start_enrolment(user)
        db.session.commit()
        return _step_page(row)
    return render_template("login/login.html", form=form)


def _pending(wanted: str) -> StaffSession | None:
    row = current_staff_session()
    return row if row is not None and stage(row) == wanted else None


def _not_pending():
    """A step page opened by a browser that does not owe that step."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")), code=303)
    return redirect(url_for("auth.login", **_next_arg()), code=303)


@bp.route("/login/code", methods=["GET", "POST"])
@two_factor_limit
def second_factor():
    """The second step: a code from the authenticator app, or a recovery code."""
    row = _pending("code")
    if row is None:
        return _not_pending()
    form = CodeForm()
    if form.validate_on_submit():
        user = row.user
        method, result = twofactor.verify_second_factor(user, form.code.data)
        if method is None:
            reason = ("replayed code" if result is twofactor.CodeCheck.REPLAYED
                      else "wrong code")
            sessions.record_sign_in_failure(user.email, user, ip=_client_ip(), reason=reason)
            db.session.commit()
            flash("That code was used already: wait for the next one your app shows."
                  if result is twofactor.CodeCheck.REPLAYED else
                  "That code is not right. Type the 6 digits your app shows now, or one of "
                  "your recovery codes.", "error")
            return render_template("login/code.html", form=form, user=user), 401
        session[SESSION_KEY] = sessions.complete_second_factor(row)
        forget_failed_sign_ins()
        _finish_sign_in(row, method)
        if method == "recovery code":
            left = twofactor.recovery_codes_left(user)
            flash(f"You signed in with a recovery code; it cannot be used again. {left} "
                  "left: make new ones under System, Two-factor sign-in.",
                  "warning" if left < 4 else "info")
        db.session.commit()
        return redirect(_safe_next(request.args.get("next")), code=303)
    return render_template("login/code.html", form=form, user=row.user)


def enrolment_page(user: StaffUser, form: ConsoleForm, template: str,
                   render: Callable[..., str] = render_template, **context) -> str:
    """Render an enrolment page (with ``render``: a console view's own ``render`` inside
    the console): the QR code of the secret this browser started, or none when another
    window or browser has started a newer one."""
    secret = twofactor.pending_secret(user, session.get(ENROLMENT_KEY))
    qr = uri = None
    if secret is not None:
        uri = twofactor.provisioning_uri(user, secret, current_app.config["TWO_FACTOR_ISSUER"])
        qr = Markup(twofactor.qr_svg(uri))  # segno's own SVG: no text of ours in it
    started_elsewhere = secret is None and bool(user.totp_secret) \
        and not twofactor.is_enrolled(user)
    return render(template, form=form, user=user, qr=qr, uri=uri,
                  secret=twofactor.group_secret(secret) if secret else None,
                  started_elsewhere=started_elsewhere,
                  restart_form=RestartForm(formdata=None), **context)


def recovery_codes_page(template: str, codes: list[str],
                        render: Callable[..., str] = render_template, **context):
    """The recovery codes, shown once: never cached."""
    response = current_app.make_response(render(template, codes=codes, **context))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/login/enrol", methods=["GET", "POST"])
@two_factor_limit
def enrol():
    """Set up two-factor sign-in at sign-in (for a role that must use it)."""
    row = _pending("enrol")
    if row is None:
        return _not_pending()
    user = row.user
    form = EnrolForm()
    if form.validate_on_submit():
        try:
            codes = twofactor.confirm_enrolment(user, form.code.data,
                                                session.get(ENROLMENT_KEY), actor=user, keep=row)
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return enrolment_page(user, form, "login/enrol.html", step_args=_next_arg()), 400
        session.pop(ENROLMENT_KEY, None)
        session[SESSION_KEY] = sessions.complete_second_factor(row)
        _finish_sign_in(row, "enrolment")
        db.session.commit()
        return recovery_codes_page("login/recovery_codes.html", codes,
                                   next_url=_safe_next(request.args.get("next")))
    return enrolment_page(user, form, "login/enrol.html", step_args=_next_arg())


@bp.route("/login/enrol/restart", methods=["POST"])
def enrol_restart():
    """A new secret and QR code for this browser (the one shown elsewhere stops working)."""
    row = _pending("enrol")
    if row is None:
        return _not_pending()
    if RestartForm().validate_on_submit():
        session[ENROLMENT_KEY] = twofactor.start_enrolment(row.user)
        db.session.commit()
    return redirect(url_for("auth.enrol", **_next_arg()), code=303)


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out (POST only, CSRF-protected): this browser's session ends."""
    row = current_staff_session()
    if row is not None:
        sessions.sign_out(row)
        db.session.commit()
    logout_user()
    session.clear()
    if not g.get("session_refused"):
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"), code=303)


#: what a reset link's token looks like (secrets.token_urlsafe(32) is 43 characters)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")


def _reset_page(status: int = 200, **context):
    """The reset link page: never cached, and its address (which holds the token) never
    sent on as a referrer."""
    response = make_response(render_template("login/reset_password.html", **context), status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _unusable(problem: ResetLinkUnusable):
    return _reset_page(410 if problem.gone else 404, problem=str(problem))


@bp.route("/reset/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def reset_password(token: str):
    """Choose a new password through an admin's one-time reset link, then sign in."""
    if not _TOKEN.fullmatch(token):
        return _unusable(ResetLinkUnusable(LINK_UNKNOWN, gone=False))
    try:
        link = open_reset_link(token)
    except ResetLinkUnusable as problem:
        return _unusable(problem)
    form = NewPasswordForm()
    email = link.user.email
    if not form.validate_on_submit():
        return _reset_page(form=form, email=email, expires_at=link.expires_at)
    try:
        user = use_reset_link(token, form.password.data)
        db.session.commit()
    except ResetLinkUnusable as problem:
        db.session.rollback()
        return _unusable(problem)
    except InvalidInput as refusal:
        db.session.rollback()
        form.password.errors = [*form.password.errors, str(refusal)]
        return _reset_page(form=form, email=email, expires_at=link.expires_at)
    if current_user.is_authenticated and current_user.id == user.id:
        logout_user()  # this browser's session ended with the others
        session.clear()
    flash("Your new password is set, and every session of your account is signed out. "
          "Sign in with the new password.", "success")
    return redirect(url_for("auth.login"), code=303)


@bp.route("/")
def root():
    """The console lives under /admin/."""
    return redirect(url_for("admin.index"))
