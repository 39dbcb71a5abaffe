"""audit log append-only in the database, chain keyed with AUDIT_KEY

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:30:00.000000

The database refuses to change or remove audit rows: on PostgreSQL a trigger function
refuses UPDATE and DELETE (row triggers) and TRUNCATE (statement triggers) on
``audit_event`` and ``audit_checkpoint``; on SQLite, BEFORE UPDATE and BEFORE DELETE
triggers abort. The app's own role should in addition hold no UPDATE, DELETE or TRUNCATE
privilege on them (README, "Audit log").

The chain becomes keyed: each event's hash turns from SHA-256 into HMAC-SHA256 with the
app's AUDIT_KEY. The events already there are re-hashed in order, with the key of the app
running the migration, before the triggers exist; the existing chain (and checkpoints, if
any) is verified first and the migration stops if it is broken, so a tampered log is
never vouched for with the key. The downgrade drops the triggers and re-hashes back to
plain SHA-256 after verifying the keyed chain.

The hashed content below is a frozen copy of ``audit.hashed_content`` as of this
revision. On SQLite, a later migration that rebuilds either table (batch mode) drops its
triggers with it and must create them again (``_create_triggers``).
"""
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC

import sqlalchemy as sa
from alembic import context, op
from flask import current_app

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TABLES = ("audit_event", "audit_checkpoint")
GENESIS_HASH = "0" * 64
BATCH = 1000

PG_FUNCTION = """
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit rows are never changed or removed; the log is verified with '
                     '"flask audit verify".';
END
$$
"""


def _create_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
    elif dialect == "sqlite":
        for table in TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} "
                           f"refused'); END")
    else:
        raise RuntimeError(f"No append-only triggers for the {dialect} dialect")


def _drop_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    else:
        for table in TABLES:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


# --------------------------------------------------------------------------- re-hashing

events = sa.table(
    "audit_event",
    sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger),
    sa.column("created_at", sa.DateTime(timezone=True)), sa.column("actor_id", sa.Integer),
    sa.column("actor_label", sa.String), sa.column("action", sa.String),
    sa.column("target_type", sa.String), sa.column("target_id", sa.String),
    sa.column("details", sa.JSON), sa.column("prev_hash", sa.String),
    sa.column("hash", sa.String),
)
checkpoints = sa.table("audit_checkpoint", sa.column("id", sa.Integer),
                       sa.column("seq", sa.BigInteger), sa.column("hash", sa.String))

Digest = Callable[[bytes], str]


def _content(row, prev_hash: str) -> bytes:
    created_at = row.created_at
    created_at = (created_at.replace(tzinfo=UTC) if created_at.tzinfo is None
                  else created_at.astimezone(UTC))
    return json.dumps(
        {"seq": row.seq, "created_at": created_at.isoformat(), "actor_id": row.actor_id,
         "actor_label": row.actor_label, "action": row.action,
         "target_type": row.target_type, "target_id": row.target_id,
         "details": row.details, "prev_hash": prev_hash},
        sort_keys=True, separators=(",", ":"),
    ).encode()


def _plain(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _keyed() -> Digest:
    key = current_app.config.get("AUDIT_KEY")
    if not key:
        raise RuntimeError("Migration 0005 re-hashes the audit chain with AUDIT_KEY, "
                           "which is not set")

    def digest(content: bytes) -> str:
        return hmac.new(key.encode(), content, hashlib.sha256).hexdigest()

    return digest


def _rechain(old: Digest, new: Digest, old_name: str) -> None:
    """Verify the chain (and its checkpoints) under ``old``, then re-hash it with ``new``.

    Refuses, changing nothing, when the chain as it stands does not verify.
    """
    bind = op.get_bind()
    watched: dict[int, list[tuple[int, str]]] = {}
    for cp_id, seq, cp_hash in bind.execute(sa.select(checkpoints.c.id, checkpoints.c.seq,
                                                      checkpoints.c.hash)):
        watched.setdefault(seq, []).append((cp_id, cp_hash))
    _verify(bind, old, old_name, watched)
    new_prev = GENESIS_HASH
    for batch in _batches(bind):
        for row in batch:
            new_hash = new(_content(row, new_prev))
            bind.execute(sa.update(events).where(events.c.id == row.id)
                         .values(prev_hash=new_prev, hash=new_hash))
            for cp_id, _old_hash in watched.get(row.seq, []):
                bind.execute(sa.update(checkpoints).where(checkpoints.c.id == cp_id)
                             .values(hash=new_hash))
            new_prev = new_hash


def _batches(bind):
    last = 0
    while True:
        batch = bind.execute(sa.select(events).where(events.c.seq > last)
                             .order_by(events.c.seq).limit(BATCH)).all()
        if not batch:
            return
        yield batch
        last = batch[-1].seq


def _verify(bind, old: Digest, old_name: str, watched: dict) -> None:
    """Raise unless the whole chain and its checkpoints verify under ``old``."""

    def refuse(seq: int, problem: str):
        return RuntimeError(
            f"The audit chain does not verify under {old_name} at event {seq}: {problem}. "
            "It is not re-hashed, so as not to vouch for a tampered log; find out what "
            "happened first (a development database can be started afresh).")

    expected_seq, expected_prev, seen = 1, GENESIS_HASH, set()
    for batch in _batches(bind):
        for row in batch:
            if row.seq != expected_seq:
                raise refuse(row.seq, f"event {expected_seq} is missing")
            if row.prev_hash != expected_prev or old(_content(row, row.prev_hash)) != row.hash:
                raise refuse(row.seq, "its hash does not match")
            for cp_id, cp_hash in watched.get(row.seq, []):
                if cp_hash != row.hash:
                    raise refuse(row.seq, f"checkpoint {cp_id} recorded another hash")
            seen.add(row.seq)
            expected_seq, expected_prev = row.seq + 1, row.hash
    for seq in sorted(watched.keys() - seen):
        raise refuse(seq, "a checkpoint names it but it is missing")


def _require_online() -> None:
    if context.is_offline_mode():
        raise RuntimeError("Migration 0005 re-hashes the audit chain and cannot be run "
                           "offline (--sql)")


def upgrade():
    _require_online()
    _rechain(_plain, _keyed(), "plain SHA-256")
    _create_triggers(op.get_bind().dialect.name)


def downgrade():
    _require_online()
    _drop_triggers(op.get_bind().dialect.name)
    _rechain(_keyed(), _plain, "the AUDIT_KEY HMAC")
