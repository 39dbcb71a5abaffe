"""Read-only queries the tests use to check what the domain wrote."""

from __future__ import annotations

from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import CreditEntry, Profile


def profile_by_email(email: str) -> Profile | None:
    """The profile with this email (any case), or None."""
    return db.session.scalar(select(Profile).where(Profile.email == (email or "").strip().lower()))


def ledger_sum(profile: Profile) -> int:
    """The sum of a profile's ledger entries (what its balance must equal)."""
    return db.session.scalar(
        select(func.coalesce(func.sum(CreditEntry.amount), 0))
        .where(CreditEntry.profile_id == profile.id)) or 0
