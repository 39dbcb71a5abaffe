"""Staff accounts: create, update, deactivate, reset passwords, and check credentials."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from . import audit
from .errors import Conflict, InvalidInput
from .extensions import db
from .models import StaffRole, StaffUser
from .validation import normalize_email

MIN_PASSWORD_LENGTH = 12

#: werkzeug's method for new password hashes; see :func:`use_password_hash_method`
_hash_method = "scrypt"


def check_password_strength(password: str) -> None:
    """Refuse passwords too short to be safe."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def use_password_hash_method(method: str) -> None:
    """Hash new passwords with ``method`` (``create_app`` applies PASSWORD_HASH_METHOD)."""
    global _hash_method
    _hash_method = method


def hash_password(password: str) -> str:
    """werkzeug's scrypt hash (tests configure a cheaper method)."""
    return generate_password_hash(password, method=_hash_method)


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
