"""Accounts pages: corporate requests, profile actions, credit adjustments, legacy credit."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from backoffice import accounts
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    CorporateRequest,
    CreditEntry,
    LegacyAccount,
    Order,
    Organization,
    OutboxEmail,
    Profile,
    RequestStatus,
)
from tests.queries import ledger_sum
from tests.test_accounts import CAAS_PRICE, DV_PRICE, billing, catalog, legacy


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _flashes(html: str) -> str:
    """The text of the flashed alerts on a page."""
    return " ".join(re.sub(r"<[^>]+>", " ", m) for m in re.findall(
        r'<div class="alert[^"]*"[^>]*>(.*?)</div>', html, re.S))


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


# --------------------------------------------------------------------------- corporate requests


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
    review = client.get(f"/admin/corporaterequest/complete/{request_id}/")
    assert review.status_code == 200
    assert "new.hire@acme.example.com" in review.get_data(as_text=True)
    done = client.post(f"/admin/corporaterequest/complete/{request_id}/")
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


def test_reject_needs_a_reason(client_as, appctx):
    with appctx() as session:
        request_id = accounts.submit_corporate_request(
            organization_name="ACME", main_contact_email="ann@acme.example.com",
            secondary_emails=[]).id
        session.commit()
    client = client_as("support")
    response = client.post(f"/admin/corporaterequest/reject/{request_id}/",
                           data={"reason": "  "}, follow_redirects=True)
    assert "needs a reason" in _flashes(response.get_data(as_text=True))
    with appctx():
        assert db.session.get(CorporateRequest, request_id).status == RequestStatus.OPEN
    response = client.post(f"/admin/corporaterequest/reject/{request_id}/",
                           data={"reason": "Not a company"})
    assert response.status_code == 303
    with appctx():
        req = db.session.get(CorporateRequest, request_id)
        assert req.status == RequestStatus.REJECTED and "Not a company" in req.outcome


def test_entering_a_bad_request_writes_nothing(client_as, appctx):
    client = client_as("support")
    response = client.post("/admin/corporaterequest/enter/", data={
        "organization_name": "ACME", "main_contact_email": "ann@acme.example.com",
        "secondary_emails": "bob@acme.example.com\nnot an email"})
    assert response.status_code == 400
    assert "not a valid email" in _flashes(response.get_data(as_text=True))
    with appctx():
        assert _count(CorporateRequest) == 0 and _count(AuditEvent) == 0


# --------------------------------------------------------------------------- profile actions


def test_profile_page_shows_own_credit_and_the_orders_it_sees(client_as, world, appctx):
    with appctx() as session:
        ann, bob = db.session.get(Profile, world["ann"]), db.session.get(Profile, world["bob"])
        organization = accounts.upgrade_to_corporate(ann, organization_name="ACME",
                                                     actor=None)
        accounts.link_profile(organization, bob, actor=None)
        accounts.add_credit(ann, 98765, memo="", actor=None)
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


def test_support_upgrades_and_links_through_search(client_as, world, appctx):
    client = client_as("support")
    response = client.post(f"/admin/profile/upgrade/{world['ann']}/",
                           data={"organization_name": "ACME Corp"})
    assert response.status_code == 303
    search = client.get(f"/admin/profile/link/{world['bob']}/?q=acme")
    assert "ACME Corp" in search.get_data(as_text=True)
    with appctx():
        organization_id = db.session.scalar(select(Organization.id))
    response = client.post(f"/admin/profile/link/{world['bob']}/",
                           data={"organization_id": organization_id})
    assert response.status_code == 303
    with appctx():
        assert db.session.get(Profile, world["bob"]).organization_id == organization_id
        events = _count(AuditEvent)
    # linking again fails cleanly: flashed, nothing written
    again = client.post(f"/admin/profile/link/{world['bob']}/",
                        data={"organization_id": organization_id}, follow_redirects=True)
    assert "already linked" in _flashes(again.get_data(as_text=True))
    with appctx():
        assert _count(AuditEvent) == events


def test_unlink_is_for_admins_with_a_reason(client_as, world, appctx):
    with appctx() as session:
        ann, bob = db.session.get(Profile, world["ann"]), db.session.get(Profile, world["bob"])
        organization = accounts.upgrade_to_corporate(ann, organization_name="ACME",
                                                     actor=None)
        accounts.link_profile(organization, bob, actor=None)
        session.commit()
    support = client_as("support")
    assert support.get(f"/admin/profile/unlink/{world['bob']}/").status_code == 403
    assert support.post(f"/admin/profile/unlink/{world['bob']}/",
                        data={"reason": "left"}).status_code == 403
    admin = client_as("admin")
    response = admin.post(f"/admin/profile/unlink/{world['bob']}/", data={"reason": ""})
    assert response.status_code == 200
    assert "needs a reason" in _flashes(response.get_data(as_text=True))
    with appctx():
        assert db.session.get(Profile, world["bob"]).organization_id is not None
    response = admin.post(f"/admin/profile/unlink/{world['bob']}/", data={"reason": "left"})
    assert response.status_code == 303
    with appctx():
        assert db.session.get(Profile, world["bob"]).organization_id is None


# --------------------------------------------------------------------------- credit adjustments


def test_finance_adjusts_credit_in_major_units_through_review(client_as, world, appctx):
    client = client_as("finance")
    url = f"/admin/profile/credit/{world['ann']}/"
    review = client.post(url, data={"direction": "add", "amount": "12.50", "memo": "goodwill"})
    assert review.status_code == 200 and "$12.50" in review.get_data(as_text=True)
    with appctx():
        assert _count(CreditEntry) == 0  # the review writes nothing
    done = client.post(url, data={"direction": "add", "amount": "12.50", "memo": "goodwill",
                                  "step": "confirm"})
    assert done.status_code == 303
    with appctx():
        ann = db.session.get(Profile, world["ann"])
        assert ann.credit_balance == 1250 == ledger_sum(ann)
    too_much = client.post(url, data={"direction": "remove", "amount": "12.51", "memo": "x",
                                      "step": "confirm"})
    assert too_much.status_code == 400
    assert "below zero" in _flashes(too_much.get_data(as_text=True))
    bad = client.post(url, data={"direction": "add", "amount": "1.005", "memo": "x"})
    assert bad.status_code == 400 and "at most 2 decimals" in _flashes(bad.get_data(as_text=True))
    with appctx():
        assert db.session.get(Profile, world["ann"]).credit_balance == 1250
        assert _count(CreditEntry) == 1


# --------------------------------------------------------------------------- legacy credit


def test_legacy_transfer_review_confirm_then_refusal(client_as, world, appctx):
    client = client_as("support")
    search = client.get(f"/admin/legacyaccount/transfer/{world['legacy']}/?q=ann@acme")
    assert "ann@acme.example.com" in search.get_data(as_text=True)
    review = client.get(f"/admin/legacyaccount/transfer/{world['legacy']}/review/"
                        f"?profile_id={world['ann']}")
    text = review.get_data(as_text=True)
    assert review.status_code == 200 and "$48.00" in text and "L-100001" in text
    confirm_url = f"/admin/legacyaccount/transfer/{world['legacy']}/confirm/"
    assert client.post(confirm_url, data={"profile_id": world["ann"]}).status_code == 303
    again = client.post(confirm_url, data={"profile_id": world["bob"]}, follow_redirects=True)
    assert "already moved" in _flashes(again.get_data(as_text=True))
    with appctx():
        assert db.session.get(Profile, world["ann"]).credit_balance == 4800
        assert db.session.get(Profile, world["bob"]).credit_balance == 0
        assert db.session.get(LegacyAccount, world["legacy"]).credit_balance == 0
        assert _count(CreditEntry) == 1
    listing = client.get("/admin/legacyaccount/").get_data(as_text=True)
    assert "moved $48.00 to" in listing


def test_legacy_transfer_to_another_currency_is_refused_on_review(client_as, world, appctx):
    client = client_as("support")
    response = client.get(f"/admin/legacyaccount/transfer/{world['legacy']}/review/"
                          f"?profile_id={world['eve']}", follow_redirects=True)
    assert "holds USD but eve@other.example.com uses EUR" in _flashes(
        response.get_data(as_text=True))
    response = client.post(f"/admin/legacyaccount/transfer/{world['legacy']}/confirm/",
                           data={"profile_id": world["eve"]}, follow_redirects=True)
    assert "holds USD" in _flashes(response.get_data(as_text=True))
    with appctx():
        assert db.session.get(LegacyAccount, world["legacy"]).credit_balance == 4800
        assert _count(CreditEntry) == 0


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


@pytest.mark.parametrize(("role", "method", "path", "data"), [
    ("support", "get", "/admin/profile/credit/{ann}/", None),
    ("support", "post", "/admin/profile/credit/{ann}/",
     {"direction": "add", "amount": "5", "memo": "x", "step": "confirm"}),
    ("finance", "post", "/admin/profile/upgrade/{ann}/", {"organization_name": "X"}),
    ("finance", "get", "/admin/profile/link/{bob}/?q=x", None),
    ("finance", "post", "/admin/profile/link/{bob}/", {"organization_id": "1"}),
    ("support", "post", "/admin/profile/unlink/{bob}/", {"reason": "x"}),
    ("finance", "post", "/admin/legacyaccount/transfer/{legacy}/confirm/",
     {"profile_id": "{ann}"}),
    ("finance", "get", "/admin/legacyaccount/transfer/{legacy}/review/?profile_id={ann}", None),
    ("finance", "post", "/admin/corporaterequest/enter/",
     {"organization_name": "X", "main_contact_email": "ann@acme.example.com"}),
    ("finance", "post", "/admin/corporaterequest/complete/1/", {}),
    ("finance", "post", "/admin/corporaterequest/reject/1/", {"reason": "x"}),
])
def test_crafted_posts_without_the_permission_are_refused(client_as, world, appctx, role,
                                                          method, path, data):
    client = client_as(role)
    path = path.format(**world)
    data = {k: v.format(**world) for k, v in (data or {}).items()}
    response = getattr(client, method)(path, data=data) if method == "post" else client.get(path)
    assert response.status_code == 403
    with appctx():
        assert _count(CreditEntry) == 0 and _count(Organization) == 0
        assert _count(CorporateRequest) == 0
        assert db.session.get(LegacyAccount, world["legacy"]).credit_balance == 4800


def test_signed_out_post_is_sent_to_login(app, world):
    response = app.test_client().post(f"/admin/profile/upgrade/{world['ann']}/",
                                      data={"organization_name": "X"})
    assert response.status_code == 302 and "/login" in response.location
