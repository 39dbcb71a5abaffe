"""Staff accounts: create, update, deactivate, passwords and reset links, credentials.

Passwords follow one policy (:func:`check_password_strength`). An admin never sees or
types a colleague's password: a reset makes a one-time link, valid for an hour, that the
colleague opens to choose a new one. Setting a password, deactivating an account or
changing its role ends the account's open sessions (``sessions.end_sessions``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import func, select, update
from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn import zxcvbn  # type: ignore[import-untyped]
from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

from . import audit
from .clock import utcnow
from .errors import Conflict, InvalidInput
from .extensions import db
from .models import PasswordResetToken, StaffRole, StaffSession, StaffUser
from .sessions import end_sessions
from .validation import normalize_email

MIN_PASSWORD_LENGTH = 12
#: the longest password a staff member may set (scrypt hashes any length; this bounds work)
MAX_PASSWORD_LENGTH = 200

#: how many of the most common passwords are refused. The list is the one zxcvbn ships
#: (``zxcvbn.frequency_lists.FREQUENCY_LISTS["passwords"]``, ranked most common first,
#: compiled from leaked password sets); the first 10,000 are refused, in any letter case.
COMMON_PASSWORDS = 10_000

#: zxcvbn's estimate of the guesses a password takes, below which it is refused as easy to
#: guess (keyboard rows, sequences, repeats, dates, names, the email); a million guesses is
#: zxcvbn's score 2 ("somewhat guessable"), which random and multi-word passwords pass.
MIN_GUESSES = 10 ** 6
#: zxcvbn estimates at most this many characters (the rest only adds strength)
_ZXCVBN_MAX_LENGTH = 72

#: how long an admin's password reset link works
RESET_LINK_LIFETIME = timedelta(hours=1)

#: werkzeug's method for new password hashes; see :func:`use_password_hash_method`
_hash_method = "scrypt"

COMMON_MESSAGE = ("This is one of the {count:,} most common passwords, or one of them with "
                  "digits or symbols added. Choose another: several uncommon words, or a "
                  "password manager's random password.")


@cache
def common_passwords() -> frozenset[str]:
    """The most common passwords, lower-cased (see COMMON_PASSWORDS)."""
    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"][:COMMON_PASSWORDS])


def _cores(password: str) -> set[str]:
    """``password`` lower-cased, and the same without some or all of the digits, symbols
    and spaces before its first letter and after its last: "password1234" gives
    "password1234", "password123", ..., "password". Without letters, only the whole."""
    text = password.lower()
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if not letters:
        return {text, text.strip()}
    first, last = letters[0], letters[-1]
    return {text[i:j] for i in range(first + 1) for j in range(last + 1, len(text) + 1)}


def check_password_strength(password: str, *, email: str | None = None) -> None:
    """Refuse a password that is easy to guess, with a sentence saying why.

    Refused: fewer than MIN_PASSWORD_LENGTH characters (or more than
    MAX_PASSWORD_LENGTH); one character repeated (spaces
    too); the account's email or the part before the @, even with digits or symbols
    around it; one of the COMMON_PASSWORDS most common passwords, even with digits or
    symbols around it; anything else zxcvbn estimates takes fewer than MIN_GUESSES
    guesses (keyboard rows, sequences, repeated words, dates).
    """
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_PASSWORD_LENGTH} characters; "
                           f"this one has {len(password)}.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"A password can have at most {MAX_PASSWORD_LENGTH} characters.")
    if len(set(password)) == 1:
        raise InvalidInput("A password cannot be one character repeated. Use several "
                           "uncommon words, or a password manager's random password.")
    cores = _cores(password)
    inputs = []
    if email:
        email = email.strip().lower()
        local = email.partition("@")[0]
        inputs = [email, local, *re.split(r"[._+-]+", local)]
        if cores & {email, local, re.sub(r"[._+-]+", "", local)}:
            raise InvalidInput("A password cannot be your email address or the part before "
                               "the @, even with digits or symbols added.")
    if cores & common_passwords():
        raise InvalidInput(COMMON_MESSAGE.format(count=COMMON_PASSWORDS))
    estimate = zxcvbn(password[:_ZXCVBN_MAX_LENGTH], user_inputs=[i for i in inputs if i])
    if estimate["guesses"] < MIN_GUESSES:
        warning = (estimate["feedback"].get("warning") or "").strip()
        reason = f" {warning.rstrip('.')}." if warning else ""
        raise InvalidInput(f"This password is easy to guess.{reason} Use several uncommon "
                           "words, or a password manager's random password.")


def use_password_hash_method(method: str) -> None:
    """Hash new passwords with ``method`` (``create_app`` applies PASSWORD_HASH_METHOD)."""
    global _hash_method
    _hash_method = method


def hash_password(password: str) -> str:
    """werkzeug's scrypt hash (tests configure a cheaper method)."""
    return generate_password_hash(password, method=_hash_method)


def generate_password() -> str:
    """A random password for a new account (16 URL-safe characters), shown once; always
    one the policy accepts."""
    while True:
        password = secrets.token_urlsafe(12)
        try:
            check_password_strength(password)
        except InvalidInput:  # pragma: no cover - a random draw this weak is vanishingly rare
            continue
        return password


def create_staff(*, email: str, name: str, role: str, password: str, actor) -> StaffUser:
    """Create a staff account; refuses a duplicate email or a weak password."""
    email = normalize_email(email)
    try:
        role = StaffRole(role)
    except ValueError as exc:
        raise InvalidInput(f"Unknown role '{role}'; use support, finance or admin.") from exc
    check_password_strength(password, email=email)
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


def set_staff_password(user: StaffUser, password: str, *, actor,
                       keep: StaffSession | None = None) -> None:
    """Give ``user`` a new password (policy-checked) and end their sessions but ``keep``.

    Audited as ``staff.password_change`` when ``actor`` is ``user``, else as
    ``staff.password_reset``. Open reset links of the account stop working.
    """
    check_password_strength(password, email=user.email)
    _set_password(user, password, actor=actor, keep=keep,
                  action="staff.password_change" if _is_self(actor, user)
                  else "staff.password_reset",
                  details={"email": user.email})


def change_own_password(user: StaffUser, *, current: str, new: str,
                        keep: StaffSession | None) -> None:
    """A staff member changes their own password: the current one first, then the policy.

    Their other sessions end; ``keep`` (the session making the change) stays signed in.
    """
    if not check_password_hash(user.password_hash, current or ""):
        raise InvalidInput("Your current password is not right, so nothing was changed. "
                           "Type it again.")
    if check_password_hash(user.password_hash, new or ""):
        raise InvalidInput("The new password is your current one. Choose a different one.")
    set_staff_password(user, new, actor=user, keep=keep)


def _is_self(actor, user: StaffUser) -> bool:
    return actor is not None and actor.id == user.id


def _set_password(user: StaffUser, password: str, *, actor, keep: StaffSession | None,
                  action: str, details: dict) -> None:
    now = utcnow()
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    _expire_reset_links(user, now)
    audit.record(actor, action, user, details)
    end_sessions(user, "password", actor=actor, keep=keep)


# --------------------------------------------------------------------------- reset links


@dataclass(frozen=True)
class ResetLink:
    """A reset link just made: the token for its address (shown once) and its expiry."""

    token: str
    expires_at: datetime
    user: StaffUser


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _expire_reset_links(user: StaffUser, now: datetime) -> int:
    """Make the account's unused, unexpired reset links expire now; how many there were."""
    result = db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None),
               PasswordResetToken.expires_at > now)
        .values(expires_at=now)
        .execution_options(synchronize_session=False))
    return result.rowcount or 0  # type: ignore[attr-defined]


def make_reset_link(user: StaffUser, *, actor) -> ResetLink:
    """An admin's password reset for ``user``: a one-time link valid RESET_LINK_LIFETIME.

    The old password stops working at once, the account's sessions end and earlier
    unused links stop working; the link's token is returned once and only its SHA-256
    is stored. Nobody resets their own password this way (they change it, with the
    current one), and a deactivated account gets no link.
    """
    if _is_self(actor, user):
        raise Conflict("You cannot reset your own password. Change it from your account "
                       "page (the Change password link at the top), which asks for your "
                       "current one.")
    if not user.active:
        raise Conflict(f"{user.email} is deactivated; reactivate the account before making "
                       "a password reset link.")
    now = utcnow()
    replaced = _expire_reset_links(user, now)
    token = secrets.token_urlsafe(32)
    link = PasswordResetToken(token_hash=_token_hash(token), user_id=user.id,
                              created_by_id=actor.id if actor is not None else None,
                              created_at=now, expires_at=now + RESET_LINK_LIFETIME)
    db.session.add(link)
    # Nobody knows this password: the old one stops working, and only the link sets one.
    user.password_hash = hash_password(secrets.token_urlsafe(32))
    db.session.flush()
    audit.record(actor, "staff.password_reset_link", user,
                 {"email": user.email, "link": link.id, "expires_at": link.expires_at,
                  "replaced_links": replaced})
    end_sessions(user, "password", actor=actor)
    return ResetLink(token=token, expires_at=link.expires_at, user=user)


#: what a reset link page says when the link cannot be used, by reason
LINK_UNKNOWN = ("This password reset link is not valid. Check that you opened the whole "
                "link, or ask an admin for a new one.")
LINK_USED = ("This password reset link was already used; each link works once. If you "
             "did not use it, tell an admin and ask for a new one.")
LINK_EXPIRED = ("This password reset link no longer works: links work for one hour, and a "
                "newer link or a password change replaces them. Ask an admin for a new one.")
LINK_INACTIVE = "This staff account is deactivated, so its password cannot be set."


class ResetLinkUnusable(Conflict):
    """A reset link that is unknown, used, expired or replaced; ``gone`` when it existed."""

    def __init__(self, message: str, *, gone: bool):
        super().__init__(message)
        self.gone = gone


def open_reset_link(token: str) -> PasswordResetToken:
    """The reset link with this token while it can still be used; refuses any other."""
    link = db.session.scalar(select(PasswordResetToken)
                             .where(PasswordResetToken.token_hash == _token_hash(token or "")))
    if link is None:
        raise ResetLinkUnusable(LINK_UNKNOWN, gone=False)
    if link.used_at is not None:
        raise ResetLinkUnusable(LINK_USED, gone=True)
    if link.expires_at <= utcnow():
        raise ResetLinkUnusable(LINK_EXPIRED, gone=True)
    if not link.user.active:
        raise ResetLinkUnusable(LINK_INACTIVE, gone=True)
    return link


def use_reset_link(token: str, password: str) -> StaffUser:
    """Set the password through a reset link, which works once: the policy first, then
    the link is claimed with one conditional UPDATE (so two submissions at once cannot
    both use it), the account's sessions end and other open links stop working."""
    link = open_reset_link(token)
    user = link.user
    check_password_strength(password, email=user.email)
    now = utcnow()
    claimed = db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.id == link.id, PasswordResetToken.used_at.is_(None),
               PasswordResetToken.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise ResetLinkUnusable(LINK_USED, gone=True)
    _set_password(user, password, actor=user, keep=None, action="staff.password_reset_used",
                  details={"email": user.email, "link": link.id})
    return user


# --------------------------------------------------------------------------- status, role


def set_staff_active(user: StaffUser, active: bool, *, actor) -> None:
    """Deactivate or reactivate a staff account; nobody deactivates themselves.

    Deactivating ends the account's sessions and its open reset links.
    """
    if _is_self(actor, user) and not active:
        raise Conflict("You cannot deactivate your own account; ask another admin.")
    if user.active == active:
        raise Conflict(f"{user.email} is already {'active' if active else 'deactivated'}.")
    user.active = active
    audit.record(actor, "staff.activate" if active else "staff.deactivate", user, {})
    if not active:
        _expire_reset_links(user, utcnow())
        end_sessions(user, "deactivated", actor=actor)


def update_staff(user: StaffUser, *, name: str, role: str, actor) -> None:
    """Rename a staff member or change their role; nobody changes their own role.

    A role change ends the account's sessions, so it signs in again with the new role.
    """
    try:
        new_role = StaffRole(role)
    except ValueError as exc:
        raise InvalidInput(f"Unknown role '{role}'.") from exc
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A staff member needs a name.")
    if _is_self(actor, user) and new_role != user.role:
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
    if "role" in changes:
        end_sessions(user, "role", actor=actor)


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
