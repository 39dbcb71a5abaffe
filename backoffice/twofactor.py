"""Two-factor sign-in with TOTP (RFC 6238: 6 digits, 30-second steps) and recovery codes.

- **Enrolment** starts with a fresh secret on the account (not yet in force) and a
  reference to it that only the session which started it holds; a first code from the
  authenticator app confirms it. Then ten one-time recovery codes are made, shown once and
  stored as SHA-256 hashes (they are random, 80 bits each).
- **Codes** are accepted one step either side of now; the step of the last accepted code
  is kept, and a code for that step or an earlier one is refused, so no code works twice.
- **Who must use it** is configuration (a set of roles); the others may turn it on.
- **An admin's reset** clears a colleague's secret and recovery codes and ends their
  sessions; nobody resets their own.

Every change is audited in the caller's transaction; nothing here commits.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets

import pyotp
import segno
from sqlalchemy import delete, func, select

from . import audit, sessions
from .clock import utcnow
from .errors import Conflict, InvalidInput
from .extensions import db
from .locks import lock
from .models import RecoveryCode, StaffRole, StaffSession, StaffUser

#: codes are accepted for this many 30-second steps either side of now
VALID_WINDOW = 1
#: how many recovery codes an enrolment (or a renewal of them) makes
RECOVERY_CODES = 10
#: recovery codes: 16 characters of this 32-letter alphabet (80 bits), shown in groups of 4
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_LENGTH = 16

_TOTP_CODE = re.compile(r"[0-9]{6}")
_SEPARATORS = re.compile(r"[\s-]+")


class CodeCheck(enum.Enum):
    """What became of a code."""

    ACCEPTED = "accepted"
    WRONG = "wrong"
    REPLAYED = "replayed"


# --------------------------------------------------------------------------- who must


def parse_roles(setting: str | None) -> frozenset[StaffRole]:
    """The roles a TWO_FACTOR_REQUIRED_ROLES value names ("admin,finance"; "" or "none"
    for none); an unknown role is InvalidInput."""
    names = [name.strip().lower() for name in (setting or "").split(",") if name.strip()]
    if names == ["none"]:
        return frozenset()
    roles = set()
    for name in names:
        try:
            roles.add(StaffRole(name))
        except ValueError as exc:
            raise InvalidInput(f"Unknown role '{name}' in TWO_FACTOR_REQUIRED_ROLES; use "
                               "support, finance or admin, comma-separated.") from exc
    return frozenset(roles)


def is_enrolled(user: StaffUser) -> bool:
    """Whether two-factor sign-in is on for ``user``."""
    return user.totp_enrolled_at is not None and bool(user.totp_secret)


def is_required(user: StaffUser, required_roles: frozenset[StaffRole]) -> bool:
    """Whether ``user``'s role must use two-factor sign-in."""
    return user.role in required_roles


# --------------------------------------------------------------------------- enrolment


def _reference(secret: str) -> str:
    return hashlib.sha256(f"enrolment:{secret}".encode()).hexdigest()[:32]


def start_enrolment(user: StaffUser) -> str:
    """Give ``user`` a fresh secret, not in force until confirmed with a code; returns the
    reference the starting session keeps (see :func:`pending_secret`).

    Starting again replaces the secret, so a QR code shown to another session stops
    working. The secret is not in force yet, so this writes no audit event.
    """
    if is_enrolled(user):
        raise Conflict("Two-factor sign-in is already on for this account.")
    user.totp_secret = pyotp.random_base32()
    user.totp_last_step = None
    db.session.flush()
    return _reference(user.totp_secret)


def pending_secret(user: StaffUser, reference: str | None) -> str | None:
    """The secret being enrolled, if ``reference`` (held by the session that started the
    enrolment) is the one :func:`start_enrolment` returned for it; else None."""
    if is_enrolled(user) or not user.totp_secret or not reference:
        return None
    if not hmac.compare_digest(_reference(user.totp_secret), reference):
        return None
    return user.totp_secret


def provisioning_uri(user: StaffUser, secret: str, issuer: str) -> str:
    """The ``otpauth://`` address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as an inline ``<svg>`` element (no external request)."""
    return segno.make(uri, error="m").svg_inline(scale=4, title="Two-factor sign-in QR code")


def group_secret(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def confirm_enrolment(user: StaffUser, code: str, reference: str | None, *,
                      actor: StaffUser | None, keep: StaffSession | None) -> list[str]:
    """Turn two-factor sign-in on with the first code from the app; returns the recovery
    codes (shown once). The user's other sessions, which never gave a code, end."""
    user = lock(StaffUser, user.id, "Staff account")
    if is_enrolled(user):
        raise Conflict("Two-factor sign-in is already on for this account.")
    if pending_secret(user, reference) is None:
        raise Conflict("This set-up was replaced by a newer one (another window or "
                       "browser). Start again and scan the new QR code.")
    if _check_totp(user, code) is not CodeCheck.ACCEPTED:
        raise InvalidInput("That code is not right. Check the time on your phone, and type "
                           "the 6 digits the app shows now.")
    user.totp_enrolled_at = utcnow()
    codes = _replace_recovery_codes(user)
    audit.record(actor, "staff.two_factor_enrol", user, {"recovery_codes": len(codes)})
    sessions.end_sessions(user, "2fa-enrol", actor=actor, keep=keep)
    return codes


# --------------------------------------------------------------------------- codes


def _normalize(code: str) -> str:
    return _SEPARATORS.sub("", code or "").lower()


def _check_totp(user: StaffUser, code: str) -> CodeCheck:
    """Check a 6-digit code against the user's secret, refusing a replay; call with the
    user's row locked. An accepted code's step is kept."""
    code = _normalize(code)
    if not user.totp_secret or not _TOTP_CODE.fullmatch(code):
        return CodeCheck.WRONG
    totp = pyotp.TOTP(user.totp_secret)
    now_step = totp.timecode(utcnow())
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return CodeCheck.REPLAYED
            user.totp_last_step = step
            return CodeCheck.ACCEPTED
    return CodeCheck.WRONG


def is_totp_shaped(code: str) -> bool:
    """Whether ``code`` looks like an app's code (6 digits) rather than a recovery code."""
    return bool(_TOTP_CODE.fullmatch(_normalize(code)))


def check_code(user: StaffUser, code: str) -> CodeCheck:
    """Check a code from the user's app (locks the user's row first, so two requests with
    the same code cannot both pass)."""
    if not is_enrolled(user):
        return CodeCheck.WRONG
    return _check_totp(lock(StaffUser, user.id, "Staff account"), code)


def _hash_recovery(code: str) -> str:
    return hashlib.sha256(_normalize(code).encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, RECOVERY_LENGTH, 4))


def _replace_recovery_codes(user: StaffUser) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash_recovery(code))
                       for code in codes)
    db.session.flush()
    return codes


def recovery_codes_left(user: StaffUser) -> int:
    return db.session.scalar(select(func.count(RecoveryCode.id)).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0


def use_recovery_code(user: StaffUser, code: str) -> bool:
    """Accept one unused recovery code of ``user`` and mark it used (audited)."""
    if not is_enrolled(user):
        return False
    digest = _hash_recovery(code)
    if len(_normalize(code)) != RECOVERY_LENGTH:
        return False
    lock(StaffUser, user.id, "Staff account")
    unused = db.session.scalars(select(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))).all()
    match = next((row for row in unused if hmac.compare_digest(row.code_hash, digest)), None)
    if match is None:
        return False
    match.used_at = utcnow()
    audit.record(user, "staff.recovery_code_used", user, {"left": len(unused) - 1})
    return True


def verify_second_factor(user: StaffUser, code: str) -> tuple[str | None, CodeCheck]:
    """A sign-in's second factor: an app code or a recovery code. Returns the method used
    ("totp" or "recovery code", None when refused) and what became of the code."""
    if is_totp_shaped(code):
        result = check_code(user, code)
        return ("totp" if result is CodeCheck.ACCEPTED else None), result
    if use_recovery_code(user, code):
        return "recovery code", CodeCheck.ACCEPTED
    return None, CodeCheck.WRONG


# --------------------------------------------------------------------------- later changes


def _require_code(user: StaffUser, code: str) -> None:
    result = check_code(user, code)
    if result is CodeCheck.REPLAYED:
        raise InvalidInput("That code was used already. Wait for the app's next code.")
    if result is not CodeCheck.ACCEPTED:
        raise InvalidInput("That code is not right. Type the 6 digits your app shows now.")


def renew_recovery_codes(user: StaffUser, code: str, *, actor: StaffUser | None) -> list[str]:
    """New recovery codes for ``user`` (a current app code proves it is them); the old
    ones stop working."""
    if not is_enrolled(user):
        raise Conflict("Two-factor sign-in is not on for this account.")
    _require_code(user, code)
    codes = _replace_recovery_codes(user)
    audit.record(actor, "staff.recovery_codes_renew", user, {"recovery_codes": len(codes)})
    return codes


def _clear(user: StaffUser) -> None:
    user.totp_secret = None
    user.totp_enrolled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def turn_off(user: StaffUser, code: str, *, actor: StaffUser | None,
             required_roles: frozenset[StaffRole]) -> None:
    """Turn two-factor sign-in off (a current code proves it is them); refused for a role
    that must use it."""
    if not is_enrolled(user):
        raise Conflict("Two-factor sign-in is not on for this account.")
    if is_required(user, required_roles):
        raise Conflict(f"The {user.role.value} role must use two-factor sign-in, so it "
                       "stays on. An admin can reset it if your phone is lost.")
    _require_code(user, code)
    _clear(user)
    audit.record(actor, "staff.two_factor_disable", user, {})


def reset(user: StaffUser, *, actor: StaffUser | None) -> int:
    """An admin's reset of a colleague's two-factor sign-in (a lost phone): the secret and
    recovery codes go, every session of theirs ends, and they enrol again at their next
    sign-in if their role must. Returns how many sessions ended."""
    if actor is not None and actor.id == user.id:
        raise Conflict("You cannot reset your own two-factor sign-in; ask another admin.")
    user = lock(StaffUser, user.id, "Staff account")
    if not is_enrolled(user) and not user.totp_secret:
        raise Conflict(f"Two-factor sign-in is not on for {user.email}.")
    was_enrolled = is_enrolled(user)
    _clear(user)
    audit.record(actor, "staff.two_factor_reset", user, {"was_enrolled": was_enrolled})
    return sessions.end_sessions(user, "2fa-reset", actor=actor)
