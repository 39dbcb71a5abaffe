"""The Confirm of every reviewed operation, submitted twice, is applied exactly once.

Each case reviews an operation as a staff member would, then submits the same Confirm
twice: one after the other, and from two browsers at once (real threads, real commits;
two sign-ins of the same staff member). Exactly one effect is recorded, and both answers
land on the first result, one saying it was done and the other that it had already been
applied. These tests commit for real, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import jobs
from backoffice.extensions import db
from backoffice.models import AppliedOperation, AuditEvent, Customer, Subscription
from tests import factories
from tests.conftest import login, make_staff, review_token_from

pytestmark = [pytest.mark.commits, pytest.mark.clock(datetime(2026, 11, 22, 10, tzinfo=UTC),
                                                     tick=True)]


@dataclass(frozen=True)
class Case:
    """One reviewed operation: who does it, how to set it up, and what it records."""

    role: str
    #: in an app context: build and commit the data; return (url, form fields)
    prepare: Callable[[], tuple[str, dict]]
    #: the audit action the operation writes once per application
    action: str


def _subscription_add() -> tuple[str, dict]:
    product = factories.catalog()
    customer = factories.customer()
    db.session.commit()
    return (f"/admin/customer/subscribe/{customer.id}/",
            {"product_id": str(product.id), "term_months": "12", "start_date": "2026-06-01",
             "qty_DV": "10"})


def _inventory_add() -> tuple[str, dict]:
    product = factories.catalog()
    subscription = factories.subscribe(factories.customer(), product, {"DV": 10},
                                       start_date=date(2026, 6, 1))
    db.session.commit()
    return f"/admin/subscription/inventory/{subscription.id}/", {"qty_OV": "3"}


CASES = {
    "subscription.add": Case("support", _subscription_add, "subscription.create"),
    "inventory.add": Case("support", _inventory_add, "subscription.inventory_add"),
}


def _signed_in(app, role: str):
    client = app.test_client()
    response = login(client, f"{role}@staff.test")
    assert response.status_code == 303
    return client


def _reviewed(app, appctx, case: Case):
    """(url, fields, token) of a fresh review, and two clients signed in as its staff."""
    with appctx():
        make_staff(case.role)
        url, fields = case.prepare()
    first, second = _signed_in(app, case.role), _signed_in(app, case.role)
    review = first.post(url, data={**fields, "step": "review"})
    assert review.status_code == 200, review.data[:2000]
    confirm = {**fields, "step": "confirm",
               "review_token": review_token_from(review.get_data(as_text=True))}
    return url, confirm, first, second


def _applied(action: str) -> tuple[int, int]:
    """(audit events of the action, applied-operation rows)."""
    db.session.rollback()
    return (db.session.scalar(select(func.count(AuditEvent.id))
                              .where(AuditEvent.action == action)),
            db.session.scalar(select(func.count(AppliedOperation.id))))


def _outcome(client, response) -> str:
    """Where a Confirm landed, and what the page it landed on said."""
    assert response.status_code == 303, response.data[:2000]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    if "already applied" in page:
        return "repeat"
    return "done"


@pytest.mark.parametrize("name", sorted(CASES))
def test_confirm_submitted_twice_in_a_row_applies_once(app, appctx, name):
    case = CASES[name]
    url, confirm, client, _other = _reviewed(app, appctx, case)
    first = client.post(url, data=confirm)
    assert _outcome(client, first) == "done"
    second = client.post(url, data=confirm)
    assert _outcome(client, second) == "repeat"
    assert first.headers["Location"] == second.headers["Location"]
    with appctx():
        assert _applied(case.action) == (1, 1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_confirm_submitted_twice_at_once_applies_once(app, appctx, name):
    case = CASES[name]
    url, confirm, first_client, second_client = _reviewed(app, appctx, case)
    barrier = threading.Barrier(2)
    responses: dict[int, object] = {}

    def submit(index, client):
        barrier.wait()
        responses[index] = client.post(url, data=confirm)

    threads = [threading.Thread(target=submit, args=(i, c))
               for i, c in enumerate((first_client, second_client))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(responses) == 2, "a submission did not finish"
    locations = {responses[i].headers.get("Location") for i in (0, 1)}
    assert len(locations) == 1, locations
    outcomes = sorted(_outcome(c, responses[i])
                      for i, c in enumerate((first_client, second_client)))
    assert outcomes == ["done", "repeat"]
    with appctx():
        assert _applied(case.action) == (1, 1)


def test_a_repeat_says_when_and_by_whom(app, appctx):
    url, confirm, client, _other = _reviewed(app, appctx, CASES["subscription.add"])
    client.post(url, data=confirm)
    repeat = client.post(url, data=confirm, follow_redirects=True).get_data(as_text=True)
    assert "already applied on Nov 22, 2026" in repeat and "support@staff.test" in repeat
    with appctx():
        assert db.session.scalar(select(func.count(Subscription.id))) == 1
        assert db.session.scalar(select(func.count(Customer.id))) == 1


def test_a_review_token_is_bound_to_its_staff_member_and_inputs(app, appctx):
    url, confirm, _client, _other = _reviewed(app, appctx, CASES["subscription.add"])
    with appctx():
        make_staff("support", "colleague@staff.test")
    colleague = app.test_client()
    assert login(colleague, "colleague@staff.test").status_code == 303
    other_staff = colleague.post(url, data=confirm).get_data(as_text=True)
    assert "expired or was not made for this page" in other_staff
    same_staff = _signed_in(app, "support")
    tampered = same_staff.post(url, data={**confirm, "qty_DV": "11"}).get_data(as_text=True)
    assert "expired or was not made for this page" in tampered
    forged = same_staff.post(url, data={**confirm, "review_token": "x" + confirm["review_token"]})
    assert "expired or was not made for this page" in forged.get_data(as_text=True)
    with appctx():
        assert _applied("subscription.create") == (0, 0)


def test_applied_keys_are_forgotten_after_seven_days_by_the_job(app, appctx):
    url, confirm, client, _other = _reviewed(app, appctx, CASES["inventory.add"])
    client.post(url, data=confirm)
    with appctx():
        with time_machine.travel(datetime(2026, 11, 29, 9, 59, tzinfo=UTC), tick=False):
            assert jobs.run_job("review_keys").details == {"removed": 0}
        with time_machine.travel(datetime(2026, 11, 29, 10, 1, tzinfo=UTC), tick=False):
            assert jobs.run_job("review_keys").details == {"removed": 1}
        assert _applied("subscription.inventory_add") == (1, 0)
