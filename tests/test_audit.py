"""The audit log: hash-chained, append-only, and written with the change or not at all."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from backoffice import audit, staff
from backoffice.errors import Conflict
from backoffice.extensions import db
from backoffice.models import AuditEvent, Counter, StaffUser
from tests.conftest import count_change_events, make_staff

AUDIT = AuditEvent.__table__


class Thing:
    """A stand-in audit target."""

    id = 7


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
    ctx.execute(sa.update(AUDIT).where(AUDIT.c.seq == 6).values(action="other"))
    problems = audit.verify_chain(batch_size=2)
    assert [(p.seq, p.problem) for p in problems] == [(6, "content does not match its hash")]


def test_tampered_details_are_found_at_that_event(chain, appctx):
    with appctx() as session:
        # raw SQL, as someone with database access would: the ORM guard is not involved
        session.execute(sa.update(AUDIT).where(AUDIT.c.seq == 3).values(details={"n": 99}))
        session.commit()
        problems = audit.verify_chain()
    assert [(p.seq, p.problem) for p in problems] == [(3, "content does not match its hash")]


def test_tampered_hash_breaks_the_link_to_the_next_event(chain, appctx):
    with appctx() as session:
        session.execute(sa.update(AUDIT).where(AUDIT.c.seq == 2).values(hash="f" * 64))
        session.commit()
        problems = audit.verify_chain()
    assert {(p.seq, p.problem) for p in problems} == {
        (2, "content does not match its hash"),
        (3, "does not link to the event before it"),
    }


def test_deleted_middle_event_is_found(chain, appctx):
    with appctx() as session:
        session.execute(sa.delete(AUDIT).where(AUDIT.c.seq == 3))
        session.commit()
        problems = audit.verify_chain()
    assert {p.seq for p in problems} == {4}
    assert {p.problem for p in problems} == {"expected event 3: rows missing",
                                             "does not link to the event before it"}


def test_deleted_first_event_is_found(chain, appctx):
    with appctx() as session:
        session.execute(sa.delete(AUDIT).where(AUDIT.c.seq == 1))
        session.commit()
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
        session.execute(sa.update(AUDIT).where(AUDIT.c.seq == 4).values(actor_label="nobody"))
        session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "event 4: content does not match its hash" in result.output
    assert "intact" not in result.output


def test_a_rolled_back_operation_leaves_no_event(ctx):
    """A unit of work that fails half-way takes its audit events with it, numbers too."""
    staff.create_staff(email="first@staff.example.com", name="First", role="support",
                       password="x" * 12, actor=None)
    with pytest.raises(Conflict):
        staff.create_staff(email="first@staff.example.com", name="Again", role="support",
                           password="x" * 12, actor=None)
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
