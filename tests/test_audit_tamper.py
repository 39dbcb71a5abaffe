"""Tampering with the audit log: what the database refuses, and what ``flask audit verify``
reports when someone with the database's own powers goes around it."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from alembic import command
from flask_migrate import downgrade, upgrade

from backoffice import audit, create_app, jobs
from backoffice.config import DEV_AUDIT_KEY
from backoffice.extensions import db
from backoffice.models import AuditCheckpoint, AuditEvent
from tests.conftest import audit_guard_lifted, base_config

AUDIT = AuditEvent.__table__
CHECKPOINTS = AuditCheckpoint.__table__
README = Path(__file__).resolve().parent.parent / "README.md"


class Thing:
    """A stand-in audit target."""

    id = 7


def _write_events(session, count: int) -> None:
    for n in range(count):
        audit.record(None, "test.event", Thing(), {"n": n})
    session.commit()


def _verify(app):
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    return result.exit_code, result.output


# --------------------------------------------------------------------------- the database refuses


def test_the_database_refuses_to_change_or_remove_audit_rows(appctx, is_postgres):
    """Even to the tables' owner (the test user), and without the ORM in the way."""
    with appctx() as session:
        _write_events(session, 2)
        audit.write_checkpoint()
        session.commit()
    statements = {
        "audit_event": [sa.update(AUDIT).where(AUDIT.c.seq == 1).values(action="forged"),
                        sa.delete(AUDIT).where(AUDIT.c.seq == 2)],
        "audit_checkpoint": [sa.update(CHECKPOINTS).values(seq=1), sa.delete(CHECKPOINTS)],
    }
    for table, (update, delete) in statements.items():
        for statement, verb in ((update, "UPDATE"), (delete, "DELETE")):
            with appctx() as session:
                with pytest.raises(sa.exc.DBAPIError,
                                   match=f"{table} is append-only: {verb} refused"):
                    session.execute(statement)
                session.rollback()
        if is_postgres:
            with appctx() as session:
                with pytest.raises(sa.exc.DBAPIError,
                                   match=f"{table} is append-only: TRUNCATE refused"):
                    session.execute(sa.text(f"TRUNCATE {table} CASCADE"))
                session.rollback()
    with appctx() as session:
        assert session.scalar(sa.select(sa.func.count(AuditEvent.id))) == 3
        assert session.scalar(sa.select(AuditEvent.action).where(AuditEvent.seq == 1)) == \
            "test.event"
        assert session.scalar(sa.select(sa.func.count(AuditCheckpoint.id))) == 1
        assert audit.verify_chain() == []
        # adding is still allowed
        audit.record(None, "test.event", Thing())
        session.commit()
        assert audit.verify_chain() == []


def _readme_grants(role: str) -> str:
    """The README's ``grants.sql`` for the app role, for ``role``."""
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    (grants,) = [b for b in blocks if "REVOKE UPDATE, DELETE, TRUNCATE ON audit_event" in b]
    return grants.replace("backoffice_app", role)


@pytest.fixture
def app_role(database_url, is_postgres):
    """A login role made as the README says, and an app that connects as it."""
    if not is_postgres:
        pytest.skip("database roles are PostgreSQL's")
    role, password = f"bo_app_{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    owner = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        for statement in _readme_grants(role).split(";"):
            if statement.strip().strip("-").strip():
                conn.exec_driver_sql(statement)
    url = sa.make_url(database_url).set(username=role, password=password)
    role_app = create_app(base_config(url.render_as_string(hide_password=False)))
    try:
        yield role_app
    finally:
        with role_app.app_context():
            db.session.remove()
            db.engine.dispose()
        with owner.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        owner.dispose()


@pytest.mark.postgres
def test_the_app_role_cannot_change_or_remove_audit_rows(app_role, appctx):
    with app_role.app_context():
        assert db.session.scalar(sa.text("SELECT current_user")).startswith("bo_app_")
        # the app works as this role: it writes events, and the nightly check its checkpoint
        _write_events(db.session, 3)
        run = jobs.run_job("ledger_check")
        assert run.details["anomalies"] == [] and run.details["checkpoint"] == "event 3"
        db.session.remove()
    for table in ("audit_event", "audit_checkpoint"):
        for sql in (f"UPDATE {table} SET seq = seq WHERE seq = 2", f"DELETE FROM {table}",
                    f"TRUNCATE {table}"):
            with app_role.app_context():
                with pytest.raises(sa.exc.ProgrammingError,
                                   match=f"permission denied for table {table}"):
                    db.session.execute(sa.text(sql))
                db.session.rollback()
                db.session.remove()
    with appctx() as session:
        assert session.scalar(sa.select(sa.func.count(AuditEvent.id))) == 4
        assert audit.verify_chain() == []
    assert _verify(app_role)[0] == 0


@pytest.mark.postgres
def test_the_readme_grants_leave_the_app_role_its_other_tables(app_role):
    """The test above can fail: the same role may change rows elsewhere."""
    with app_role.app_context():
        _write_events(db.session, 1)
        db.session.execute(sa.text("UPDATE counter SET value = value WHERE name = 'audit'"))
        db.session.execute(sa.text("DELETE FROM job_runner"))
        db.session.commit()
        db.session.remove()


# --------------------------------------------------------------------------- verify reports


@pytest.fixture
def checkpointed(app, appctx):
    """Six events, the nightly check's checkpoint of event 6 (logged as event 7), and two
    events after it; ``flask audit verify`` passes."""
    with appctx() as session:
        _write_events(session, 6)
    with appctx():
        assert jobs.run_job("ledger_check").details["checkpoint"] == "event 6"
    with appctx() as session:
        _write_events(session, 2)
    code, output = _verify(app)
    assert code == 0, output
    assert "Audit chain intact." in output and "Last checkpoint: event 6" in output
    with appctx():
        checkpoint = audit.last_checkpoint()
        return f"checkpoint {checkpoint.id} of {checkpoint.created_at:%Y-%m-%d %H:%M} UTC"


def _tamper(session, statement) -> None:
    with audit_guard_lifted(session.connection()):
        session.execute(statement)
    session.commit()


@pytest.mark.parametrize("first_removed", [5, 7])
def test_verify_reports_a_tail_removed_past_a_checkpoint(app, appctx, checkpointed,
                                                         first_removed):
    with appctx() as session:
        _tamper(session, sa.delete(AUDIT).where(AUDIT.c.seq >= first_removed))
        # what is left still chains: only the checkpoint tells
        assert [p for p in audit.verify_chain() if "checkpoint" not in p.problem] == []
    code, output = _verify(app)
    assert code == 1
    assert "intact" not in output
    if first_removed <= 6:
        assert (f"event 6: missing, but {checkpointed} vouched for it: events were removed "
                f"from the log") in output
    else:  # only the event logging the checkpoint went, with what followed it
        assert output.strip().splitlines() == [
            f"event 6: {checkpointed} names it, but the event that logged the checkpoint is "
            f"missing: events were removed from the log"]


def test_verify_cannot_tell_a_tail_cut_after_the_last_checkpoint(app, appctx, checkpointed):
    """The limit that the checkpoints (and the job runner's log of them) narrow."""
    with appctx() as session:
        _tamper(session, sa.delete(AUDIT).where(AUDIT.c.seq >= 8))
    assert _verify(app)[0] == 0


def test_verify_reports_a_middle_edit(app, appctx, checkpointed):
    with appctx() as session:
        _tamper(session, sa.update(AUDIT).where(AUDIT.c.seq == 3).values(details={"n": 99}))
    code, output = _verify(app)
    assert code == 1
    assert output.strip().splitlines() == ["event 3: content does not match its hash"]


def _plain(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _hmac_with(key: str):
    return lambda content: hmac.new(key.encode(), content, hashlib.sha256).hexdigest()


def _rewrite_from(session, seq: int, digest, **changes) -> None:
    """Change event ``seq`` and recompute its hash and every later one with ``digest``, as
    someone who goes around the triggers would."""
    columns = [c.name for c in AUDIT.columns]
    rows = session.execute(sa.select(AUDIT).where(AUDIT.c.seq >= seq - 1)
                           .order_by(AUDIT.c.seq)).all()
    prev_hash = rows[0].hash
    with audit_guard_lifted(session.connection()):
        for row in rows[1:]:
            event = SimpleNamespace(**dict(zip(columns, row, strict=True)))
            if event.seq == seq:
                vars(event).update(changes)
            event.prev_hash = prev_hash
            event.hash = digest(audit.hashed_content(event))
            session.execute(sa.update(AUDIT).where(AUDIT.c.id == event.id).values(
                prev_hash=event.prev_hash, hash=event.hash, **(
                    changes if event.seq == seq else {})))
            prev_hash = event.hash
    session.commit()


@pytest.mark.parametrize("digest", ["plain SHA-256", "HMAC with a guessed key"])
def test_verify_reports_a_middle_edit_with_every_later_hash_recomputed(
        app, appctx, checkpointed, digest):
    """Without the key, the recomputed chain links up but fails the HMAC, and the
    checkpoint no longer matches."""
    with appctx() as session:
        _rewrite_from(session, 3, _plain if digest == "plain SHA-256"
                      else _hmac_with("backoffice-audit-key"), details={"n": 99})
    code, output = _verify(app)
    assert code == 1
    lines = output.strip().splitlines()
    assert lines[:7] == [f"event {seq}: content does not match its hash" for seq in range(3, 10)]
    assert lines[7:] == [f"event 6: its hash is not the one {checkpointed} recorded: the chain "
                         f"was rewritten"]
    assert "does not link" not in output


def test_verify_reports_a_chain_rewritten_with_the_key_by_its_checkpoint(app, appctx,
                                                                        checkpointed):
    """Even whoever holds the key cannot rewrite what a checkpoint already covers."""
    with appctx() as session:
        _rewrite_from(session, 3, _hmac_with(DEV_AUDIT_KEY), actor_label="someone else")
        assert session.scalar(sa.select(AuditEvent.actor_label).where(AuditEvent.seq == 3)) \
            == "someone else"
    code, output = _verify(app)
    assert code == 1
    assert output.strip().splitlines() == [
        f"event 6: its hash is not the one {checkpointed} recorded: the chain was rewritten"]


def test_verify_reports_a_removed_checkpoint_row(app, appctx, checkpointed):
    with appctx() as session:
        checkpoint_id = audit.last_checkpoint().id
        _tamper(session, sa.delete(CHECKPOINTS))
    code, output = _verify(app)
    assert code == 1
    assert output.strip().splitlines() == [
        f"event 7: records checkpoint {checkpoint_id}, which is missing from audit_checkpoint"]


# --------------------------------------------------------------------------- migration 0005


@pytest.fixture
def scratch_app(database_url, is_postgres, tmp_path):
    """An app on an empty scratch database of the same kind as the test database."""
    if is_postgres:
        scratch = f"{sa.make_url(database_url).database}_audit"
        server = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{scratch}"')
        url = sa.make_url(database_url).set(database=scratch).render_as_string(
            hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'scratch.db'}"
    scratch_app = create_app(base_config(url))
    try:
        yield scratch_app
    finally:
        with scratch_app.app_context():
            db.session.remove()
            db.engine.dispose()
        if is_postgres:
            with server.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            server.dispose()


def _plain_chain_holds(session) -> bool:
    rows = session.execute(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    prev = audit.GENESIS_HASH
    for row in rows:
        if row.prev_hash != prev or _plain(audit.hashed_content(row)) != row.hash:
            return False
        prev = row.hash
    return bool(rows)


@pytest.mark.commits
def test_the_migration_keys_the_chain_that_was_there(scratch_app):
    with scratch_app.app_context():
        upgrade()
        _write_events(db.session, 4)
        audit.write_checkpoint()
        db.session.commit()
        downgrade(revision="0004")
        db.session.remove()
        # back at 0004: a plain SHA-256 chain, and no triggers
        assert _plain_chain_holds(db.session)
        db.session.execute(sa.update(AUDIT).where(AUDIT.c.seq == 1).values(action="test.event"))
        db.session.commit()
        upgrade()
        db.session.remove()
        assert not _plain_chain_holds(db.session)
        assert audit.verify_chain() == []  # keyed again, checkpoint included
        assert audit.last_checkpoint().seq == 4
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.delete(AUDIT))
        db.session.rollback()


@pytest.mark.commits
def test_the_migration_refuses_to_key_a_broken_chain(scratch_app):
    with scratch_app.app_context():
        upgrade()
        _write_events(db.session, 3)
        downgrade(revision="0004")
        db.session.execute(sa.update(AUDIT).where(AUDIT.c.seq == 2).values(action="forged"))
        db.session.commit()
        db.session.remove()
        config = scratch_app.extensions["migrate"].migrate.get_config()
        with pytest.raises(RuntimeError, match="does not verify under plain SHA-256 at event 2"):
            command.upgrade(config, "head")  # what `flask db upgrade` runs, error unwrapped
        db.session.remove()
        version = db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
        assert version == "0004"
        # nothing was re-hashed: the two untouched events still verify as they were
        rows = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        assert _plain(audit.hashed_content(rows[0])) == rows[0].hash
