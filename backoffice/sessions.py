"""Server-side staff sessions: each signed-in browser has a row, checked on every request.

Ending a user's sessions (sign-out, a password change or reset, deactivation, a role
change, a 2FA reset, or an admin's decision) signs those browsers out at once, whatever
their cookie says. Like every domain module, this writes in the caller's transaction and
never commits.
"""

from __future__ import annotations

from sqlalchemy import select

from . import audit
from .clock import utcnow
from .extensions import db
from .models import StaffSession, StaffUser


def end_sessions(user: StaffUser, reason: str, *, actor: StaffUser | None,
                 keep: StaffSession | None = None) -> int:
    """End every open session of ``user`` except ``keep``; returns how many ended.

    ``reason`` says why ("sign-out", "password", "deactivated", "role", "2fa-reset",
    "admin"); one audit event records the ends when there were any.
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
