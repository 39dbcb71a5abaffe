"""``flask seed-demo``: believable data that obeys every rule, added once."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dateutil.relativedelta import relativedelta

from backoffice.audit import verify_chain
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    CreditEntry,
    License,
    Order,
    Profile,
    Subscription,
    UTCDateTime,
)
from backoffice.models import Counter as CounterRow


def _row_counts() -> dict[str, int]:
    return {t.name: db.session.scalar(sa.select(sa.func.count()).select_from(t))
            for t in db.metadata.sorted_tables}


@pytest.fixture
def seeded(app, appctx):
    """Seed through the command once; returns the command's output."""
    result = app.test_cli_runner().invoke(args=["seed-demo", "--profiles", "30"])
    assert result.exit_code == 0, result.output
    return result.output


def test_seed_demo_adds_data_once(app, appctx, seeded):
    assert seeded.startswith("Demo data: ")
    assert "30 profiles" in seeded
    with appctx():
        before = _row_counts()
        counters = dict(db.session.execute(sa.select(CounterRow.name, CounterRow.value)).all())
    assert before["profile"] >= 30
    for table in ("order", "invoice", "license", "credit_entry", "subscription", "customer",
                  "reseller", "certificate_type", "subscription_product", "audit_event",
                  "monthly_total"):
        assert before[table] > 0, table

    again = app.test_cli_runner().invoke(args=["seed-demo", "--profiles", "30"])
    assert again.exit_code == 0, again.output
    assert "nothing added" in again.output
    with appctx():
        assert _row_counts() == before
        assert dict(db.session.execute(
            sa.select(CounterRow.name, CounterRow.value)).all()) == counters


def _credit_balances_equal_their_ledgers(session):
    sums = dict(session.execute(
        sa.select(CreditEntry.profile_id, sa.func.sum(CreditEntry.amount))
        .group_by(CreditEntry.profile_id)).all())
    profiles = session.scalars(sa.select(Profile)).all()
    assert profiles
    assert any(p.credit_balance > 0 for p in profiles)
    for profile in profiles:
        assert profile.credit_balance == sums.get(profile.id, 0), profile.email
    # each entry's running balance matches the entries before it
    for profile in profiles:
        running = 0
        for entry in sorted(profile.credit_entries, key=lambda e: e.id):
            running += entry.amount
            assert entry.balance_after == running


def _every_order_has_an_invoice_for_its_items(session):
    orders = session.scalars(sa.select(Order)).all()
    assert orders
    for order in orders:
        items_total = sum(item.amount for item in order.items)
        assert order.items, order.number
        assert order.total == items_total, order.number
        assert order.invoice is not None, order.number
        assert order.invoice.total == items_total, order.number
        assert order.invoice.currency == order.currency
        assert sum(line.amount for line in order.invoice.lines) == items_total
        for item in order.items:
            assert item.amount == item.unit_price * item.quantity
            assert len(item.licenses) == item.quantity


def _license_ca_references_are_unique(session):
    references = session.scalars(sa.select(License.ca_reference)).all()
    assert references
    duplicates = [ref for ref, n in Tally(references).items() if n > 1]
    assert duplicates == []


def _subscription_terms_end_after_their_months(session):
    subscriptions = session.scalars(sa.select(Subscription)).all()
    assert subscriptions
    for sub in subscriptions:
        assert sub.end_date == sub.start_date + relativedelta(months=sub.term_months), sub.id


def _seeded_audit_chain_verifies(session):
    assert verify_chain() == []
    seqs = session.scalars(sa.select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
    assert seqs == list(range(1, len(seqs) + 1))


def _seeded_document_numbers_have_no_gaps(session):
    numbers = sorted(int(n.rsplit("-", 1)[1]) for n in session.scalars(
        sa.select(Order.number)))
    assert numbers == list(range(1, len(numbers) + 1))


def test_seeded_data_obeys_every_rule(demo, appctx):
    with appctx() as session:
        _credit_balances_equal_their_ledgers(session)
        _every_order_has_an_invoice_for_its_items(session)
        _license_ca_references_are_unique(session)
        _subscription_terms_end_after_their_months(session)
        _seeded_audit_chain_verifies(session)
        _seeded_document_numbers_have_no_gaps(session)


@pytest.mark.clock(datetime(2026, 12, 3, 0, 30, tzinfo=UTC))
def test_seeded_data_is_never_stamped_in_the_future(app, appctx):
    """Seeded at 00:30 with the default size: no row is dated after that moment."""
    now = datetime(2026, 12, 3, 0, 30, tzinfo=UTC)
    result = app.test_cli_runner().invoke(args=["seed-demo", "--profiles", "300"])
    assert result.exit_code == 0, result.output
    with appctx():
        latest = {}
        for table in db.metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, UTCDateTime):
                    value = db.session.scalar(sa.select(sa.func.max(column)))
                    if value is not None:
                        latest[f"{table.name}.{column.name}"] = value
    assert latest, "the seeder stamps rows"
    assert max(latest.values()) > now - timedelta(days=7), "recent activity is seeded"
    late = {name: value for name, value in latest.items() if value > now}
    assert not late, late
