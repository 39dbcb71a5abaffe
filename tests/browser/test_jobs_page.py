"""An admin opens Jobs from the System menu, runs the renewal now and watches the run go
from queued to succeeded once a job runner is up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dateutil.relativedelta import relativedelta
from playwright.sync_api import expect
from sqlalchemy import select

from backoffice import jobs
from backoffice.clock import today
from backoffice.extensions import db
from backoffice.models import JobRun, Subscription
from tests import factories


@pytest.mark.browser
def test_admin_runs_the_renewal_from_the_jobs_page(app, appctx, sign_in):
    # A yearly subscription whose term ended three days ago: one renewal is due.
    start = today() - relativedelta(months=12) - timedelta(days=3)
    with appctx():
        factories.catalog("renewal")
        factories.subscribed_on(factories.customer(), start=start)
        sub_id = db.session.scalar(select(Subscription.id))
    page = sign_in("admin")
    menu = page.locator("#admin-navbar-collapse")
    menu.get_by_role("link", name="System", exact=True).click()
    menu.get_by_role("link", name="Jobs", exact=True).click()
    row = page.get_by_test_id("job-renewals")
    expect(row).to_contain_text("daily at 01:00 UTC")
    expect(row).to_contain_text("Never run.")

    expect(page.get_by_test_id("no-runner")).to_be_visible()  # nothing runs jobs yet
    row.get_by_role("button", name="Run renewals now").click()
    expect(page.locator(".alert-warning").first).to_contain_text("is queued")
    run = page.get_by_test_id("job-renewals").get_by_test_id("run")
    expect(run).to_contain_text("queued")
    expect(run).to_contain_text("asked by admin@staff.test")

    runner = jobs.build_scheduler(app)  # a job runner starts; the page refreshes itself
    runner.start()
    try:
        expect(run.get_by_test_id("status")).to_have_text("succeeded", timeout=20_000)
    finally:
        runner.shutdown(wait=True)
    expect(run).to_have_count(1)
    expect(run).to_contain_text("(manual")
    expect(run).to_contain_text("renewed 1")

    with appctx():
        assert db.session.get(Subscription, sub_id).end_date == start + relativedelta(
            months=24)
        assert db.session.scalar(select(JobRun.trigger)) == "manual"
