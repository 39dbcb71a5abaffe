"""Staff accounts, roles and permissions, sign-in and sign-out."""

from __future__ import annotations

import enum
import secrets
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from . import audit
from .clock import utcnow
from .errors import Conflict, InvalidInput
from .extensions import db, limiter, login_manager
from .models import StaffRole, StaffUser

MIN_PASSWORD_LENGTH = 12


class Permission(enum.StrEnum):
    """What a staff member may do, named ``area:thing:verb``."""

    CONSOLE_READ = "console:page:read"
    CORPORATE_WRITE = "accounts:corporate:write"
    PROFILE_UNLINK = "accounts:profile:unlink"
    LEGACY_CREDIT_WRITE = "accounts:legacy_credit:write"
    CREDIT_ADJUST = "billing:credit:adjust"
    PARTNER_WRITE = "partners:customer:write"
    REFUND_WRITE = "billing:refund:write"
    INVOICE_WRITE = "billing:invoice:write"
    REPORT_EXPORT = "billing:report:export"
    RESELLER_WRITE = "partners:reseller:write"
    RESELLER_STATUS = "partners:reseller:status"
    CATALOG_WRITE = "catalog:product:write"
    STAFF_WRITE = "system:staff:write"
    JOB_RUN = "system:job:run"


P = Permission

#: The one table that maps roles to permissions (DESIGN.md, "Staff roles and permissions").
ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.SUPPORT: frozenset(
        {P.CONSOLE_READ, P.CORPORATE_WRITE, P.LEGACY_CREDIT_WRITE, P.PARTNER_WRITE}
    ),
    StaffRole.FINANCE: frozenset(
        {P.CONSOLE_READ, P.CREDIT_ADJUST, P.REFUND_WRITE, P.INVOICE_WRITE, P.REPORT_EXPORT}
    ),
    StaffRole.ADMIN: frozenset(Permission),
}


def has_permission(user, permission: Permission) -> bool:
    """Whether ``user`` (a StaffUser, or Flask-Login's anonymous user) holds ``permission``."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return permission in ROLE_PERMISSIONS.get(user.role, frozenset())


# --------------------------------------------------------------------------- staff accounts


def normalize_email(email: str) -> str:
    """Validate an address and return it lower-cased, or raise InvalidInput."""
    try:
        result = validate_email((email or "").strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"'{email}' is not a valid email address: {exc}") from exc
    return result.normalized.lower()


def check_password_strength(password: str) -> None:
    """Refuse passwords too short to be safe."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def hash_password(password: str) -> str:
    """werkzeug's scrypt hash (tests may configure a cheaper method)."""
    return generate_password_hash(
        password, method=current_app.config.get("PASSWORD_HASH_METHOD", "scrypt"))


def generate_password() -> str:
    """A random password for a new account, shown once."""
    return secrets.token_urlsafe(12)


def create_staff(*, email: str, name: str, role: str, password: str, actor) -> StaffUser:
    """Create a staff account; refuses a duplicate email or a weak password."""
    email = normalize_email(email)
    try:
        role = StaffRole(role)
    except ValueError as exc:
        raise InvalidInput(f"Unknown role '{role}'; use support, finance or admin.") from exc
    check_password_strength(password)
    exists = db.session.scalar(select(StaffUser.id).where(StaffUser.email == email))
    if exists:
        raise Conflict(f"A staff account for {email} already exists.")
    user = StaffUser(
        email=email,
        name=(name or "").strip() or email.split("@")[0],
        role=role,
        password_hash=hash_password(password),
        active=True,
    )
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "staff.create", user, {"email": email, "role": role.value})
    return user


def set_staff_password(user: StaffUser, password: str, *, actor) -> None:
    """Reset a staff member's password."""
    check_password_strength(password)
    user.password_hash = hash_password(password)
    audit.record(actor, "staff.password_reset", user, {"email": user.email})


def set_staff_active(user: StaffUser, active: bool, *, actor) -> None:
    """Deactivate or reactivate a staff account; nobody deactivates themselves."""
    if actor is not None and actor.id == user.id and not active:
        raise Conflict("You cannot deactivate your own account.")
    if user.active == active:
        raise Conflict(f"{user.email} is already {'active' if active else 'deactivated'}.")
    user.active = active
    audit.record(actor, "staff.activate" if active else "staff.deactivate", user, {})


def update_staff(user: StaffUser, *, name: str, role: str, actor) -> None:
    """Rename a staff member or change their role; nobody demotes themselves."""
    try:
        new_role = StaffRole(role)
    except ValueError as exc:
        raise InvalidInput(f"Unknown role '{role}'.") from exc
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A staff member needs a name.")
    if actor is not None and actor.id == user.id and new_role != user.role:
        raise Conflict("You cannot change your own role; ask another admin.")
    changes = {}
    if name != user.name:
        changes["name"] = {"from": user.name, "to": name}
    if new_role != user.role:
        changes["role"] = {"from": user.role.value, "to": new_role.value}
    if not changes:
        return
    user.name, user.role = name, new_role
    audit.record(actor, "staff.update", user, changes)


def authenticate(email: str, password: str) -> StaffUser | None:
    """The active staff member with these credentials, or None. Writes nothing on failure."""
    email = (email or "").strip().lower()
    user = db.session.scalar(select(StaffUser).where(func.lower(StaffUser.email) == email))
    if user is None:
        # Spend the same time as a real check, so timing does not reveal which emails exist.
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.active:
        return None
    return user


_DUMMY_HASH = generate_password_hash("not-a-real-password")


# --------------------------------------------------------------------------- sign-in pages

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


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
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def login():
    """Sign a staff member in."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            flash("Wrong email or password, or the account is deactivated.", "error")
            return render_template("auth/login.html", form=form), 401
        session.clear()
        login_user(user)
        user.last_login_at = utcnow()
        db.session.commit()
        return redirect(_safe_next(request.args.get("next")), code=303)
    return render_template("auth/login.html", form=form)


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
