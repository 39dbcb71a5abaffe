"""The append-only, hash-chained audit log.

Each event's hash covers its content and the previous event's hash, so editing or
deleting any row breaks the chain from there on; ``verify_chain`` finds where.
Events are written in the caller's transaction: a change and its audit event commit
or roll back together. ``record`` writes one event; ``record_many`` writes a batch (a job's
chunk) with one reservation of consecutive sequence numbers and one INSERT.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import event, select

from .bulk import insert_rows
from .clock import utcnow
from .extensions import db
from .models import AuditEvent, StaffUser
from .numbering import next_value, reserve_block

GENESIS_HASH = "0" * 64


_PLAIN = frozenset({str, int, bool, type(None)})


def _jsonable(value: Any) -> Any:
    """Turn details into plain JSON values (dates as ISO strings, enums as values)."""
    if type(value) in _PLAIN:  # the most common case first: a batch has many values
        return value
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
    row = AuditEvent(**_fields(seq, utcnow(), actor, actor_label, Entry(
        action, type(target).__name__, str(getattr(target, "id", target)), details or {})))
    _link([row], _hash_before(seq))
    db.session.add(row)
    db.session.flush()
    return row


@dataclass(frozen=True)
class Entry:
    """One event of a batch for :func:`record_many`: what was done to which row."""

    action: str
    #: the model's class name and the row's id, as ``record`` takes them from an instance
    target_type: str
    target_id: str
    details: dict


def record_many(actor: StaffUser | None, entries: Sequence[Entry], *,
                actor_label: str | None = None) -> None:
    """Write a batch of audit events in the current transaction, in the order given.

    The batch reserves its block of consecutive sequence numbers with one counter update,
    which locks the audit counter until commit, as ``record`` does. Under that lock the
    event before the block is final (whoever held the numbers before it has committed or
    rolled back), so its hash is read once and the batch chains on from it; the events
    are inserted with one statement. Call it last in a chunk's transaction, right before
    the commit, so the counter is held only for the insert and the commit.
    """
    if not entries:
        return
    db.session.flush()
    first = reserve_block("audit", len(entries))
    now = utcnow()
    # Plain rows, not ORM objects: a chunk's thousand events are hashed, then inserted.
    rows = [_PendingEvent(_fields(first + offset, now, actor, actor_label, entry))
            for offset, entry in enumerate(entries)]
    _link(cast(list[AuditEvent], rows), _hash_before(first))
    insert_rows(AuditEvent, rows)


class _PendingEvent(dict):
    """An event of a batch before its INSERT: its columns by name, which are also its
    attributes, as ``compute_hash`` reads them."""

    __getattr__ = dict.__getitem__
    __setattr__ = dict.__setitem__


def _fields(seq: int, at: datetime, actor: StaffUser | None, actor_label: str | None,
            entry: Entry) -> dict[str, Any]:
    """An unlinked event's columns (no hashes yet): its number, time, who and what."""
    return {
        "seq": seq,
        "created_at": at,
        "actor_id": actor.id if actor is not None else None,
        "actor_label": actor_label or (actor.email if actor is not None else "system"),
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": _jsonable(entry.details),
    }


def _hash_before(seq: int) -> str:
    """The hash of event ``seq - 1``, or the genesis hash for the first event."""
    previous = db.session.execute(
        select(AuditEvent.hash).where(AuditEvent.seq == seq - 1)
    ).scalar_one_or_none()
    return previous or GENESIS_HASH


def _link(rows: Sequence[AuditEvent], prev_hash: str) -> None:
    """Chain consecutive events: each links to the one before and gets its own hash."""
    for row in rows:
        row.prev_hash = prev_hash
        row.hash = compute_hash(row)
        prev_hash = row.hash


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
