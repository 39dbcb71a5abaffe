"""The append-only, hash-chained audit log.

Each event's hash covers its content and the previous event's hash, so editing or
deleting any row breaks the chain from there on; ``verify_chain`` finds where.
Events are written in the caller's transaction: a change and its audit event commit
or roll back together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import event, select

from .clock import utcnow
from .extensions import db
from .models import AuditEvent, StaffUser
from .numbering import next_value

GENESIS_HASH = "0" * 64


def _jsonable(value: Any) -> Any:
    """Turn details into plain JSON values (dates as ISO strings, enums as values)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | bool) or value is None:
        return getattr(value, "value", value)
    return str(value)


def compute_hash(event_row: AuditEvent) -> str:
    """SHA-256 of the event's content and its predecessor's hash."""
    payload = json.dumps(
        {
            "seq": event_row.seq,
            "created_at": event_row.created_at.isoformat(),
            "actor_id": event_row.actor_id,
            "actor_label": event_row.actor_label,
            "action": event_row.action,
            "target_type": event_row.target_type,
            "target_id": event_row.target_id,
            "details": event_row.details,
            "prev_hash": event_row.prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def record(
    actor: StaffUser | None,
    action: str,
    target: Any,
    details: dict | None = None,
    *,
    actor_label: str | None = None,
) -> AuditEvent:
    """Write one audit event in the current transaction and flush it.

    ``target`` is a model instance (its class and id are recorded). Taking the next
    sequence number locks the audit counter until commit, so concurrent writers chain
    one after another.
    """
    db.session.flush()  # the target needs its id
    seq = next_value("audit")
    previous = db.session.execute(
        select(AuditEvent.hash).where(AuditEvent.seq == seq - 1)
    ).scalar_one_or_none()
    row = AuditEvent(
        seq=seq,
        created_at=utcnow(),
        actor_id=actor.id if actor is not None else None,
        actor_label=actor_label or (actor.email if actor is not None else "system"),
        action=action,
        target_type=type(target).__name__,
        target_id=str(getattr(target, "id", target)),
        details=_jsonable(details or {}),
        prev_hash=previous or GENESIS_HASH,
    )
    row.hash = compute_hash(row)
    db.session.add(row)
    db.session.flush()
    return row


@dataclass
class ChainProblem:
    """Where the chain breaks and why."""

    seq: int
    problem: str


def verify_chain(batch_size: int = 1000) -> list[ChainProblem]:
    """Walk the whole chain in order; return every break found (empty when intact)."""
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for row in _iter_events(batch_size):
        if row.seq != expected_seq:
            problems.append(ChainProblem(row.seq, f"expected event {expected_seq}: rows missing"))
        if row.prev_hash != expected_prev:
            problems.append(ChainProblem(row.seq, "does not link to the event before it"))
        if compute_hash(row) != row.hash:
            problems.append(ChainProblem(row.seq, "content does not match its hash"))
        expected_prev = row.hash
        expected_seq = row.seq + 1
    return problems


def _iter_events(batch_size: int) -> Iterator[AuditEvent]:
    """Stream the events in chain order without loading them all at once."""
    last = 0
    while True:
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        db.session.expunge_all()


@event.listens_for(AuditEvent, "before_update")
def _refuse_update(_mapper, _connection, target: AuditEvent) -> None:
    raise RuntimeError(f"audit event {target.seq} is append-only and cannot be changed")


@event.listens_for(AuditEvent, "before_delete")
def _refuse_delete(_mapper, _connection, target: AuditEvent) -> None:
    raise RuntimeError(f"audit event {target.seq} is append-only and cannot be deleted")
