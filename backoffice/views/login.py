"""Sign-in and sign-out pages (the ``auth`` blueprint) and Flask-Login's user loader."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
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
from ..extensions import db, login_manager
from ..models import StaffUser
from ..staff import authenticate
from .forms import ConsoleForm
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


@bp.route("/")
def root():
    """The console lives under /admin/."""
    return redirect(url_for("admin.index"))
