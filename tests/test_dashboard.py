"""Each role's dashboard: its work queue, what went wrong, and the monthly charts."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from backoffice import accounts, dashboard, partners, renewals, summaries
from backoffice.extensions import db
from backoffice.models import (
    JobRun,
    JobStatus,
    MonthlyTotal,
    SubscriptionProduct,
    Transaction,
)
from backoffice.refunds import refund
from tests import factories
from tests.queries import counted_statements

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _charge_at(customer, moment: datetime, inventory=None) -> Transaction:
    product = db.session.scalars(select(SubscriptionProduct)).one()
    with time_machine.travel(moment, tick=False):
        subscription = factories.subscribe(customer, product, inventory or {"DV": 2})
    return factories.charge_of(subscription)


@pytest.fixture
def shop(ctx):
    factories.catalog()
    return factories.customer("Acme Ltd")


@pytest.mark.clock(NOW)
def test_refund_windows_closing_within_a_week_at_the_boundaries(shop):
    window = timedelta(days=30)
    charges = {
        "closes in 7 days exactly": _charge_at(shop, NOW - window + timedelta(days=7)),
        "closes in 7 days and a second": _charge_at(
            shop, NOW - window + timedelta(days=7, seconds=1)),
        "closes in a minute": _charge_at(shop, NOW - window + timedelta(minutes=1)),
        "closed a second ago": _charge_at(shop, NOW - window - timedelta(seconds=1)),
        "fully refunded": _charge_at(shop, NOW - timedelta(days=25), {"DV": 1}),
    }
    refund(charges["fully refunded"], {"DV": 1}, actor=None)
    db.session.flush()
    queue = dashboard.finance_queue(NOW)
    listed = [item.transaction.id for item in queue["closing"]]
    assert listed == [charges["closes in a minute"].id, charges["closes in 7 days exactly"].id]
    assert queue["closing_count"] == 2
    assert queue["closing"][0].closes_at == NOW + timedelta(minutes=1)


@pytest.mark.clock(NOW)
def test_uninvoiced_totals_and_refunds_this_month_per_currency(shop):
    euro = factories.customer("Euro GmbH", currency="EUR", country="DE")
    old = _charge_at(shop, datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    recent = _charge_at(shop, datetime(2026, 11, 2, tzinfo=UTC))
    _charge_at(euro, datetime(2026, 11, 3, tzinfo=UTC), {"DV": 1})
    with time_machine.travel(datetime(2026, 11, 5, tzinfo=UTC), tick=False):
        back = refund(recent, {"DV": 1}, actor=None)
    with time_machine.travel(datetime(2026, 11, 1, 0, 0, tzinfo=UTC), tick=False):
        october_refund = refund(old, {"DV": 1}, actor=None)
    db.session.flush()
    charges = db.session.scalars(select(Transaction).where(Transaction.kind == "charge")).all()
    queue = dashboard.finance_queue(NOW)
    usd = sum(t.amount for t in charges if t.currency == "USD") + back.amount \
        + october_refund.amount
    eur = sum(t.amount for t in charges if t.currency == "EUR")
    assert queue["uninvoiced"] == {"USD": usd, "EUR": eur}
    # the refund at 00:00 on the 1st is this month's; a charge's own month does not matter
    assert queue["refunds_this_month"] == {"USD": -(back.amount + october_refund.amount)}


@pytest.mark.clock(NOW)
def test_monthly_series_counts_each_month_from_midnight_on_the_first(shop):
    factories.customer("Euro GmbH", currency="EUR", country="DE")
    october_last_second = _charge_at(shop, datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
    november_first = _charge_at(shop, datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
    too_old = _charge_at(shop, datetime(2025, 11, 30, 23, 59, tzinfo=UTC))
    db.session.flush()
    series = dashboard.monthly_series(NOW)
    assert series.months[0] == "2025-12" and series.months[-1] == "2026-11"
    assert len(series.months) == 12
    usd = series.revenue["USD"]
    assert usd[-2] == october_last_second.amount
    assert usd[-1] == november_first.amount
    assert sum(usd) == october_last_second.amount + november_first.amount
    assert too_old.amount > 0
    assert series.refunds == {}
    chart = series.for_chart()
    assert chart["revenue"]["USD"][-1] == f"{november_first.amount / 100:.2f}"


@pytest.mark.clock(NOW)
def test_renewals_are_counted_in_the_month_they_were_charged(ctx):
    factories.catalog("renewal")
    customer = factories.customer()
    factories.subscribed_on(customer, date(2025, 11, 1), term_months=1)
    with time_machine.travel(datetime(2026, 1, 2, 1, 0, tzinfo=UTC), tick=False):
        renewals.renew_due_subscriptions()
    db.session.flush()
    series = dashboard.monthly_series(NOW)
    per_month = dict(zip(series.months, series.renewals, strict=True))
    assert per_month["2025-12"] == 1 and per_month["2026-01"] == 1
    assert sum(series.renewals) == 2


def _sections(html: str) -> set[str]:
    return set(re.findall(r'data-testid="(\w+)-queue"', html)) | (
        {"charts"} if 'data-testid="charts"' in html else set())


@pytest.mark.parametrize(("role", "expected"), [
    ("support", {"support"}),
    ("finance", {"finance", "charts"}),
    ("admin", {"admin", "support", "finance", "charts"}),
])
def test_each_role_sees_its_own_dashboard(client_as, role, expected):
    html = client_as(role).get("/admin/").get_data(as_text=True)
    assert _sections(html) == expected


def test_the_charts_load_only_local_scripts_and_read_json(client_as, appctx):
    html = client_as("finance").get("/admin/").get_data(as_text=True)
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert any(s.endswith("chart.umd.min.js") for s in scripts)
    assert all(s.startswith("/") for s in scripts), scripts
    series = json.loads(re.search(
        r'<script type="application/json" id="dashboard-series"[^>]*>(.*?)</script>', html,
        re.S).group(1))
    assert len(series["months"]) == 12 and len(series["renewals"]) == 12


def test_admin_sees_failed_and_abandoned_runs_and_disabled_resellers(client_as, appctx):
    with appctx():
        db.session.add(JobRun(job="outbox", status=JobStatus.FAILED, error="OSError: no route\n"))
        db.session.add(JobRun(job="renewals", status=JobStatus.ABANDONED,
                              error="runner pid 4242 gone"))
        reseller = factories.reseller("Gone Reseller")
        partners.disable_reseller(reseller, reason="Contract ended", actor=None)
        db.session.commit()
    html = client_as("admin").get("/admin/").get_data(as_text=True)
    runs = re.search(r'data-testid="failed-runs">(.*?)</ul>', html, re.S).group(1)
    assert "outbox</a> failed" in runs and "renewals</a> abandoned" in runs
    assert 'data-testid="disabled-count">1<' in html
    assert "Gone Reseller" in html and "Contract ended" in html


def test_support_sees_the_oldest_open_requests_first(client_as, appctx):
    with appctx():
        for i, day in enumerate((3, 1, 2)):
            with time_machine.travel(datetime(2026, 11, day, tzinfo=UTC), tick=False):
                accounts.submit_corporate_request(
                    organization_name=f"Org {i}", main_contact_email=f"m{i}@x.example",
                    secondary_emails=[])
        db.session.commit()
    html = client_as("support").get("/admin/").get_data(as_text=True)
    oldest = re.search(r'data-testid="oldest-requests">(.*?)</ul>', html, re.S).group(1)
    assert [m for m in re.findall(r"Org \d", oldest)] == ["Org 1", "Org 2", "Org 0"]
    assert 'data-testid="open-requests">3<' in html


@pytest.mark.clock(NOW)
def test_more_refund_windows_closing_than_the_cap_show_as_the_cap_plus(
        client_as, appctx, monkeypatch):
    monkeypatch.setattr(dashboard, "CLOSING_CAP", 2)
    with appctx():
        shop = _shop()
        for hours in (1, 2, 3):
            _charge_at(shop, NOW - timedelta(days=25, hours=hours))
        db.session.commit()
        assert dashboard.finance_queue(NOW)["closing_count"] == 3  # the cap and one
    monkeypatch.setattr(dashboard, "LIST_SIZE", 1)
    html = client_as("finance").get("/admin/").get_data(as_text=True)
    assert 'data-testid="closing-count">2+<' in html
    assert "The 1 closing first; 2+ in all." in html


@pytest.mark.clock(NOW)
def test_the_dashboard_costs_the_same_with_more_rows(client_as, appctx):
    client = client_as("admin")

    def statements() -> int:
        with appctx(), counted_statements() as seen:
            client.get("/admin/")
        return len([s for s in seen if s.lstrip().upper().startswith("SELECT")])

    empty = statements()
    with appctx():
        customer = _shop()
        for day in range(1, 90, 3):
            _charge_at(customer, NOW - timedelta(days=day))
        db.session.commit()
    assert statements() == empty
    with appctx():
        assert summaries.summarize_finished_days().monthly_totals > 0
        db.session.commit()
    assert statements() == empty  # the finished days read from their totals


# --------------------------------------------------------------------------- monthly totals


def _shop(catalog: str = "business"):
    factories.catalog(catalog)
    return factories.customer("Acme Ltd")


def _history(shop) -> None:
    """Charges, refunds and renewals over fourteen months, in two currencies."""
    euro = factories.customer("Euro GmbH", currency="EUR", country="DE")
    for month in range(14):
        moment = NOW - timedelta(days=31 * month + 2, hours=month)
        charge = _charge_at(shop, moment, {"DV": 2 + month % 3})
        if month % 2:
            with time_machine.travel(moment + timedelta(days=1), tick=False):
                refund(charge, {"DV": 1}, actor=None)
        if month % 3 == 0:
            _charge_at(euro, moment - timedelta(days=3), {"DV": 1})
    _charge_at(shop, datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
    _charge_at(shop, datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
    db.session.flush()


@pytest.mark.clock(NOW)
def test_series_from_the_monthly_totals_equals_the_series_summed_live(ctx):
    _history(_shop("renewal"))
    factories.subscribed_on(factories.customer("Renewing Inc"), date(2026, 5, 1),
                            term_months=1)
    with time_machine.travel(datetime(2026, 6, 2, 1, 0, tzinfo=UTC), tick=False):
        renewals.renew_due_subscriptions()
    db.session.flush()
    live = dashboard.monthly_series(NOW, summaries=False)
    assert summaries.summarize_finished_days().monthly_totals > 0
    months = db.session.scalars(select(MonthlyTotal.month).distinct()).all()
    assert max(months) == date(2026, 11, 1)  # November's finished days too
    assert dashboard.monthly_series(NOW) == live
    assert sum(live.renewals) == 1 and live.refunds["USD"] and live.revenue["EUR"]
    # and the finished days are read from the totals, not summed again
    october = db.session.get(MonthlyTotal, (date(2026, 10, 1), "USD", "charge"))
    october.amount += 100
    db.session.flush()
    changed = dashboard.monthly_series(NOW)
    assert changed.revenue["USD"][-2] == live.revenue["USD"][-2] + 100
    assert changed.revenue["USD"][-1] == live.revenue["USD"][-1]


@pytest.mark.clock(NOW)
def test_summarizing_again_writes_nothing(ctx):
    _history(_shop())
    written = summaries.summarize_finished_days().monthly_totals
    rows = db.session.scalars(select(MonthlyTotal)).all()
    assert written == len(rows) > 0
    assert summaries.summarize_finished_days().monthly_totals == 0
    assert len(db.session.scalars(select(MonthlyTotal)).all()) == len(rows)


@pytest.mark.clock(NOW)
def test_the_current_month_is_always_summed_live(ctx):
    shop = _shop()
    _history(shop)
    summaries.summarize_finished_days()
    before = dashboard.monthly_series(NOW)
    charge = _charge_at(shop, NOW - timedelta(hours=1))
    db.session.flush()
    after = dashboard.monthly_series(NOW)
    assert after.revenue["USD"][-1] == before.revenue["USD"][-1] + charge.amount
    assert after.revenue["USD"][:-1] == before.revenue["USD"][:-1]
    assert summaries.summarize_finished_days().monthly_totals == 0  # today is not finished


def test_days_not_summarized_yet_are_summed_live(ctx):
    with time_machine.travel(NOW, tick=False):
        shop = _shop()
        _history(shop)
        summaries.summarize_finished_days()  # up to November 22
    later = datetime(2027, 1, 10, tzinfo=UTC)
    december = _charge_at(shop, datetime(2026, 12, 15, tzinfo=UTC))
    db.session.flush()
    with time_machine.travel(later, tick=False):
        series = dashboard.monthly_series(later)
        assert series == dashboard.monthly_series(later, summaries=False)
        assert series.revenue["USD"][-2] == december.amount
        # the next summary takes November and December, then nothing
        assert summaries.summarize_finished_days().monthly_totals > 0
        assert max(db.session.scalars(select(MonthlyTotal.month))) == date(2026, 12, 1)
        assert dashboard.monthly_series(later) == series
        assert summaries.summarize_finished_days().monthly_totals == 0
