"""Accounts pages: corporate requests, profile actions, credit adjustments, legacy credit.

Every reviewed operation (credit adjustment, legacy transfer, completing a request,
upgrade, link, unlink) is tested the same way: review then Confirm applies once; a second
Confirm of the same review lands on the first result; a stale review applies nothing;
bad inputs are explained and write nothing; a role without the permission gets 403.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from backoffice import accounts
from backoffice.errors import InvalidInput
from backoffice.extensions import db
from backoffice.models import (
    AppliedOperation,
    AuditEvent,
    CorporateRequest,
    CreditEntry,
    LegacyAccount,
    Order,
    Organization,
    OutboxEmail,
    Profile,
    RequestStatus,
    StaffUser,
)
from tests.conftest import count_change_events, login, review_then_confirm, review_token_from
from tests.queries import ledger_sum
from tests.test_accounts import CAAS_PRICE, DV_PRICE, billing, catalog, legacy

#: bad text every text field must explain, never store
NUL = "a\x00b"
HUGE = "905970020212414042476352"


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _flashes(html: str) -> str:
    """The text of the flashed alerts on a page."""
    return " ".join(re.sub(r"<[^>]+>", " ", m) for m in re.findall(
        r'<div class="alert[^"]*"[^>]*>(.*?)</div>', html, re.S))


def _text(response) -> str:
    return response.get_data(as_text=True)


def snapshot() -> tuple:
    """Everything the accounts pages can write (call inside an app context)."""
    profiles = tuple(db.session.execute(
        select(Profile.id, Profile.credit_balance, Profile.organization_id, Profile.org_role)
        .order_by(Profile.id)).all())
    requests = tuple(db.session.execute(
        select(CorporateRequest.id, CorporateRequest.status).order_by(CorporateRequest.id)))
    legacy_accounts = tuple(db.session.execute(
        select(LegacyAccount.id, LegacyAccount.credit_balance, LegacyAccount.transferred_at)))
    return (profiles, requests, legacy_accounts, _count(CreditEntry), _count(Organization),
            _count(OutboxEmail), count_change_events(), _count(AppliedOperation))


def confirm_twice(client, url: str, data: dict):
    """Review, Confirm, then Confirm the same review again: (review, first, second)."""
    review, first = review_then_confirm(client, url, data)
    token = review_token_from(_text(review))
    second = client.post(url, data={**data, "step": "confirm", "review_token": token})
    return review, first, second


def assert_landed_on_first(client, first, second) -> None:
    assert first.status_code == 303, _text(first)[:2000]
    assert second.status_code == 303 and second.location == first.location
    assert "already applied" in _flashes(_text(client.get(second.location)))


def assert_explained(response, message: str) -> None:
    """The page explains ``message`` (on a field or in a flash) and offers no Confirm."""
    html = _text(response)
    assert response.status_code in (200, 303), html[:2000]
    if response.status_code == 303:
        return  # checked by the caller on the page it lands on
    assert message in html.replace("&#39;", "'"), html[:4000]
    assert 'name="review_token"' not in html


@pytest.fixture
def world(appctx):
    """Two individual profiles with an old order each, one legacy account, ids by name."""
    with appctx() as session:
        catalog()
        ann = accounts.create_profile(email="ann@acme.example.com", name="Ann Main")
        bob = accounts.create_profile(email="bob@acme.example.com", name="Bob Second")
        eve = accounts.create_profile(email="eve@other.example.com", name="Eve Euro",
                                      currency="EUR")
        ann_order = accounts.place_order(ann, items={"DV": 1}, billing=billing(ann))
        bob_order = accounts.place_order(bob, items={"DV": 1, "DV-CAAS": 1},
                                         billing=billing(bob))
        account = legacy("ann@legacy.example.com", 4800)
        session.commit()
        return {"ann": ann.id, "bob": bob.id, "eve": eve.id, "ann_order": ann_order.id,
                "bob_order": bob_order.id, "bob_order_number": bob_order.number,
                "legacy": account.id}


@pytest.fixture
def acme(appctx, world):
    """Ann leads ACME with Bob as secondary user; returns the organization's id."""
    with appctx() as session:
        ann, bob = session.get(Profile, world["ann"]), session.get(Profile, world["bob"])
        organization = accounts.upgrade_to_corporate(ann, organization_name="ACME",
                                                     actor=None)
        accounts.link_profile(organization, bob, actor=None)
        session.commit()
        return organization.id


def top_up(appctx, profile_id: int, amount: int) -> None:
    """A storefront top-up, committed (someone else changing the balance)."""
    with appctx() as session:
        accounts.add_credit(session.get(Profile, profile_id), amount, memo="", actor=None)
        session.commit()


# --------------------------------------------------------------------------- corporate requests


def _request(appctx, secondary=("bob@acme.example.com", "new.hire@acme.example.com"),
             main="ann@acme.example.com", name="ACME Corp") -> int:
    with appctx() as session:
        request_id = accounts.submit_corporate_request(
            organization_name=name, main_contact_email=main,
            secondary_emails=list(secondary)).id
        session.commit()
        return request_id


def test_support_enters_and_completes_a_request_with_an_unknown_email(client_as, world, appctx):
    client = client_as("support")
    response = client.post("/admin/corporaterequest/enter/", data={
        "organization_name": "ACME Corp", "main_contact_email": "ann@acme.example.com",
        "secondary_emails": "bob@acme.example.com\n\nnew.hire@acme.example.com\n"})
    assert response.status_code == 303
    with appctx():
        request_id = db.session.scalar(select(CorporateRequest.id))
    page = client.get(f"/admin/corporaterequest/details/?id={request_id}").get_data(as_text=True)
    assert "new.hire@acme.example.com" in page and "no profile" in page
    queue = client.get("/admin/corporaterequest/").get_data(as_text=True)
    assert "ACME Corp" in queue and "open requests" in queue
    url = f"/admin/corporaterequest/complete/{request_id}/"
    review = client.get(url)  # the page is the review
    html = _text(review)
    assert review.status_code == 200 and 'name="review_token"' in html
    assert "new.hire@acme.example.com" in re.search(
        r'data-testid="unknown-emails">(.*?)</li>', html, re.S).group(1)
    with appctx():
        assert _count(Organization) == 0  # the review writes nothing
    done = client.post(url, data={"step": "confirm", "review_token": review_token_from(html)})
    assert done.status_code == 303
    flashed = _flashes(client.get(done.location).get_data(as_text=True))
    assert "new.hire@acme.example.com" in flashed and "confirmation email" in flashed
    with appctx():
        req = db.session.get(CorporateRequest, request_id)
        assert req.status == RequestStatus.COMPLETED
        assert db.session.get(Profile, world["bob"]).organization_id == req.organization_id
        assert [e.to for e in db.session.scalars(select(OutboxEmail))] == [
            "ann@acme.example.com"]
        organization_id = req.organization_id
    org_page = client.get(f"/admin/organization/details/?id={organization_id}")
    text = org_page.get_data(as_text=True)
    assert world["bob_order_number"] in text and "bob@acme.example.com" in text
    # completed requests leave the open queue
    assert "ACME Corp" not in client.get("/admin/corporaterequest/").get_data(as_text=True)
    assert "ACME Corp" in client.get("/admin/corporaterequest/?all=1").get_data(as_text=True)


def test_completing_twice_with_the_same_review_lands_on_the_first_result(client_as, world,
                                                                          appctx):
    request_id = _request(appctx)
    client = client_as("support")
    url = f"/admin/corporaterequest/complete/{request_id}/"
    _, first, second = confirm_twice(client, url, {})
    assert_landed_on_first(client, first, second)
    with appctx():
        assert _count(Organization) == 1 and _count(OutboxEmail) == 1
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "corporate_request.complete")) == 1


def test_completion_review_goes_stale_when_a_listed_email_signs_up(client_as, world, appctx):
    request_id = _request(appctx)
    client = client_as("support")
    url = f"/admin/corporaterequest/complete/{request_id}/"
    token = review_token_from(_text(client.get(url)))
    with appctx() as session:
        accounts.create_profile(email="new.hire@acme.example.com", name="New Hire")
        session.commit()
        before = snapshot()
    stale = client.post(url, data={"step": "confirm", "review_token": token})
    html = _text(stale)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "new.hire@acme.example.com" in re.search(
        r'data-testid="linked-emails">(.*?)</li>', html, re.S).group(1)
    with appctx():
        assert snapshot() == before
        assert db.session.get(CorporateRequest, request_id).status == RequestStatus.OPEN
    # The new review confirms.
    done = client.post(url, data={"step": "confirm", "review_token": review_token_from(html)})
    assert done.status_code == 303
    with appctx():
        assert db.session.get(CorporateRequest, request_id).status == RequestStatus.COMPLETED


def test_a_request_completed_by_someone_else_meanwhile_is_not_completed_again(
        client_as, staff, world, appctx):
    request_id = _request(appctx)
    client = client_as("support")
    url = f"/admin/corporaterequest/complete/{request_id}/"
    token = review_token_from(_text(client.get(url)))
    colleague = staff("support", "colleague@staff.test")
    with appctx() as session:
        accounts.complete_corporate_request(session.get(CorporateRequest, request_id),
                                            actor=session.get(StaffUser, colleague))
        session.commit()
        before = snapshot()
    late = client.post(url, data={"step": "confirm", "review_token": token})
    assert late.status_code == 303
    assert f"Request #{request_id} is already completed" in _flashes(
        _text(client.get(late.location)))
    with appctx():
        assert snapshot() == before and _count(OutboxEmail) == 1


@pytest.mark.parametrize(("secondary", "main", "message"), [
    ((), "nobody@acme.example.com", "ask the customer to sign up first"),
    (("eve@other.example.com",), "ann@acme.example.com",
     "eve@other.example.com already belongs to Elsewhere"),
])
def test_the_completion_review_never_offers_a_confirm_that_can_only_fail(
        client_as, world, appctx, secondary, main, message):
    with appctx() as session:
        accounts.upgrade_to_corporate(session.get(Profile, world["eve"]),
                                      organization_name="Elsewhere", actor=None)
        session.commit()
    request_id = _request(appctx, secondary=secondary, main=main)
    client = client_as("support")
    with appctx():
        before = snapshot()
    response = client.get(f"/admin/corporaterequest/complete/{request_id}/")
    assert response.status_code == 303
    page = _text(client.get(response.location))
    assert message in _flashes(page) and 'name="review_token"' not in page
    with appctx():
        assert snapshot() == before


@pytest.mark.parametrize("data", [
    {"step": "confirm", "review_token": "forged"},
    {"step": "confirm", "review_token": NUL},
    {"step": "sideways"},
    {"step": "confirm"},
])
def test_a_crafted_completion_applies_nothing(client_as, world, appctx, data):
    request_id = _request(appctx)
    client = client_as("support")
    with appctx():
        before = snapshot()
    response = client.post(f"/admin/corporaterequest/complete/{request_id}/", data=data,
                           follow_redirects=True)
    assert response.status_code == 200
    assert "expired" in _flashes(_text(response))
    with appctx():
        assert snapshot() == before


def test_reject_needs_a_reason(client_as, appctx):
    request_id = _request(appctx, secondary=())
    client = client_as("support")
    page = client.get(f"/admin/corporaterequest/details/?id={request_id}")
    assert 'data-testid="reject-card"' in _text(page)
    for reason, message in (("  ", "needs a reason"), ("", "needs a reason"),
                            (NUL, "control characters"),
                            ("x" * 501, "Field cannot be longer than 500 characters.")):
        response = client.post(f"/admin/corporaterequest/reject/{request_id}/",
                               data={"reason": reason})
        assert_explained(response, message)
    response = client.post(f"/admin/corporaterequest/reject/{request_id}/", data={})
    assert_explained(response, "needs a reason")
    with appctx():
        assert db.session.get(CorporateRequest, request_id).status == RequestStatus.OPEN
        assert count_change_events() == 1  # the submission only
    response = client.post(f"/admin/corporaterequest/reject/{request_id}/",
                           data={"reason": "Not a company"})
    assert response.status_code == 303
    with appctx():
        req = db.session.get(CorporateRequest, request_id)
        assert req.status == RequestStatus.REJECTED and "Not a company" in req.outcome
    again = client.post(f"/admin/corporaterequest/reject/{request_id}/",
                        data={"reason": "again"})
    assert "already rejected" in _flashes(_text(again))


REQUEST_FORM = {"organization_name": "ACME", "main_contact_email": "ann@acme.example.com",
                "secondary_emails": "bob@acme.example.com"}


@pytest.mark.parametrize(("change", "message"), [
    ({"secondary_emails": "bob@acme.example.com\nnot an email"},
     "line 2, 'not an email', is not a valid email address"),
    ({"secondary_emails": "\n".join(f"u{i}@acme.example.com" for i in range(101))},
     "List at most 100 secondary emails; there are 101."),
    ({"secondary_emails": "x" * 300 + "@acme.example.com"},
     "line 1 is longer than an email address can be"),
    ({"secondary_emails": NUL}, "control characters"),
    ({"organization_name": "A" * 201}, "Field cannot be longer than 200 characters."),
    ({"organization_name": NUL}, "control characters"),
    ({"organization_name": "   "}, "The request needs an organization name."),
    ({"organization_name": None}, "The request needs an organization name."),
    ({"main_contact_email": "ann"}, "Enter a valid email address"),
    ({"main_contact_email": "a" * 250 + "@x.example"},
     "Field cannot be longer than 254 characters."),
    ({"main_contact_email": None}, "The request needs the main contact"),
    ({"main_contact_email": "ann\x00@acme.example.com"}, "control characters"),
])
def test_entering_a_bad_request_is_explained_and_writes_nothing(client_as, appctx, change,
                                                                message):
    client = client_as("support")
    data = {k: v for k, v in {**REQUEST_FORM, **change}.items() if v is not None}
    response = client.post("/admin/corporaterequest/enter/", data=data)
    assert_explained(response, message)
    with appctx():
        assert _count(CorporateRequest) == 0 and count_change_events() == 0


def test_a_request_with_the_most_secondary_emails_is_entered(client_as, appctx):
    client = client_as("support")
    emails = "\n".join(f"u{i}@acme.example.com" for i in range(100))
    response = client.post("/admin/corporaterequest/enter/",
                           data={**REQUEST_FORM, "secondary_emails": emails})
    assert response.status_code == 303
    with appctx():
        assert len(db.session.scalar(select(CorporateRequest)).secondary_emails) == 100


# --------------------------------------------------------------------------- profile page


def test_profile_page_shows_own_credit_and_the_orders_it_sees(client_as, world, appctx, acme):
    with appctx() as session:
        accounts.add_credit(session.get(Profile, world["ann"]), 98765, memo="", actor=None)
        session.commit()
    client = client_as("support")
    bob_page = client.get(f"/admin/profile/details/?id={world['bob']}").get_data(as_text=True)
    balance = re.search(r'data-testid="credit-balance">(.*?)</p>', bob_page, re.S).group(1)
    assert "$0.00" in balance and "987.65" not in bob_page  # Ann's credit is hers alone
    with appctx():
        numbers = [db.session.get(Order, world[k]).number for k in ("ann_order", "bob_order")]
    assert all(number in bob_page for number in numbers)
    ann_page = client.get(f"/admin/profile/details/?id={world['ann']}").get_data(as_text=True)
    assert "$987.65" in ann_page


# --------------------------------------------------------------------------- upgrade


def test_support_upgrades_through_review_and_confirm(client_as, world, appctx):
    client = client_as("support")
    page = _text(client.get(f"/admin/profile/details/?id={world['ann']}"))
    assert 'data-testid="upgrade-card"' in page and 'maxlength="200"' in page
    url = f"/admin/profile/upgrade/{world['ann']}/"
    review, first, second = confirm_twice(client, url, {"organization_name": " ACME Corp "})
    html = _text(review)
    assert "A new organization <b>ACME Corp</b> is created" in html
    assert "Its 1 order and its credit stay exactly as they are" in html
    assert_landed_on_first(client, first, second)
    assert first.location.endswith(f"/admin/profile/details/?id={world['ann']}")
    with appctx():
        organization = db.session.scalar(select(Organization))
        assert organization.name == "ACME Corp" and _count(Organization) == 1
        assert organization.main_contact.id == world["ann"]


def test_the_upgrade_review_alone_writes_nothing(client_as, world, appctx):
    client = client_as("support")
    with appctx():
        before = snapshot()
    review = client.post(f"/admin/profile/upgrade/{world['ann']}/",
                         data={"organization_name": "ACME Corp", "step": "review"})
    assert 'name="review_token"' in _text(review)
    with appctx():
        assert snapshot() == before


def test_an_upgrade_review_goes_stale_when_the_name_is_taken_meanwhile(client_as, world,
                                                                       appctx):
    client = client_as("support")
    url = f"/admin/profile/upgrade/{world['ann']}/"
    data = {"organization_name": "ACME Corp"}
    review = client.post(url, data={**data, "step": "review"})
    assert 'data-testid="same-name"' not in _text(review)
    with appctx() as session:
        accounts.upgrade_to_corporate(session.get(Profile, world["bob"]),
                                      organization_name="acme corp", actor=None)
        session.commit()
        before = snapshot()
    stale = client.post(url, data={**data, "step": "confirm",
                                   "review_token": review_token_from(_text(review))})
    html = _text(stale)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert 'data-testid="same-name"' in html and "Check this is not a duplicate" in html
    with appctx():
        assert snapshot() == before


def test_an_upgrade_of_a_profile_linked_meanwhile_is_refused(client_as, world, appctx):
    client = client_as("support")
    url = f"/admin/profile/upgrade/{world['bob']}/"
    data = {"organization_name": "Bob Ltd"}
    review = client.post(url, data={**data, "step": "review"})
    with appctx() as session:
        organization = accounts.upgrade_to_corporate(session.get(Profile, world["ann"]),
                                                     organization_name="ACME", actor=None)
        accounts.link_profile(organization, session.get(Profile, world["bob"]), actor=None)
        session.commit()
        before = snapshot()
    late = client.post(url, data={**data, "step": "confirm",
                                  "review_token": review_token_from(_text(review))})
    assert late.status_code == 200
    assert "bob@acme.example.com already belongs to ACME" in _flashes(_text(late))
    with appctx():
        assert snapshot() == before


@pytest.mark.parametrize(("name", "message"), [
    (NUL, "control characters"),
    ("A" * 201, "Field cannot be longer than 200 characters."),
    ("   ", "Give the organization a name."),
    (None, "Give the organization a name."),
])
def test_bad_upgrade_input_is_explained(client_as, world, appctx, name, message):
    client = client_as("support")
    with appctx():
        before = snapshot()
    data = {"step": "review"} if name is None else {"step": "review", "organization_name": name}
    assert_explained(client.post(f"/admin/profile/upgrade/{world['ann']}/", data=data), message)
    with appctx():
        assert snapshot() == before


def test_a_long_organization_name_is_refused_by_the_domain_too(client_as, world, appctx):
    with appctx() as session, pytest.raises(InvalidInput, match="at most 200"):
        accounts.upgrade_to_corporate(session.get(Profile, world["ann"]),
                                      organization_name="A" * 201, actor=None)


# --------------------------------------------------------------------------- link


def test_support_links_through_search_review_and_confirm(client_as, world, appctx):
    with appctx() as session:
        organization_id = accounts.upgrade_to_corporate(
            session.get(Profile, world["ann"]), organization_name="ACME Corp", actor=None).id
        session.commit()
    client = client_as("support")
    search = client.get(f"/admin/profile/link/{world['bob']}/?q=acme")
    assert "Review link to ACME Corp" in _text(search)
    url = f"/admin/profile/link/{world['bob']}/?q=acme"
    review, first, second = confirm_twice(client, url, {"organization_id": organization_id})
    html = _text(review)
    assert "ACME Corp goes from 1 to 2 users" in html
    assert "sees 2 orders of the organization instead of its own 1" in html
    assert_landed_on_first(client, first, second)
    with appctx():
        assert db.session.get(Profile, world["bob"]).organization_id == organization_id
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "organization.link")) == 1
    # A new review of the same link is refused with the domain's sentence.
    again = client.post(url, data={"organization_id": organization_id, "step": "review"})
    assert "already linked" in _flashes(_text(again))


def test_a_link_review_goes_stale_when_the_organization_changes(client_as, world, appctx):
    with appctx() as session:
        organization_id = accounts.upgrade_to_corporate(
            session.get(Profile, world["ann"]), organization_name="ACME", actor=None).id
        cid = accounts.create_profile(email="cid@acme.example.com", name="Cid").id
        session.commit()
    client = client_as("support")
    url = f"/admin/profile/link/{world['bob']}/"
    data = {"organization_id": organization_id}
    review = client.post(url, data={**data, "step": "review"})
    with appctx() as session:
        accounts.link_profile(session.get(Organization, organization_id),
                              session.get(Profile, cid), actor=None)
        session.commit()
        before = snapshot()
    stale = client.post(url, data={**data, "step": "confirm",
                                   "review_token": review_token_from(_text(review))})
    html = _text(stale)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "ACME goes from 2 to 3 users" in html
    with appctx():
        assert snapshot() == before


def test_a_profile_linked_elsewhere_meanwhile_is_not_linked(client_as, world, appctx):
    with appctx() as session:
        acme_id = accounts.upgrade_to_corporate(
            session.get(Profile, world["ann"]), organization_name="ACME", actor=None).id
        other = accounts.create_profile(email="oz@other.example.com", name="Oz")
        other_id = accounts.upgrade_to_corporate(other, organization_name="Other",
                                                 actor=None).id
        session.commit()
    client = client_as("support")
    url = f"/admin/profile/link/{world['bob']}/"
    review = client.post(url, data={"organization_id": acme_id, "step": "review"})
    with appctx() as session:
        accounts.link_profile(session.get(Organization, other_id),
                              session.get(Profile, world["bob"]), actor=None)
        session.commit()
        before = snapshot()
    late = client.post(url, data={"organization_id": acme_id, "step": "confirm",
                                  "review_token": review_token_from(_text(review))})
    assert late.status_code == 200
    assert "already belongs to Other; an admin must unlink it first" in _flashes(_text(late))
    with appctx():
        assert snapshot() == before


@pytest.mark.parametrize("organization_id", [
    NUL, HUGE, "²", "①", "-1", "0", "", None, "99999",
])
def test_a_bad_organization_choice_is_explained(client_as, world, appctx, organization_id):
    client = client_as("support")
    with appctx():
        before = snapshot()
    data = {"step": "review"}
    if organization_id is not None:
        data["organization_id"] = organization_id
    response = client.post(f"/admin/profile/link/{world['bob']}/", data=data)
    message = ("no longer exists" if organization_id == "99999"
               else "Choose an organization from the search results.")
    assert_explained(response, message)
    with appctx():
        assert snapshot() == before


# --------------------------------------------------------------------------- unlink


def test_admin_unlinks_through_review_and_confirm(client_as, world, appctx, acme):
    admin = client_as("admin")
    url = f"/admin/profile/unlink/{world['bob']}/"
    review, first, second = confirm_twice(admin, url, {"reason": "left the company"})
    html = _text(review)
    assert "is no longer a user of <b>ACME</b>" in html and "left the company" in html
    assert "It sees its own 1 order again instead of the organization" in html
    assert_landed_on_first(admin, first, second)
    with appctx():
        assert db.session.get(Profile, world["bob"]).organization_id is None
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "organization.unlink"))
        assert event.details["reason"] == "left the company"


def test_an_unlink_review_goes_stale_when_the_profile_moved(client_as, world, appctx, acme):
    admin = client_as("admin")
    url = f"/admin/profile/unlink/{world['bob']}/"
    data = {"reason": "left"}
    review = admin.post(url, data={**data, "step": "review"})
    with appctx() as session:
        bob = session.get(Profile, world["bob"])
        accounts.unlink_profile(bob, reason="moved", actor=None)
        other = accounts.upgrade_to_corporate(
            accounts.create_profile(email="oz@other.example.com", name="Oz"),
            organization_name="Other", actor=None)
        accounts.link_profile(other, bob, actor=None)
        session.commit()
        before = snapshot()
    stale = admin.post(url, data={**data, "step": "confirm",
                                  "review_token": review_token_from(_text(review))})
    html = _text(stale)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "is no longer a user of <b>Other</b>" in html
    with appctx():
        assert snapshot() == before


def test_an_unlink_of_a_profile_unlinked_meanwhile_is_refused(client_as, world, appctx, acme):
    admin = client_as("admin")
    url = f"/admin/profile/unlink/{world['bob']}/"
    review = admin.post(url, data={"reason": "left", "step": "review"})
    with appctx() as session:
        accounts.unlink_profile(session.get(Profile, world["bob"]), reason="x", actor=None)
        session.commit()
        before = snapshot()
    late = admin.post(url, data={"reason": "left", "step": "confirm",
                                 "review_token": review_token_from(_text(review))})
    assert "is not linked to any organization" in _flashes(_text(late))
    with appctx():
        assert snapshot() == before


@pytest.mark.parametrize(("reason", "message"), [
    ("", "Unlinking needs a reason."),
    ("  ", "Unlinking needs a reason."),
    (None, "Unlinking needs a reason."),
    (NUL, "control characters"),
    ("x" * 501, "Field cannot be longer than 500 characters."),
])
def test_bad_unlink_input_is_explained(client_as, world, appctx, acme, reason, message):
    admin = client_as("admin")
    with appctx():
        before = snapshot()
    data = {"step": "review"} if reason is None else {"step": "review", "reason": reason}
    assert_explained(admin.post(f"/admin/profile/unlink/{world['bob']}/", data=data), message)
    with appctx():
        assert snapshot() == before


def test_the_main_contact_cannot_be_unlinked(client_as, world, appctx, acme):
    admin = client_as("admin")
    response = admin.post(f"/admin/profile/unlink/{world['ann']}/",
                          data={"reason": "x", "step": "review"})
    assert "the main contact cannot be unlinked" in _flashes(_text(response))


# --------------------------------------------------------------------------- credit adjustments


CREDIT = {"direction": "add", "amount": "12.50", "memo": "goodwill"}


def test_finance_adjusts_credit_in_major_units_through_review(client_as, world, appctx):
    client = client_as("finance")
    url = f"/admin/profile/credit/{world['ann']}/"
    review = client.post(url, data={**CREDIT, "step": "review"})
    assert review.status_code == 200 and "$12.50" in _text(review)
    with appctx():
        assert _count(CreditEntry) == 0  # the review writes nothing
    review, first, second = confirm_twice(client, url, CREDIT)
    assert_landed_on_first(client, first, second)
    with appctx():
        ann = db.session.get(Profile, world["ann"])
        assert ann.credit_balance == 1250 == ledger_sum(ann)
        assert _count(CreditEntry) == 1
    too_much = client.post(url, data={"direction": "remove", "amount": "12.51", "memo": "x",
                                      "step": "review"})
    assert "below zero" in _flashes(_text(too_much))
    bad = client.post(url, data={"direction": "add", "amount": "1.005", "memo": "x"})
    assert_explained(bad, "USD amounts have at most 2 decimals.")
    review, done = review_then_confirm(client, url, {"direction": "remove",
                                                     "amount": "2.50",
                                                     "memo": "correction"})
    assert done.status_code == 303
    with appctx():
        ann = db.session.get(Profile, world["ann"])
        assert ann.credit_balance == 1000 == ledger_sum(ann)
        assert _count(CreditEntry) == 2


def test_a_credit_review_goes_stale_when_the_balance_changes(client_as, world, appctx):
    client = client_as("finance")
    url = f"/admin/profile/credit/{world['ann']}/"
    data = {**CREDIT, "amount": "10.00"}
    review = client.post(url, data={**data, "step": "review"})
    top_up(appctx, world["ann"], 500)
    with appctx():
        before = snapshot()
    stale = client.post(url, data={**data, "step": "confirm",
                                   "review_token": review_token_from(_text(review))})
    html = _text(stale)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert re.search(r'data-testid="balance-before">\$5.00<', html)
    assert re.search(r'data-testid="balance-after">\$15.00<', html)
    with appctx():
        assert snapshot() == before
    done = client.post(url, data={**data, "step": "confirm",
                                  "review_token": review_token_from(html)})
    assert done.status_code == 303
    with appctx():
        assert db.session.get(Profile, world["ann"]).credit_balance == 1500


def test_a_removal_that_a_payment_made_impossible_meanwhile_is_refused(client_as, world,
                                                                      appctx):
    top_up(appctx, world["ann"], DV_PRICE)
    client = client_as("finance")
    url = f"/admin/profile/credit/{world['ann']}/"
    data = {"direction": "remove", "amount": "50.00", "memo": "reversal"}
    review = client.post(url, data={**data, "step": "review"})
    assert "$0.00" in _text(review)
    with appctx() as session:
        accounts.pay_order(session.get(Order, world["ann_order"]),
                           payer=session.get(Profile, world["ann"]), method="prepaid_credit")
        session.commit()
        before = snapshot()
    late = client.post(url, data={**data, "step": "confirm",
                                  "review_token": review_token_from(_text(review))})
    assert late.status_code == 200
    assert "has only $0.00 of credit; taking $50.00 would leave it below zero" in _flashes(
        _text(late))
    with appctx():
        assert snapshot() == before


@pytest.mark.parametrize(("change", "message"), [
    ({"amount": NUL}, "control characters"),
    ({"amount": HUGE}, "Enter an amount from $0.01 to $100,000.00."),
    ({"amount": "100000.01"}, "Enter an amount from $0.01 to $100,000.00."),
    ({"amount": "0"}, "Enter an amount from $0.01 to $100,000.00."),
    ({"amount": "0.00"}, "Enter an amount from $0.01 to $100,000.00."),
    ({"amount": "²"}, "Enter the amount in digits"),
    ({"amount": "①"}, "Enter the amount in digits"),
    ({"amount": "١٢"}, "Enter the amount in digits"),
    ({"amount": "1e30"}, "Enter the amount in digits"),
    ({"amount": "NaN"}, "Enter the amount in digits"),
    ({"amount": "∞"}, "Enter the amount in digits"),
    ({"amount": "12,5"}, "Enter the amount in digits"),
    ({"amount": "1" * 5000}, "Enter the amount in digits"),
    ({"amount": "-5"}, "Enter the amount without a sign."),
    ({"amount": "+5"}, "Enter the amount without a sign."),
    ({"amount": "1.005"}, "USD amounts have at most 2 decimals."),
    ({"amount": "1.00000000000000000000000000001"}, "USD amounts have at most 2 decimals."),
    ({"amount": ""}, "Enter an amount, e.g. 12.50."),
    ({"amount": None}, "Enter an amount, e.g. 12.50."),
    ({"memo": ""}, "A credit adjustment needs a memo saying why."),
    ({"memo": None}, "A credit adjustment needs a memo saying why."),
    ({"memo": NUL}, "control characters"),
    ({"memo": "x" * 501}, "Field cannot be longer than 500 characters."),
    ({"direction": "sideways"}, "Choose whether to add or remove credit."),
    ({"direction": None}, "Choose whether to add or remove credit."),
])
def test_bad_credit_input_is_explained_and_writes_nothing(client_as, world, appctx, change,
                                                          message):
    client = client_as("finance")
    with appctx():
        before = snapshot()
    data = {k: v for k, v in {**CREDIT, **change, "step": "review"}.items() if v is not None}
    assert_explained(client.post(f"/admin/profile/credit/{world['ann']}/", data=data), message)
    with appctx():
        assert snapshot() == before


def test_the_largest_adjustment_is_allowed(client_as, world, appctx):
    client = client_as("finance")
    url = f"/admin/profile/credit/{world['ann']}/"
    _, done = review_then_confirm(client, url, {**CREDIT, "amount": "100,000.00"})
    assert done.status_code == 303
    with appctx():
        assert db.session.get(Profile, world["ann"]).credit_balance == \
            accounts.MAX_CREDIT_ADJUSTMENT


def test_amounts_are_typed_in_the_display_locale(app, client_as, world, appctx, monkeypatch):
    monkeypatch.setitem(app.config, "DISPLAY_LOCALE", "de_DE")
    client = client_as("finance")
    url = f"/admin/profile/credit/{world['ann']}/"
    refused = client.post(url, data={**CREDIT, "amount": "1,234.50", "step": "review"})
    assert_explained(refused, "Enter the amount in digits, like 1.234,50.")
    review, done = review_then_confirm(client, url, {**CREDIT, "amount": "1.234,50"})
    assert "1.234,50" in _text(review)
    assert done.status_code == 303
    with appctx():
        assert db.session.get(Profile, world["ann"]).credit_balance == 123450


def test_a_zero_decimal_currency_takes_whole_amounts(client_as, appctx):
    with appctx() as session:
        yen = accounts.create_profile(email="ken@example.jp", name="Ken", currency="JPY").id
        session.commit()
    client = client_as("finance")
    url = f"/admin/profile/credit/{yen}/"
    assert_explained(client.post(url, data={**CREDIT, "amount": "12.5", "step": "review"}),
                     "JPY amounts have at most 0 decimals.")
    _, done = review_then_confirm(client, url, {**CREDIT, "amount": "1,250"})
    assert done.status_code == 303
    with appctx() as session:
        assert session.get(Profile, yen).credit_balance == 1250


# --------------------------------------------------------------------------- legacy credit


def test_legacy_transfer_review_confirm_then_refusal(client_as, world, appctx):
    client = client_as("support")
    url = f"/admin/legacyaccount/transfer/{world['legacy']}/"
    search = client.get(f"{url}?q=ann@acme")
    assert "Review transfer to ann@acme.example.com" in _text(search)
    review, first, second = confirm_twice(client, f"{url}?q=ann@acme",
                                          {"profile_id": world["ann"]})
    text = _text(review)
    assert "$48.00" in text and "L-100001" in text
    with appctx():
        assert _count(CreditEntry) == 1  # the second Confirm changed nothing
    assert_landed_on_first(client, first, second)
    assert first.location.endswith(f"/admin/legacyaccount/details/?id={world['legacy']}")
    # A new review, to the same profile or another, is refused with the domain's sentence.
    for target in ("ann", "bob"):
        again = client.post(url, data={"profile_id": world[target], "step": "review"},
                            follow_redirects=True)
        assert "already moved to ann@acme.example.com" in _flashes(_text(again))
        assert "it moves only once" in _flashes(_text(again))
    with appctx():
        assert db.session.get(Profile, world["ann"]).credit_balance == 4800
        assert db.session.get(Profile, world["bob"]).credit_balance == 0
        assert db.session.get(LegacyAccount, world["legacy"]).credit_balance == 0
        assert _count(CreditEntry) == 1
    listing = client.get("/admin/legacyaccount/").get_data(as_text=True)
    assert "moved $48.00 to" in listing
    # The transfer page of a moved account says so.
    moved = client.get(url, follow_redirects=True)
    assert "it moves only once" in _flashes(_text(moved))


def test_a_colleagues_older_review_cannot_move_the_balance_again(client_as, staff, world,
                                                                 appctx, app):
    client = client_as("support")
    url = f"/admin/legacyaccount/transfer/{world['legacy']}/"
    colleague = app.test_client()
    staff("support", "colleague@staff.test")
    login(colleague, "colleague@staff.test")
    theirs = colleague.post(url, data={"profile_id": world["bob"], "step": "review"})
    _, done = review_then_confirm(client, url, {"profile_id": world["ann"]})
    assert done.status_code == 303
    with appctx():
        before = snapshot()
    late = colleague.post(url, data={"profile_id": world["bob"], "step": "confirm",
                                     "review_token": review_token_from(_text(theirs))},
                          follow_redirects=True)
    assert "was already moved to ann@acme.example.com" in _flashes(_text(late))
    with appctx():
        assert snapshot() == before


def test_a_legacy_review_goes_stale_when_the_profile_balance_changes(client_as, world, appctx):
    client = client_as("support")
    url = f"/admin/legacyaccount/transfer/{world['legacy']}/"
    review = client.post(url, data={"profile_id": world["ann"], "step": "review"})
    top_up(appctx, world["ann"], 100)
    with appctx():
        before = snapshot()
    stale = client.post(url, data={"profile_id": world["ann"], "step": "confirm",
                                   "review_token": review_token_from(_text(review))})
    html = _text(stale)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "$49.00" in html
    with appctx():
        assert snapshot() == before


def test_a_review_token_moves_only_the_reviewed_profile(client_as, world, appctx):
    client = client_as("support")
    url = f"/admin/legacyaccount/transfer/{world['legacy']}/"
    review = client.post(url, data={"profile_id": world["ann"], "step": "review"})
    with appctx():
        before = snapshot()
    forged = client.post(url, data={"profile_id": world["bob"], "step": "confirm",
                                    "review_token": review_token_from(_text(review))})
    html = _text(forged)
    assert "was not made for this page" in html and "bob@acme.example.com" in html
    with appctx():
        assert snapshot() == before


def test_legacy_transfer_to_another_currency_is_refused_on_review(client_as, world, appctx):
    client = client_as("support")
    search = client.get(f"/admin/legacyaccount/transfer/{world['legacy']}/?q=eve@")
    assert "other currency" in _text(search)
    response = client.post(f"/admin/legacyaccount/transfer/{world['legacy']}/",
                           data={"profile_id": world["eve"], "step": "review"})
    assert "holds USD but eve@other.example.com uses EUR" in _flashes(_text(response))
    assert 'name="review_token"' not in _text(response)
    with appctx():
        assert db.session.get(LegacyAccount, world["legacy"]).credit_balance == 4800
        assert _count(CreditEntry) == 0


@pytest.mark.parametrize("profile_id", [NUL, HUGE, "²", "①", "-1", "0", "", None, "99999"])
def test_a_bad_profile_choice_is_explained(client_as, world, appctx, profile_id):
    client = client_as("support")
    with appctx():
        before = snapshot()
    data = {"step": "review"}
    if profile_id is not None:
        data["profile_id"] = profile_id
    response = client.post(f"/admin/legacyaccount/transfer/{world['legacy']}/", data=data)
    message = ("no longer exists" if profile_id == "99999"
               else "Choose the profile that receives the credit")
    assert_explained(response, message)
    with appctx():
        assert snapshot() == before


# --------------------------------------------------------------------------- query strings


@pytest.mark.parametrize("path", [
    "/admin/profile/link/{bob}/?q=a%00b",
    "/admin/profile/link/{bob}/?q=" + "a" * 300,
    "/admin/profile/link/{bob}/?q=" + "a" * 5000,
    "/admin/legacyaccount/transfer/{legacy}/?q=a%00b",
    "/admin/legacyaccount/transfer/{legacy}/?q=" + "a" * 300,
    "/admin/profile/?search=a%00b",
    "/admin/profile/?search=" + "a" * 5000,
    "/admin/profile/?flt0_0=a%00b",
    "/admin/profile/?page=99999999999999999999",
    "/admin/profile/?page=%C2%B2",
    "/admin/profile/details/?id=a%00b",
    "/admin/profile/details/?id=" + HUGE,
    "/admin/profile/details/?id=%C2%B2",
    "/admin/organization/details/?id=1%00",
    "/admin/corporaterequest/?search=a%00b",
    "/admin/corporaterequest/?all=1%00",
    "/admin/legacyaccount/?search=a%00b",
    "/admin/order/?a%00b=1",
    "/admin/creditentry/?search=a%00b",
    "/admin/license/details/?id=-1",
])
def test_query_strings_never_fail(client_as, world, path):
    client = client_as("support")
    response = client.get(path.format(**world), follow_redirects=True)
    assert response.status_code == 200
    assert _flashes(_text(response))


def test_a_search_on_an_operation_page_still_works_after_a_refused_one(client_as, world):
    client = client_as("support")
    refused = client.get(f"/admin/legacyaccount/transfer/{world['legacy']}/?q=" + "a" * 300)
    assert "Search for at most 254 characters." in _flashes(_text(refused))
    found = client.get(f"/admin/legacyaccount/transfer/{world['legacy']}/?q=ann@acme")
    assert "Review transfer to ann@acme.example.com" in _text(found)


# --------------------------------------------------------------------------- orders


def test_order_page_links_licences_to_tracking_and_shows_caas_details(app, client_as, world,
                                                                     appctx):
    with appctx():
        order = db.session.get(Order, world["bob_order"])
        licences = [lic for item in order.items for lic in item.licenses]
        caas = next(lic for lic in licences if lic.kind.value == "caas")
        caas_ref, acme, eab = caas.ca_reference, caas.acme_directory_url, caas.eab_key_id
        refs = [lic.ca_reference for lic in licences]
        invoice_number = order.invoice.number
    client = client_as("finance")
    text = client.get(f"/admin/order/details/?id={world['bob_order']}").get_data(as_text=True)
    template = app.config["TRACKING_URL_TEMPLATE"]
    for ref in refs:
        assert f'href="{template.format(ref=ref)}"' in text
    assert acme in text and eab in text and invoice_number in text
    assert "bob@acme.example.com" in text
    assert caas_ref in text
    assert f"${(DV_PRICE + CAAS_PRICE) // 100}.00" in text  # one DV and one CaaS, a year each
    assert "hmac" not in text.lower()


# --------------------------------------------------------------------------- permissions


FORBIDDEN = [
    ("support", "/admin/profile/credit/{ann}/", {**CREDIT, "step": "review"}),
    ("support", "/admin/profile/credit/{ann}/", {**CREDIT, "step": "confirm"}),
    ("finance", "/admin/profile/upgrade/{ann}/", {"organization_name": "X"}),
    ("finance", "/admin/profile/link/{bob}/?q=x", {"organization_id": "1"}),
    ("support", "/admin/profile/unlink/{bob}/", {"reason": "x"}),
    ("finance", "/admin/profile/unlink/{bob}/", {"reason": "x"}),
    ("finance", "/admin/legacyaccount/transfer/{legacy}/", {"profile_id": "{ann}"}),
    ("finance", "/admin/legacyaccount/transfer/{legacy}/",
     {"profile_id": "{ann}", "step": "confirm"}),
    ("finance", "/admin/corporaterequest/enter/",
     {"organization_name": "X", "main_contact_email": "ann@acme.example.com"}),
    ("finance", "/admin/corporaterequest/complete/{request}/", {"step": "confirm"}),
    ("finance", "/admin/corporaterequest/reject/{request}/", {"reason": "x"}),
]


@pytest.mark.parametrize(("role", "path", "data"), FORBIDDEN)
@pytest.mark.parametrize("method", ["get", "post"])
def test_pages_and_posts_without_the_permission_are_refused(client_as, world, appctx, role,
                                                            path, data, method):
    ids = {**world, "request": _request(appctx)}
    client = client_as(role)
    with appctx():
        before = snapshot()
    path = path.format(**ids)
    data = {k: v.format(**ids) for k, v in data.items()}
    response = client.post(path, data=data) if method == "post" else client.get(path)
    assert response.status_code == 403
    with appctx():
        assert snapshot() == before


def test_a_confirm_by_a_role_without_the_permission_is_refused(client_as, world, appctx):
    """A review made by finance cannot be confirmed by support, even with its token."""
    finance = client_as("finance")
    url = f"/admin/profile/credit/{world['ann']}/"
    token = review_token_from(_text(finance.post(url, data={**CREDIT, "step": "review"})))
    support = client_as("support")
    with appctx():
        before = snapshot()
    response = support.post(url, data={**CREDIT, "step": "confirm", "review_token": token})
    assert response.status_code == 403
    with appctx():
        assert snapshot() == before


def test_signed_out_post_is_sent_to_login(app, world):
    response = app.test_client().post(f"/admin/profile/upgrade/{world['ann']}/",
                                      data={"organization_name": "X"})
    assert response.status_code == 302 and "/login" in response.location


def test_a_request_whose_main_contact_has_no_profile_offers_no_completion(
        client_as, world, appctx):
    client = client_as("support")
    client.post("/admin/corporaterequest/enter/", data={
        "organization_name": "Nobody Ltd", "main_contact_email": "ghost@nobody.example.com",
        "secondary_emails": "bob@acme.example.com"})
    with appctx():
        request_id = db.session.scalar(select(CorporateRequest.id))
        before = snapshot()
    page = _text(client.get(f"/admin/corporaterequest/details/?id={request_id}"))
    blocker = re.search(r'data-testid="complete-blocker">(.*?)</p>', page, re.S)
    assert blocker and "ghost@nobody.example.com" in blocker.group(1)
    assert f"/admin/corporaterequest/complete/{request_id}/" not in page
    assert "email is queued" not in page
    # the address typed by hand: back to the request with the reason, nothing to confirm
    response = client.get(f"/admin/corporaterequest/complete/{request_id}/",
                          follow_redirects=True)
    html = _text(response)
    assert 'name="review_token"' not in html and "email is queued" not in html
    assert "ghost@nobody.example.com" in _flashes(html)
    with appctx():
        assert snapshot() == before
        assert _count(OutboxEmail) == 0
