"""Sign-in and sign-out pages (the ``auth`` blueprint), the public page of a password reset
link, and Flask-Login's user loader."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from ..clock import utcnow
from ..errors import InvalidInput
from ..extensions import db, limiter, login_manager
from ..models import StaffUser
from ..staff import LINK_UNKNOWN, ResetLinkUnusable, authenticate, open_reset_link, use_reset_link
from .forms import ConsoleForm, NewPasswordForm
from .throttle import forget_failed_sign_ins, sign_in_limits

bp = Blueprint("auth", __name__)


class LoginForm(ConsoleForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class LogoutForm(ConsoleForm):
    """The Sign out button on every page: nothing but its CSRF token."""


@login_manager.user_loader
def _load_user(user_id: str) -> StaffUser | None:
    user = db.session.get(StaffUser, int(user_id)) if user_id.isdigit() else None
    return user if user is not None and user.active else None


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


@bp.route("/login", methods=["GET", "POST"])
@sign_in_limits
def login():
    """Sign a staff member in."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            flash("Wrong email or password, or the account is deactivated.", "error")
            return render_template("login/login.html", form=form), 401
        forget_failed_sign_ins()
        session.clear()
        login_user(user)
        user.last_login_at = utcnow()
        db.session.commit()
        return redirect(_safe_next(request.args.get("next")), code=303)
    return render_template("login/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out (POST only, CSRF-protected)."""
    logout_user()
    session.clear()
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
