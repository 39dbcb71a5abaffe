"""The Confirm of every reviewed operation, submitted twice, is applied exactly once.

The operations: new subscription, inventory addition, renewal inventory, suspend and
enable, reseller disable and enable, refund, monthly invoices, credit adjustment, legacy
transfer, corporate request completion, upgrade, link and unlink.

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

from backoffice import accounts, jobs, partners, subscriptions
from backoffice.extensions import db
from backoffice.models import (
    AppliedOperation,
    AuditEvent,
    Customer,
    Organization,
    Profile,
    Subscription,
)
from tests import factories
from tests.conftest import login, make_staff, review_token_from
from tests.test_accounts import legacy

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
    #: the review is the page itself (GET), for operations with nothing to type
    review_by_get: bool = False
    #: settings the operation runs under
    config: tuple[tuple[str, object], ...] = ()


def _subscription(**kwargs) -> Subscription:
    subscription = factories.subscribe(factories.customer(**kwargs), factories.catalog(),
                                       {"DV": 10}, start_date=date(2026, 6, 1))
    db.session.commit()
    return subscription


def _subscription_add() -> tuple[str, dict]:
    product = factories.catalog()
    customer = factories.customer()
    db.session.commit()
    return (f"/admin/customer/subscribe/{customer.id}/",
            {"product_id": str(product.id), "term_months": "12", "start_date": "2026-06-01",
             "qty_DV": "10"})


def _inventory_add() -> tuple[str, dict]:
    return f"/admin/subscription/inventory/{_subscription().id}/", {"qty_OV": "3"}


def _renewal_inventory() -> tuple[str, dict]:
    return (f"/admin/subscription/renewal/{_subscription().id}/",
            {"qty_DV": "4", "qty_OV": "2", "qty_EV": "0"})


def _suspend() -> tuple[str, dict]:
    return f"/admin/subscription/suspend/{_subscription().id}/", {}


def _enable() -> tuple[str, dict]:
    subscription = _subscription()
    subscriptions.suspend_subscription(subscription, actor=None)
    db.session.commit()
    return f"/admin/subscription/enable/{subscription.id}/", {}


def _reseller_disable() -> tuple[str, dict]:
    reseller = factories.reseller()
    db.session.commit()
    return f"/admin/reseller/disable/{reseller.id}/", {"reason": "Unpaid invoices"}


def _reseller_enable() -> tuple[str, dict]:
    reseller = factories.reseller()
    partners.disable_reseller(reseller, reason="Unpaid invoices", actor=None)
    db.session.commit()
    return f"/admin/reseller/enable/{reseller.id}/", {}


def _refund() -> tuple[str, dict]:
    subscription = _subscription()
    charge = factories.charge_of(subscription)
    return (f"/admin/billing/customer/{subscription.customer_id}/refund",
            {"transaction": str(charge.id), f"count_{charge.id}_DV": "1"})


def _monthly_invoices() -> tuple[str, dict]:
    with time_machine.travel(datetime(2026, 10, 15, 9, tzinfo=UTC), tick=False):
        factories.subscribe(factories.customer(), factories.catalog(), {"DV": 1})
    db.session.commit()
    return "/admin/billing/monthly-invoices/", {"month": "2026-10"}


def _monthly_invoices_for_the_job() -> tuple[str, dict]:
    """Two customers' October: more than a chunk of one, so Confirm queues the job."""
    with time_machine.travel(datetime(2026, 10, 15, 9, tzinfo=UTC), tick=False):
        product = factories.catalog()
        for name in ("Acme Ltd", "Globex"):
            factories.subscribe(factories.customer(name), product, {"DV": 1})
    db.session.commit()
    return "/admin/billing/monthly-invoices/", {"month": "2026-10"}


def _profile(email: str = "ann@acme.example.com", name: str = "Ann Main") -> Profile:
    profile = accounts.create_profile(email=email, name=name)
    db.session.flush()
    return profile


def _credit_adjustment() -> tuple[str, dict]:
    profile = _profile()
    db.session.commit()
    return (f"/admin/profile/credit/{profile.id}/",
            {"direction": "add", "amount": "12.50", "memo": "goodwill"})


def _legacy_transfer() -> tuple[str, dict]:
    profile = _profile()
    account = legacy("ann@legacy.example.com", 4800)
    db.session.commit()
    return f"/admin/legacyaccount/transfer/{account.id}/", {"profile_id": str(profile.id)}


def _request_completion() -> tuple[str, dict]:
    _profile()
    _profile("bob@acme.example.com", "Bob Second")
    request = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="ann@acme.example.com",
        secondary_emails=["bob@acme.example.com"])
    db.session.commit()
    return f"/admin/corporaterequest/complete/{request.id}/", {}


def _upgrade() -> tuple[str, dict]:
    profile = _profile()
    db.session.commit()
    return f"/admin/profile/upgrade/{profile.id}/", {"organization_name": "ACME Corp"}


def _acme() -> tuple[Organization, Profile]:
    organization = accounts.upgrade_to_corporate(_profile(), organization_name="ACME",
                                                 actor=None)
    return organization, _profile("bob@acme.example.com", "Bob Second")


def _link() -> tuple[str, dict]:
    organization, bob = _acme()
    db.session.commit()
    return f"/admin/profile/link/{bob.id}/", {"organization_id": str(organization.id)}


def _unlink() -> tuple[str, dict]:
    organization, bob = _acme()
    accounts.link_profile(organization, bob, actor=None)
    db.session.commit()
    return f"/admin/profile/unlink/{bob.id}/", {"reason": "left the company"}


CASES = {
    "subscription.add": Case("support", _subscription_add, "subscription.create"),
    "inventory.add": Case("support", _inventory_add, "subscription.inventory_add"),
    "renewal_inventory.set": Case("support", _renewal_inventory,
                                  "subscription.renewal_inventory"),
    "subscription.suspend": Case("support", _suspend, "subscription.suspend", True),
    "subscription.enable": Case("support", _enable, "subscription.enable", True),
    "reseller.disable": Case("admin", _reseller_disable, "reseller.disable"),
    "reseller.enable": Case("admin", _reseller_enable, "reseller.enable", True),
    "refund": Case("finance", _refund, "transaction.refund"),
    "invoices.issue_monthly": Case("finance", _monthly_invoices, "invoice.issue_monthly"),
    "invoices.issue_monthly_by_the_job": Case("finance", _monthly_invoices_for_the_job,
                                              "job.run_now",
                                              config=(("INVOICE_CHUNK_SIZE", 1),)),
    "credit.adjust": Case("finance", _credit_adjustment, "credit.adjustment"),
    "legacy_credit.transfer": Case("support", _legacy_transfer, "legacy_credit.transfer"),
    "corporate_request.complete": Case("support", _request_completion,
                                       "corporate_request.complete", True),
    "profile.upgrade": Case("support", _upgrade, "organization.create"),
    "profile.link": Case("support", _link, "organization.link"),
    "profile.unlink": Case("admin", _unlink, "organization.unlink"),
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
    review = (first.get(url) if case.review_by_get
              else first.post(url, data={**fields, "step": "review"}))
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
def test_confirm_submitted_twice_in_a_row_applies_once(app, appctx, name, monkeypatch):
    case = CASES[name]
    for setting, value in case.config:
        monkeypatch.setitem(app.config, setting, value)
    url, confirm, client, _other = _reviewed(app, appctx, case)
    first = client.post(url, data=confirm)
    assert _outcome(client, first) == "done"
    second = client.post(url, data=confirm)
    assert _outcome(client, second) == "repeat"
    assert first.headers["Location"] == second.headers["Location"]
    with appctx():
        assert _applied(case.action) == (1, 1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_confirm_submitted_twice_at_once_applies_once(app, appctx, name, monkeypatch):
    case = CASES[name]
    for setting, value in case.config:
        monkeypatch.setitem(app.config, setting, value)
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


def test_a_refused_confirm_rolls_back_and_shows_the_form_ready_to_review_again(app, appctx):
    with appctx():
        make_staff("support")
        reseller = factories.reseller()
        product = factories.catalog()
        customer = factories.customer(reseller=reseller)
        db.session.commit()
        reseller_id, customer_id, product_id = reseller.id, customer.id, product.id
    client = _signed_in(app, "support")
    url = f"/admin/customer/subscribe/{customer_id}/"
    fields = {"product_id": str(product_id), "term_months": "12", "qty_DV": "1"}
    review = client.post(url, data={**fields, "step": "review"})
    token = review_token_from(review.get_data(as_text=True))
    with appctx():
        partners.disable_reseller(db.session.get(partners.Reseller, reseller_id),
                                  reason="Unpaid", actor=None)
        db.session.commit()
    refused = client.post(url, data={**fields, "step": "confirm", "review_token": token})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200 and "disabled" in html
    assert 'name="step" type="hidden" value="review"' in html
    with appctx():
        assert _applied("subscription.create") == (0, 0)
