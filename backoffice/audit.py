"""The append-only, keyed, hash-chained audit log.

Each event's hash is an HMAC-SHA256, keyed with the audit key (``AUDIT_KEY``, kept out
of the database), over its content and the previous event's hash: editing or deleting
any row breaks the chain from there on, and without the key nobody can recompute it.
Checkpoints (``write_checkpoint``, nightly) keep the chain head in a separate table, so
a removed tail or a chain rewritten from some point on is found too; ``verify_chain``
reports where. The database refuses UPDATE, DELETE and TRUNCATE on both tables
(migration 0005), and the ORM refuses them before they are sent.
Events are written in the caller's transaction: a change and its audit event commit
or roll back together. ``record`` writes one event; ``record_many`` writes a batch (a job's
chunk) with one reservation of consecutive sequence numbers and one INSERT.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import event, select

from .bulk import insert_rows
from .clock import utcnow
from .extensions import db
from .models import AuditCheckpoint, AuditEvent, StaffUser
from .numbering import next_value, reserve_block

GENESIS_HASH = "0" * 64
#: the action of the event a checkpoint writes into the log
CHECKPOINT_ACTION = "audit.checkpoint"

#: where the audit key comes from (see ``use_key``)
_key_source: Callable[[], str | bytes] | None = None


def use_key(key: str | bytes | Callable[[], str | bytes]) -> None:
    """Set the key every event hash is keyed with: the key itself, or a function that
    returns the key in force (``create_app`` passes one that reads the current app's
    ``AUDIT_KEY``, so several apps in one process each use their own)."""
    global _key_source
    _key_source = key if callable(key) else (lambda: key)


def _key() -> bytes:
    if _key_source is None:
        raise RuntimeError("No audit key: audit.use_key() must be called first "
                           "(create_app does, from AUDIT_KEY)")
    key = _key_source()
    if not key:
        raise RuntimeError("The audit key is empty (AUDIT_KEY)")
    return key.encode() if isinstance(key, str) else key


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


def hashed_content(event_row: AuditEvent) -> bytes:
    """What an event's hash covers: its content and its predecessor's hash, as canonical
    JSON."""
    return json.dumps(
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
    ).encode()


def compute_hash(event_row: AuditEvent, key: bytes | None = None) -> str:
    """HMAC-SHA256 of the event's content and its predecessor's hash, keyed with the audit
    key (or ``key``)."""
    return hmac.new(key if key is not None else _key(), hashed_content(event_row),
                    hashlib.sha256).hexdigest()


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


def write_checkpoint(*, actor_label: str = "system") -> AuditCheckpoint | None:
    """Keep the chain head (its last event's sequence number and hash) in
    ``audit_checkpoint`` and record it in the log as an ``audit.checkpoint`` event, in
    the current transaction; None when the log is empty.

    A later ``verify_chain`` finds the event the checkpoint names, with that hash, or
    reports the chain cut back or rewritten.
    """
    head = db.session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    if head is None:
        return None
    checkpoint = AuditCheckpoint(created_at=utcnow(), seq=head.seq, hash=head.hash)
    db.session.add(checkpoint)
    db.session.flush()
    record(None, CHECKPOINT_ACTION, checkpoint, {"seq": head.seq, "hash": head.hash},
           actor_label=actor_label)
    return checkpoint


def last_checkpoint() -> AuditCheckpoint | None:
    """The checkpoint written last, if any."""
    return db.session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc())
                             .limit(1))


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


@dataclass(frozen=True)
class _Checkpoint:
    id: int
    created_at: datetime
    seq: int
    hash: str

    def __str__(self) -> str:
        return f"checkpoint {self.id} of {self.created_at:%Y-%m-%d %H:%M} UTC"


def verify_chain(batch_size: int = 1000) -> list[ChainProblem]:
    """Walk the whole chain in order and hold it against every checkpoint; return every
    break found (empty when intact).

    Each event must follow the one before it without a gap, link to its hash and match
    its own keyed hash. Each checkpoint's event must still be there with the hash it had
    (else the tail was removed, or the chain rewritten, since), and so must the
    ``audit.checkpoint`` event that logged it; and each such event's checkpoint row must
    still be there as it recorded it.
    """
    checkpoints = _read_checkpoints()
    watched = {c.seq for c in checkpoints}
    hashes_at: dict[int, str] = {}
    #: (event seq, checkpoint id, the seq and hash it recorded) of each checkpoint event
    claims: list[tuple[int, str, Any, Any]] = []
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    expected_seq = 1
    key = _key()
    for row in _iter_events(batch_size):
        if row.seq != expected_seq:
            problems.append(ChainProblem(row.seq, f"expected event {expected_seq}: rows missing"))
        if row.prev_hash != expected_prev:
            problems.append(ChainProblem(row.seq, "does not link to the event before it"))
        if compute_hash(row, key) != row.hash:
            problems.append(ChainProblem(row.seq, "content does not match its hash"))
        if row.seq in watched:
            hashes_at[row.seq] = row.hash
        if row.action == CHECKPOINT_ACTION and row.target_type == AuditCheckpoint.__name__:
            details = row.details or {}
            claims.append((row.seq, row.target_id, details.get("seq"), details.get("hash")))
        expected_prev = row.hash
        expected_seq = row.seq + 1
    problems += _checkpoint_problems(checkpoints, hashes_at, claims)
    return problems


def _read_checkpoints(*where: Any) -> list[_Checkpoint]:
    return [_Checkpoint(*row) for row in db.session.execute(
        select(AuditCheckpoint.id, AuditCheckpoint.created_at, AuditCheckpoint.seq,
               AuditCheckpoint.hash).where(*where).order_by(AuditCheckpoint.id))]


def _checkpoint_problems(checkpoints: list[_Checkpoint], hashes_at: dict[int, str],
                         claims: list[tuple[int, str, Any, Any]]) -> list[ChainProblem]:
    problems = []
    for checkpoint in checkpoints:
        found = hashes_at.get(checkpoint.seq)
        if found is None:
            problems.append(ChainProblem(
                checkpoint.seq, f"missing, but {checkpoint} vouched for it: events were "
                                f"removed from the log"))
        elif found != checkpoint.hash:
            problems.append(ChainProblem(
                checkpoint.seq, f"its hash is not the one {checkpoint} recorded: the chain "
                                f"was rewritten"))
    logged = {claim[1] for claim in claims}
    for checkpoint in checkpoints:
        if str(checkpoint.id) not in logged and checkpoint.seq in hashes_at:
            problems.append(ChainProblem(
                checkpoint.seq, f"{checkpoint} names it, but the event that logged the "
                                f"checkpoint is missing: events were removed from the log"))
    by_id = {str(c.id): c for c in checkpoints}
    # A checkpoint written while the walk ran is read now.
    unseen = {int(claim[1]) for claim in claims
              if claim[1] not in by_id and claim[1].isdigit()}
    if unseen:
        by_id.update((str(c.id), c) for c in _read_checkpoints(AuditCheckpoint.id.in_(unseen)))
    for seq, checkpoint_id, claimed_seq, claimed_hash in claims:
        claimed = by_id.get(checkpoint_id)
        if claimed is None:
            problems.append(ChainProblem(
                seq, f"records checkpoint {checkpoint_id}, which is missing from "
                     f"audit_checkpoint"))
        elif (claimed.seq, claimed.hash) != (claimed_seq, claimed_hash):
            problems.append(ChainProblem(
                seq, f"records checkpoint {checkpoint_id} otherwise than audit_checkpoint "
                     f"holds it"))
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


def _refuse(verb: str) -> Callable[..., None]:
    def listener(_mapper, _connection, target: AuditEvent | AuditCheckpoint) -> None:
        what = (f"audit event {target.seq}" if isinstance(target, AuditEvent)
                else f"audit checkpoint {target.id}")
        raise RuntimeError(f"{what} is append-only and cannot be {verb}")
    return listener


for _model in (AuditEvent, AuditCheckpoint):
    event.listen(_model, "before_update", _refuse("changed"))
    event.listen(_model, "before_delete", _refuse("deleted"))
