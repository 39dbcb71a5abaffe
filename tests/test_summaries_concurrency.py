"""The summaries under concurrency (PostgreSQL): runs at the same moment add each day
once, and a run beside a chunk of invoices leaves the rows equal to the transactions.
Real threads, each its own transaction."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import time_machine

from backoffice import invoicing, summaries
from backoffice.extensions import db
from tests.test_summaries import NOVEMBER, OCTOBER, live, make_history, reads

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip("row locks under concurrency are exercised on PostgreSQL")


def _together(app, *works) -> list[object]:
    """Run each of ``works`` in its own thread, started together; each commits. Returns
    each one's result, or the exception it raised."""
    barrier = threading.Barrier(len(works))
    results: list[object] = [None] * len(works)

    def run(i: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                results[i] = works[i]()
                db.session.commit()
            except Exception as exc:  # kept visible: the test fails on it
                db.session.rollback()
                results[i] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _at(*moment) -> time_machine.travel:
    return time_machine.travel(datetime(*moment, tzinfo=UTC), tick=False)


def test_runs_at_the_same_moment_add_each_day_once(app, appctx):
    with appctx():
        make_history()
        db.session.commit()
    with _at(2026, 10, 1, 2, 0), appctx():  # September: the mark is there to race on
        assert summaries.summarize_finished_days().customer_month_totals == 1
        db.session.commit()
    with _at(2026, 11, 20, 12):
        results = _together(app, *[summaries.summarize_finished_days] * 4)
        assert all(isinstance(r, summaries.Written) for r in results), results
        # Acme's and Euro's October, Globex's November; the others found the days done
        assert sorted(r.customer_month_totals for r in results) == [0, 0, 0, 3]
        with appctx():
            for month in (OCTOBER, NOVEMBER):
                assert reads(month) == live(month)


def test_a_run_beside_the_invoicing_of_its_days_leaves_the_rows_true(app, appctx):
    with appctx():
        make_history()
        db.session.commit()
    with _at(2026, 10, 31, 2, 0), appctx():  # up to October 31, 00:00
        summaries.summarize_finished_days()
        db.session.commit()
    with _at(2026, 11, 1, 2, 0):  # October 31 summed while October is issued
        results = _together(app, summaries.summarize_finished_days,
                            lambda: len(invoicing.issue_monthly_invoices(month=OCTOBER)))
        assert isinstance(results[0], summaries.Written) and results[1] == 2, results
        with appctx():
            assert invoicing.pending_summary(month=OCTOBER).invoices == 0
            assert reads(NOVEMBER) == live(NOVEMBER)
