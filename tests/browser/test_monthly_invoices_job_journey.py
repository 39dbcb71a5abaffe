"""Finance issues a month of more invoices than one chunk in Chromium: Confirm hands it to
the job runner, the page says so and counts the invoices until the run is done."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from backoffice import jobs
from backoffice.extensions import db
from backoffice.models import Invoice, JobRun, JobStatus
from tests.test_jobs_scale import _november_customers

pytestmark = pytest.mark.browser

CUSTOMERS = 1001  # one more than a chunk (INVOICE_CHUNK_SIZE, 1,000)


@pytest.mark.clock(datetime(2026, 12, 1, 6, tzinfo=UTC), tick=True)
def test_finance_hands_a_large_month_to_the_job_runner(app, appctx, sign_in):
    with appctx():
        _november_customers(CUSTOMERS)
    page = sign_in("finance")
    menu = page.locator("#admin-navbar-collapse")
    menu.get_by_role("link", name="Finance", exact=True).click()
    menu.get_by_role("link", name="Monthly invoices").click()  # November, just over

    page.get_by_role("button", name=f"Issue {CUSTOMERS} invoices").click()
    expect(page.get_by_role("heading", name=f"Review: issue {CUSTOMERS} invoices for "
                                            "November 2026")).to_be_visible()
    expect(page.get_by_test_id("review-more")).to_contain_text(
        f"The first 100 of {CUSTOMERS} invoices; the totals cover all of them.")
    expect(page.get_by_test_id("review-total-USD")).to_contain_text("$220,220.00")
    expect(page.get_by_test_id("review-job")).to_contain_text("hands them to the job runner")
    page.get_by_role("button", name="Confirm").click()

    expect(page.locator(".alert-success")).to_contain_text(
        "The job runner is issuing the invoices for November 2026, 1,000 at a time")
    banner = page.get_by_test_id("issuing-run")
    expect(banner).to_contain_text("Queued at")
    expect(banner).to_contain_text("by ")
    expect(page.get_by_test_id("issuing-no-runner")).to_be_visible()
    expect(page.get_by_test_id("issue-form")).to_have_count(0)  # no second Issue

    runner = jobs.build_scheduler(app)  # a job runner starts; the page refreshes itself
    runner.start()
    try:
        expect(banner).to_have_count(0, timeout=30_000)
    finally:
        runner.shutdown(wait=True)
    expect(page.get_by_test_id("nothing-to-invoice")).to_be_visible()
    expect(page.get_by_test_id("issued-more")).to_contain_text(
        f"The first 100 of {CUSTOMERS} invoices")
    with appctx():
        run = db.session.scalars(select(JobRun)).one()
        assert (run.status, run.trigger, run.arguments) == (
            JobStatus.SUCCEEDED, "manual", {"month": "2026-11"})
        assert run.details == {"invoices": CUSTOMERS, "month": "2026-11-01"}
        assert db.session.scalar(select(func.count(Invoice.id))) == CUSTOMERS
