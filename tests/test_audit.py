"""The audit log: keyed and hash-chained, checkpointed, append-only, and written with the
change or not at all. (What the database refuses, and ``flask audit verify`` against
tampering, are in test_audit_tamper.py.)"""

from __future__ import annotations

import hashlib
import hmac

import pytest
import sqlalchemy as sa

from backoffice import audit, checks, create_app, jobs, staff
from backoffice.config import DEV_AUDIT_KEY, from_environment
from backoffice.errors import Conflict
from backoffice.extensions import db
from backoffice.models import AuditCheckpoint, AuditEvent, Counter, StaffUser
from tests.conftest import audit_guard_lifted, count_change_events, make_staff

AUDIT = AuditEvent.__table__
CHECKPOINTS = AuditCheckpoint.__table__


class Thing:
    """A stand-in audit target."""

    id = 7


def tamper(session, *statements) -> None:
    """Run raw SQL on the audit tables as someone with the database's own powers would
    (the append-only triggers lifted), then commit."""
    with audit_guard_lifted(session.connection()):
        for statement in statements:
            session.execute(statement)
    session.commit()


def _write_events(count: int, actor=None) -> list[AuditEvent]:
    return [audit.record(actor, "test.event", actor or Thing(), {"n": n})
            for n in range(1, count + 1)]


@pytest.fixture
def chain(appctx):
    """Five committed events by a staff member."""
    with appctx() as session:
        actor = make_staff("admin")
        _write_events(5, actor)
        session.commit()


def test_events_chain_in_sequence(ctx):
    actor = make_staff("finance")
    events = _write_events(4, actor)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == audit.GENESIS_HASH
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
    assert len({e.hash for e in events}) == 4
    assert all(e.hash == audit.compute_hash(e) for e in events)
    assert events[0].actor_id == actor.id and events[0].actor_label == "finance@staff.test"
    assert events[0].target_type == "StaffUser" and events[0].target_id == str(actor.id)
    assert audit.verify_chain() == []


def test_system_events_and_labels(ctx):
    event = audit.record(None, "job.ran", Thing(), {"when": None},
                         actor_label="job:outbox")
    assert event.actor_id is None and event.actor_label == "job:outbox"
    assert audit.record(None, "x", Thing()).actor_label == "system"


def test_details_are_stored_as_plain_json(ctx):
    from datetime import date

    from backoffice.models import StaffRole

    event = audit.record(None, "test", Thing(),
                         {"on": date(2026, 2, 28), "role": StaffRole.ADMIN, "ids": (1, 2)})
    assert event.details == {"on": "2026-02-28", "role": "admin", "ids": [1, 2]}
    ctx.commit()
    ctx.expire_all()
    assert ctx.get(AuditEvent, event.id).details == event.details
    assert audit.verify_chain() == []


def test_empty_chain_verifies(ctx):
    assert audit.verify_chain() == []


def test_verify_walks_in_batches(ctx):
    _write_events(7)
    ctx.commit()
    assert audit.verify_chain(batch_size=2) == []
    tamper(ctx, sa.update(AUDIT).where(AUDIT.c.seq == 6).values(action="other"))
    problems = audit.verify_chain(batch_size=2)
    assert [(p.seq, p.problem) for p in problems] == [(6, "content does not match its hash")]


def test_tampered_details_are_found_at_that_event(chain, appctx):
    with appctx() as session:
        # raw SQL, as the database's superuser could: neither the ORM nor the triggers stop it
        tamper(session, sa.update(AUDIT).where(AUDIT.c.seq == 3).values(details={"n": 99}))
        problems = audit.verify_chain()
    assert [(p.seq, p.problem) for p in problems] == [(3, "content does not match its hash")]


def test_tampered_hash_breaks_the_link_to_the_next_event(chain, appctx):
    with appctx() as session:
        tamper(session, sa.update(AUDIT).where(AUDIT.c.seq == 2).values(hash="f" * 64))
        problems = audit.verify_chain()
    assert {(p.seq, p.problem) for p in problems} == {
        (2, "content does not match its hash"),
        (3, "does not link to the event before it"),
    }


def test_deleted_middle_event_is_found(chain, appctx):
    with appctx() as session:
        tamper(session, sa.delete(AUDIT).where(AUDIT.c.seq == 3))
        problems = audit.verify_chain()
    assert {p.seq for p in problems} == {4}
    assert {p.problem for p in problems} == {"expected event 3: rows missing",
                                             "does not link to the event before it"}


def test_deleted_first_event_is_found(chain, appctx):
    with appctx() as session:
        tamper(session, sa.delete(AUDIT).where(AUDIT.c.seq == 1))
        assert [p.seq for p in audit.verify_chain()] == [2, 2]


def test_orm_refuses_to_update_an_event(chain, appctx):
    with appctx() as session:
        event = session.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 2))
        event.details = {"n": 42}
        with pytest.raises(RuntimeError, match="append-only"):
            session.flush()
        session.rollback()
    with appctx() as session:
        assert session.scalar(sa.select(AuditEvent.details).where(AuditEvent.seq == 2)) == \
            {"n": 2}


def test_orm_refuses_to_delete_an_event(chain, appctx):
    with appctx() as session:
        session.delete(session.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 2)))
        with pytest.raises(RuntimeError, match="append-only"):
            session.flush()
        session.rollback()
    with appctx() as session:
        assert session.scalar(sa.select(sa.func.count(AuditEvent.id))) == 5


def test_audit_verify_command(app, chain, appctx):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "Audit chain intact." in result.output

    with appctx() as session:
        tamper(session, sa.update(AUDIT).where(AUDIT.c.seq == 4).values(actor_label="nobody"))
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "event 4: content does not match its hash" in result.output
    assert "intact" not in result.output


def test_a_rolled_back_operation_leaves_no_event(ctx):
    """A unit of work that fails half-way takes its audit events with it, numbers too."""
    staff.create_staff(email="first@staff.example.com", name="First", role="support",
                       password="x7#Kq9!mZ2vL", actor=None)
    with pytest.raises(Conflict):
        staff.create_staff(email="first@staff.example.com", name="Again", role="support",
                           password="x7#Kq9!mZ2vL", actor=None)
    ctx.rollback()
    assert ctx.scalar(sa.select(sa.func.count(AuditEvent.id))) == 0
    assert ctx.scalar(sa.select(StaffUser.id).where(
        StaffUser.email == "first@staff.example.com")) is None
    # the sequence number was given back: the next event is still number 1
    event = audit.record(None, "test.event", Thing())
    assert event.seq == 1 and event.prev_hash == audit.GENESIS_HASH


def test_a_refused_view_operation_leaves_no_event(appctx, client_as, staff):
    other = staff("support")
    client = client_as("admin")
    with appctx() as session:
        me = session.scalar(sa.select(StaffUser.id).where(StaffUser.email == "admin@staff.test"))
    client.post("/admin/staffuser/action/", data={"action": "deactivate",
                                                  "rowid": [str(other), str(me)]})
    with appctx() as session:
        assert count_change_events() == 0
        assert session.get(StaffUser, other).active is True
        # the refused action gave its sequence number back: only the sign-in's is taken
        assert session.get(Counter, "audit").value == 1


def test_every_event_is_committed_with_its_change(appctx, client_as):
    client = client_as("admin")
    client.post("/admin/certificatetype/new/", data={
        "code": "DV", "name": "Domain Validated", "kind": "traditional", "yearly_price": "5000"})
    with appctx():
        sign_in, event = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq))
        assert (sign_in.action, sign_in.seq) == ("staff.sign_in", 1)
        assert (event.action, event.seq) == ("catalog.certificate_type.create", 2)
        assert audit.verify_chain() == []


# --------------------------------------------------------------------------- the key


def _hmac(key: str, event: AuditEvent) -> str:
    return hmac.new(key.encode(), audit.hashed_content(event), hashlib.sha256).hexdigest()


def test_each_hash_is_an_hmac_with_the_audit_key(app, ctx):
    first, second = _write_events(2)
    assert app.config["AUDIT_KEY"] == DEV_AUDIT_KEY  # testing, no AUDIT_KEY given
    assert first.hash == _hmac(DEV_AUDIT_KEY, first)
    assert second.hash == _hmac(DEV_AUDIT_KEY, second) and second.prev_hash == first.hash
    # not a plain digest anyone could recompute, nor the HMAC of another key
    assert first.hash != hashlib.sha256(audit.hashed_content(first)).hexdigest()
    assert audit.compute_hash(first, b"another key") != first.hash


def test_each_app_hashes_with_its_own_key(ctx, second_app):
    other = second_app(AUDIT_KEY="another-audit-key-0123456789abcdef")
    mine = audit.record(None, "test.event", Thing(), {"n": 1})
    ctx.commit()
    with other.app_context():
        theirs = audit.record(None, "test.event", Thing(), {"n": 2})
        assert theirs.hash == _hmac("another-audit-key-0123456789abcdef", theirs)
        assert [(p.seq, p.problem) for p in audit.verify_chain()] == [
            (1, "content does not match its hash")]
        db.session.commit()
    assert mine.hash == _hmac(DEV_AUDIT_KEY, mine)
    # the app's own key finds the event the other key hashed
    assert [(p.seq, p.problem) for p in audit.verify_chain()] == [
        (2, "content does not match its hash")]


def test_no_event_is_hashed_without_a_key(ctx, monkeypatch):
    monkeypatch.setattr(audit, "_key_source", lambda: "")
    with pytest.raises(RuntimeError, match="audit key is empty"):
        audit.record(None, "test.event", Thing())
    monkeypatch.setattr(audit, "_key_source", None)
    with pytest.raises(RuntimeError, match="No audit key"):
        audit.verify_chain()


def _app(tmp_path, **config):
    return create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'key.db'}",
                       "SECRET_KEY": "a-real-secret", "SCHEDULER_ENABLED": False,
                       "RATELIMIT_ENABLED": False, **config})


def _dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def _no_key_in_environment(monkeypatch):
    monkeypatch.delenv("AUDIT_KEY", raising=False)
    monkeypatch.delenv("BACKOFFICE_AUDIT_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


@pytest.mark.usefixtures("_no_key_in_environment")
@pytest.mark.parametrize("key", ["", DEV_AUDIT_KEY, "short-key-0123456789"])
def test_refuses_to_start_without_a_real_audit_key(tmp_path, key):
    with pytest.raises(RuntimeError, match="AUDIT_KEY"):
        _app(tmp_path, TESTING=False, AUDIT_KEY=key)


@pytest.mark.usefixtures("_no_key_in_environment")
def test_starts_with_its_own_audit_key(tmp_path):
    app = _app(tmp_path, TESTING=False, AUDIT_KEY="k" * 32)
    assert app.config["AUDIT_KEY"] == "k" * 32
    _dispose(app)


@pytest.mark.usefixtures("_no_key_in_environment")
@pytest.mark.parametrize("mode", [{"TESTING": True}, {"DEBUG": True}])
def test_debug_and_testing_fall_back_on_the_development_key(tmp_path, mode):
    app = _app(tmp_path, AUDIT_KEY="", **mode)
    assert app.config["AUDIT_KEY"] == DEV_AUDIT_KEY
    _dispose(app)
    app = _app(tmp_path, AUDIT_KEY="a-key-of-its-own", **mode)
    assert app.config["AUDIT_KEY"] == "a-key-of-its-own"
    _dispose(app)


@pytest.mark.usefixtures("_no_key_in_environment")
def test_audit_key_comes_from_the_environment_then_the_instance_file(tmp_path, monkeypatch):
    assert from_environment(str(tmp_path))["AUDIT_KEY"] == ""
    (tmp_path / "audit_key").write_text("from-the-file\n")
    assert from_environment(str(tmp_path))["AUDIT_KEY"] == "from-the-file"
    monkeypatch.setenv("AUDIT_KEY", "from-the-environment")
    assert from_environment(str(tmp_path))["AUDIT_KEY"] == "from-the-environment"


# --------------------------------------------------------------------------- checkpoints


def test_an_empty_log_gets_no_checkpoint(ctx):
    assert audit.write_checkpoint() is None
    assert ctx.scalar(sa.select(sa.func.count(AuditCheckpoint.id))) == 0
    assert ctx.scalar(sa.select(sa.func.count(AuditEvent.id))) == 0


def test_a_checkpoint_keeps_the_head_and_is_logged(ctx):
    events = _write_events(3)
    checkpoint = audit.write_checkpoint(actor_label="job:ledger_check")
    assert (checkpoint.seq, checkpoint.hash) == (3, events[-1].hash)
    logged = ctx.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 4))
    assert logged.action == audit.CHECKPOINT_ACTION and logged.actor_label == "job:ledger_check"
    assert (logged.target_type, logged.target_id) == ("AuditCheckpoint", str(checkpoint.id))
    assert logged.details == {"seq": 3, "hash": events[-1].hash}
    assert audit.last_checkpoint() == checkpoint
    assert audit.verify_chain() == []


def test_a_checkpoint_that_disagrees_with_the_chain_is_reported(ctx):
    _write_events(3)
    checkpoint = audit.write_checkpoint()
    ctx.commit()
    checkpoint_id = checkpoint.id
    label = f"checkpoint {checkpoint_id} of {checkpoint.created_at:%Y-%m-%d %H:%M} UTC"
    tamper(ctx, sa.update(CHECKPOINTS).values(hash="e" * 64))
    assert [(p.seq, p.problem) for p in audit.verify_chain()] == [
        (3, f"its hash is not the one {label} recorded: the chain was rewritten"),
        (4, f"records checkpoint {checkpoint_id} otherwise than audit_checkpoint holds it"),
    ]


def test_a_removed_checkpoint_row_is_reported_by_its_event(ctx):
    _write_events(2)
    checkpoint_id = audit.write_checkpoint().id
    ctx.commit()
    tamper(ctx, sa.delete(CHECKPOINTS))
    assert [(p.seq, p.problem) for p in audit.verify_chain()] == [
        (3, f"records checkpoint {checkpoint_id}, which is missing from audit_checkpoint")]


def test_every_checkpoint_is_held_against_the_chain(ctx):
    """Not only the last: a later checkpoint written over a cut-back log does not hide
    the cut."""
    _write_events(4)
    audit.write_checkpoint()  # names event 4; logged as event 5
    ctx.commit()
    tamper(ctx, sa.delete(AUDIT).where(AUDIT.c.seq >= 4))
    audit.write_checkpoint()  # names event 3, the head now
    ctx.commit()
    problems = [(p.seq, p.problem.split(",")[0]) for p in audit.verify_chain()]
    assert (4, "missing") in problems
    assert audit.last_checkpoint().seq == 3


def test_the_orm_refuses_to_change_a_checkpoint(ctx):
    _write_events(1)
    checkpoint = audit.write_checkpoint()
    checkpoint.hash = "0" * 64
    with pytest.raises(RuntimeError, match=f"audit checkpoint {checkpoint.id} is append-only"):
        ctx.flush()
    ctx.rollback()


def test_the_nightly_check_commits_a_checkpoint(appctx):
    with appctx() as session:
        _write_events(2)
        session.commit()
    with appctx():
        run = jobs.run_job("ledger_check")
        assert run.details["checkpoint"] == "event 2" and run.details["anomalies"] == []
    with appctx() as session:
        (checkpoint,) = session.scalars(sa.select(AuditCheckpoint)).all()
        assert checkpoint.seq == 2
        assert session.scalar(sa.select(AuditEvent.action).where(AuditEvent.seq == 3)) == \
            audit.CHECKPOINT_ACTION
        assert audit.verify_chain() == []


def test_the_check_itself_commits_nothing(appctx):
    with appctx() as session:
        _write_events(1)
        session.commit()
    with appctx():
        assert checks.ledger_check()["checkpoint"] == "event 1"
    with appctx() as session:
        assert session.scalar(sa.select(sa.func.count(AuditCheckpoint.id))) == 0
        assert session.scalar(sa.select(sa.func.count(AuditEvent.id))) == 1
