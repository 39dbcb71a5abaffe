"""Exactly-once application of reviewed operations, by idempotency key.

A review carries a fresh random key. Confirming it first *claims* the key: an INSERT
into ``applied_operation``, whose UNIQUE constraint admits one row per key. The
operation's effect follows in the same transaction, and both commit or neither does.
A second Confirm of the same review finds the row (or, when both run at once, waits on
the first's INSERT and then fails on the constraint) and changes nothing. Stripe's
idempotency keys work the same way.

Fingerprints let a Confirm check that what it is about to apply is what was reviewed: a
stable digest of the domain's quote, taken at review and again at Confirm.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import secrets
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, inspect, select

from .clock import utcnow
from .extensions import db
from .models import AppliedOperation, StaffUser

#: how long applied keys are kept; a review itself expires long before (REVIEW_MAX_AGE)
KEY_RETENTION = timedelta(days=7)


def new_key() -> str:
    """A fresh idempotency key for a review."""
    return secrets.token_urlsafe(24)


def applied(key: str) -> AppliedOperation | None:
    """The committed application of ``key``, if there is one."""
    return db.session.scalar(select(AppliedOperation).where(AppliedOperation.key == key))


def claim(key: str, *, staff: StaffUser, operation: str, target: str) -> AppliedOperation:
    """Record that ``key`` is being applied, in the caller's transaction.

    Flushes at once, so a concurrent claim of the same key waits here for this
    transaction and then fails with IntegrityError; the caller rolls back and looks the
    key up with :func:`applied`.
    """
    row = AppliedOperation(key=key, staff_id=staff.id, operation=operation, target=target)
    db.session.add(row)
    db.session.flush()
    return row


def purge(*, now: datetime | None = None) -> int:
    """Forget keys older than KEY_RETENTION; returns how many (a job item; no commit)."""
    cutoff = (now or utcnow()) - KEY_RETENTION
    result = db.session.execute(
        delete(AppliedOperation).where(AppliedOperation.created_at < cutoff))
    return result.rowcount  # type: ignore[attr-defined]


def fingerprint(review: Any) -> str:
    """A stable digest of a review: dataclasses field by field, rows by table and id."""
    encoded = json.dumps(_plain(review), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "__table__"):
        return f"{value.__table__.name}:{inspect(value).identity}"
    raise TypeError(f"cannot fingerprint {type(value).__name__}")
