"""Server-side staff sessions: each signed-in browser has a row, checked on every request.

The browser's cookie carries a random key; the row stores only its SHA-256. Ending a
user's sessions (sign-out, a password change or reset, deactivation, a role change, a 2FA
reset, or an admin's decision) signs those browsers out at once, whatever their cookie
says. Sign-in successes and failures and sign-outs are audit events too. Like every
domain module, this writes in the caller's transaction and never commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload

from . import audit
from .clock import utcnow
from .extensions import db
from .models import StaffSession, StaffUser

#: how often a session's ``last_seen_at`` is written at most
TOUCH_INTERVAL = timedelta(minutes=1)

#: the longest client address and browser string kept (the columns' sizes)
MAX_IP, MAX_USER_AGENT = 64, 256

#: the label of the actor of a sign-in attempt nobody is signed in for
ANONYMOUS = "anonymous"


def hash_key(key: str) -> str:
    """The SHA-256 (hex) under which a session key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def open_session(user: StaffUser, *, ip: str, user_agent: str,
                 second_factor_done: bool) -> tuple[StaffSession, str]:
    """A new session of ``user`` and the random key its cookie carries (never stored).

    ``second_factor_done`` is False while the user still owes a TOTP code (or enrolment)
    after the password: such a session opens no console page.
    """
    key = secrets.token_urlsafe(32)
    now = utcnow()
    row = StaffSession(key_hash=hash_key(key), user=user, created_at=now, last_seen_at=now,
                       ip=(ip or "")[:MAX_IP], user_agent=(user_agent or "")[:MAX_USER_AGENT],
                       second_factor_done=second_factor_done, end_reason="")
    db.session.add(row)
    db.session.flush()
    return row, key


def find_session(key: str) -> StaffSession | None:
    """The session (open or ended) whose cookie carries ``key``, with its user."""
    if not key:
        return None
    return db.session.scalar(select(StaffSession).options(joinedload(StaffSession.user))
                             .where(StaffSession.key_hash == hash_key(key)))


def rotate_key(row: StaffSession) -> str:
    """Give ``row`` a new key (after the second factor), so a cookie copied in between
    stays half signed in; returns the new key."""
    key = secrets.token_urlsafe(32)
    row.key_hash = hash_key(key)
    db.session.flush()
    return key


def expired(row: StaffSession, lifetime: timedelta, now: datetime | None = None) -> bool:
    """Whether ``row`` is older than ``lifetime`` (how long a sign-in lasts)."""
    return row.created_at + lifetime <= (now or utcnow())


def needs_touch(row: StaffSession, now: datetime | None = None) -> bool:
    """Whether ``last_seen_at`` is older than TOUCH_INTERVAL."""
    return row.last_seen_at + TOUCH_INTERVAL <= (now or utcnow())


def touch(session_id: int) -> None:
    """Record that the session was seen now (bookkeeping: no audit event). Written with
    one UPDATE, only while the session is open and last seen over TOUCH_INTERVAL ago."""
    now = utcnow()
    db.session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.ended_at.is_(None),
               StaffSession.last_seen_at <= now - TOUCH_INTERVAL)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False))


def complete_second_factor(row: StaffSession) -> str:
    """The second factor was given: the session opens the console from now on, under a
    new key (returned)."""
    row.second_factor_done = True
    return rotate_key(row)


def end_session(row: StaffSession, reason: str, *, actor: StaffUser | None) -> bool:
    """End one session (an admin's decision, expiry); False if it had already ended."""
    if row.ended_at is not None:
        return False
    row.ended_at, row.end_reason = utcnow(), reason
    audit.record(actor, "staff.session_end", row.user,
                 {"reason": reason, "sessions": [row.id]})
    return True


def end_sessions(user: StaffUser, reason: str, *, actor: StaffUser | None,
                 keep: StaffSession | None = None) -> int:
    """End every open session of ``user`` except ``keep``; returns how many ended.

    ``reason`` says why ("sign-out", "password", "deactivated", "role", "2fa-reset",
    "admin"); one audit event records the ends when there were any. A session ended in
    the middle of its own request is refused from its next request on.
    """
    query = select(StaffSession).where(StaffSession.user_id == user.id,
                                       StaffSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(StaffSession.id != keep.id)
    now = utcnow()
    ended = db.session.scalars(query.with_for_update()).all()
    for row in ended:
        row.ended_at, row.end_reason = now, reason
    if ended:
        audit.record(actor, "staff.sessions_end", user,
                     {"reason": reason, "sessions": [row.id for row in ended]})
    return len(ended)


def active_sessions(lifetime: timedelta, *, user: StaffUser | None = None,
                    limit: int = 500) -> list[StaffSession]:
    """Open sessions not older than ``lifetime``, last seen first (of ``user`` if given)."""
    query = (select(StaffSession).options(joinedload(StaffSession.user))
             .where(StaffSession.ended_at.is_(None),
                    StaffSession.created_at > utcnow() - lifetime)
             .order_by(StaffSession.last_seen_at.desc(), StaffSession.id.desc())
             .limit(limit))
    if user is not None:
        query = query.where(StaffSession.user_id == user.id)
    return list(db.session.scalars(query))


# --------------------------------------------------------------------------- sign-in events


@dataclass(frozen=True)
class UnknownAccount:
    """The audit target of a failed sign-in with an email no staff account has."""

    id: str


def record_sign_in(row: StaffSession, *, method: str) -> None:
    """The user of ``row`` is signed in (``method``: "password", "totp", "recovery code"
    or "enrolment")."""
    user = row.user
    user.last_login_at = utcnow()
    audit.record(user, "staff.sign_in", user,
                 {"session": row.id, "method": method, "ip": row.ip})


def record_password_accepted(row: StaffSession) -> None:
    """The password was right; the session waits for the second factor."""
    audit.record(row.user, "staff.sign_in_password", row.user,
                 {"session": row.id, "ip": row.ip,
                  "next": "code" if row.user.totp_enrolled_at else "enrolment"})


def record_sign_in_failure(email: str, user: StaffUser | None, *, ip: str,
                           reason: str) -> None:
    """A refused sign-in: the account when one has this email, and the client address.
    ``reason`` is "password", "deactivated", "unknown account" or a second-factor one."""
    email = (email or "").strip().lower()[:254]
    target = user if user is not None else UnknownAccount(email)
    audit.record(None, "staff.sign_in_failed", target,
                 {"email": email, "ip": (ip or "")[:MAX_IP], "reason": reason},
                 actor_label=ANONYMOUS)


def sign_out(row: StaffSession) -> None:
    """The user of ``row`` signs out: that session ends (their others stay open)."""
    if row.ended_at is not None:
        return
    row.ended_at, row.end_reason = utcnow(), "sign-out"
    audit.record(row.user, "staff.sign_out", row.user, {"session": row.id})


def account_for(email: str) -> StaffUser | None:
    """The staff account with this email (any case), active or not."""
    email = (email or "").strip().lower()
    if not email:
        return None
    return db.session.scalar(select(StaffUser).where(func.lower(StaffUser.email) == email))
