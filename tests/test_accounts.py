"""Retail accounts: orders, corporate accounts and linking, prepaid credit, legacy credit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice import accounts, subscriptions
from backoffice.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    CorporateRequest,
    CreditEntry,
    CreditKind,
    Invoice,
    LegacyAccount,
    License,
    Order,
    OrderStatus,
    Organization,
    OrgRole,
    OutboxEmail,
    Profile,
    RequestStatus,
)
from tests.conftest import make_staff
from tests.queries import ledger_sum, profile_by_email

DV_PRICE = 5000  # 50.00 a year
CAAS_PRICE = 8000


def catalog() -> None:
    """The two certificate types the retail tests buy."""
    subscriptions.create_certificate_type(code="DV", name="Domain validated",
                                          yearly_price=DV_PRICE)
    subscriptions.create_certificate_type(code="DV-CAAS", name="DV as a service",
                                          yearly_price=CAAS_PRICE, kind="caas")


def billing(profile: Profile) -> dict:
    return {"name": profile.name, "address1": "1 Main Street", "city": "Springfield",
            "postal_code": "12345", "country": "us", "company": "ACME"}


def order_for(profile: Profile, dv: int = 1) -> Order:
    return accounts.place_order(profile, items={"DV": dv}, billing=billing(profile))


def legacy(email: str, balance: int, currency: str = "USD", number: str = "L-100001"):
    account = LegacyAccount(legacy_number=number, email=email, name="Legacy Customer",
                            currency=currency, credit_balance=balance)
    db.session.add(account)
    db.session.flush()
    return account


def audit_count() -> int:
    return db.session.scalar(select(func.count(AuditEvent.id)))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def shop(ctx):
    catalog()
    ctx.commit()
    return ctx


# --------------------------------------------------------------------------- orders


def test_place_order_makes_items_invoice_and_one_unique_licence_per_certificate(shop):
    profile = accounts.create_profile(email="Ann@Example.com", name="Ann")
    order = accounts.place_order(profile, items={"dv": 2, "DV-CAAS": 1},
                                 billing=billing(profile))
    assert profile.email == "ann@example.com"
    assert order.total == 2 * DV_PRICE + CAAS_PRICE
    assert order.status == OrderStatus.AWAITING_PAYMENT
    assert order.billing["country"] == "US" and order.billing["company"] == "ACME"
    invoice = db.session.scalar(select(Invoice).where(Invoice.order_id == order.id))
    assert invoice.total == order.total
    assert [line.amount for line in invoice.lines] == [2 * DV_PRICE, CAAS_PRICE]
    licences = db.session.scalars(select(License)).all()
    assert len(licences) == 3
    assert len({lic.ca_reference for lic in licences}) == 3
    caas = [lic for lic in licences if lic.kind.value == "caas"]
    assert len(caas) == 1 and caas[0].acme_directory_url and caas[0].eab_key_id
    assert all(lic.acme_directory_url is None and lic.eab_key_id is None
               for lic in licences if lic.kind.value == "traditional")


def test_place_order_refuses_missing_billing_and_unknown_type(shop):
    profile = accounts.create_profile(email="ann@example.com", name="Ann")
    with pytest.raises(InvalidInput, match="postal code"):
        accounts.place_order(profile, items={"DV": 1},
                             billing={**billing(profile), "postal_code": " "})
    with pytest.raises(NotFound, match="OV"):
        accounts.place_order(profile, items={"OV": 1}, billing=billing(profile))
    assert count(Order) == 0


def test_create_profile_refuses_duplicate_email_in_any_case(shop):
    accounts.create_profile(email="ann@example.com", name="Ann")
    with pytest.raises(Conflict):
        accounts.create_profile(email="ANN@example.com", name="Ann again")


# --------------------------------------------------------------------------- visibility


def test_orders_placed_before_upgrade_are_visible_to_secondary_linked_later(shop):
    with time_machine.travel(datetime(2026, 3, 1, 9, tzinfo=UTC), tick=False):
        main = accounts.create_profile(email="it@acme.example.com", name="IT")
        other = accounts.create_profile(email="accounts@acme.example.com", name="Accounts")
        old_main = order_for(main)
        old_other = order_for(other)
        accounts.pay_order(old_other, payer=other, method="card")
    assert accounts.visible_orders(other) == [old_other]  # individual: own orders only
    with time_machine.travel(datetime(2026, 6, 1, 9, tzinfo=UTC), tick=False):
        organization = accounts.upgrade_to_corporate(main, organization_name="ACME",
                                                     actor=None)
        accounts.link_profile(organization, other, actor=None)
        new_main = order_for(main)
    seen_by_other = accounts.visible_orders(other)
    assert set(seen_by_other) == {old_main, old_other, new_main}
    assert set(accounts.visible_orders(main)) == {old_main, old_other, new_main}
    assert accounts.organization_orders(organization) == seen_by_other
    # the upgrade changed nothing about the orders themselves
    assert old_main.placed_by_id == main.id and old_other.paid_by_id == other.id
    assert other.org_role == OrgRole.SECONDARY and main.org_role == OrgRole.MAIN


def test_individual_profile_does_not_see_someone_elses_orders(shop):
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    bob = accounts.create_profile(email="bob@example.com", name="Bob")
    order_for(ann)
    assert accounts.visible_orders(bob) == []


def test_profile_belongs_to_at_most_one_organization(shop):
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    bob = accounts.create_profile(email="bob@example.com", name="Bob")
    cid = accounts.create_profile(email="cid@example.com", name="Cid")
    first = accounts.upgrade_to_corporate(ann, organization_name="First", actor=None)
    second = accounts.upgrade_to_corporate(bob, organization_name="Second", actor=None)
    accounts.link_profile(first, cid, actor=None)
    with pytest.raises(Conflict, match="already belongs to First"):
        accounts.link_profile(second, cid, actor=None)
    with pytest.raises(Conflict, match="already linked"):
        accounts.link_profile(first, cid, actor=None)
    with pytest.raises(Conflict, match="main contact of Second"):
        accounts.link_profile(first, bob, actor=None)
    with pytest.raises(Conflict, match="already belongs to First"):
        accounts.upgrade_to_corporate(cid, organization_name="Third", actor=None)
    assert cid.organization_id == first.id
    assert count(Organization) == 2


def test_unlink_needs_admin_and_reason_and_ends_visibility(shop):
    support, admin = make_staff("support"), make_staff("admin")
    main = accounts.create_profile(email="it@acme.example.com", name="IT")
    other = accounts.create_profile(email="acc@acme.example.com", name="Acc")
    theirs = order_for(other)
    organization = accounts.upgrade_to_corporate(main, organization_name="ACME", actor=admin)
    accounts.link_profile(organization, other, actor=support)
    assert theirs in accounts.visible_orders(main)
    events = audit_count()
    with pytest.raises(PermissionDenied):
        accounts.unlink_profile(other, reason="left the company", actor=support)
    with pytest.raises(InvalidInput, match="reason"):
        accounts.unlink_profile(other, reason="  ", actor=admin)
    with pytest.raises(Conflict, match="main contact"):
        accounts.unlink_profile(main, reason="mistake", actor=admin)
    assert audit_count() == events and other.organization_id == organization.id
    accounts.unlink_profile(other, reason="left the company", actor=admin)
    assert other.organization_id is None and other.org_role is None
    assert theirs not in accounts.visible_orders(main)
    assert accounts.visible_orders(other) == [theirs]
    event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert event.action == "organization.unlink"
    assert event.details["reason"] == "left the company" and event.actor_id == admin.id


def test_finance_cannot_link_or_upgrade(shop):
    finance = make_staff("finance")
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    bob = accounts.create_profile(email="bob@example.com", name="Bob")
    with pytest.raises(PermissionDenied):
        accounts.upgrade_to_corporate(ann, organization_name="ACME", actor=finance)
    organization = accounts.upgrade_to_corporate(ann, organization_name="ACME", actor=None)
    with pytest.raises(PermissionDenied):
        accounts.link_profile(organization, bob, actor=finance)
    assert bob.organization_id is None


# --------------------------------------------------------------------------- payments, credit


def test_forwarded_payment_link_records_payer_and_order_stays_with_placer(shop):
    placer = accounts.create_profile(email="buyer@acme.example.com", name="Buyer")
    payer = accounts.create_profile(email="finance@acme.example.com", name="Finance")
    accounts.add_credit(payer, 10000, memo="top-up", actor=None)
    order = order_for(placer, dv=1)
    accounts.pay_order(order, payer=payer, method="prepaid_credit")
    assert order.placed_by_id == placer.id and order.paid_by_id == payer.id
    assert order.status == OrderStatus.PAID and order.paid_at is not None
    assert payer.credit_balance == 10000 - DV_PRICE and placer.credit_balance == 0
    assert order in accounts.visible_orders(placer) and order in accounts.visible_orders(payer)
    organization = accounts.upgrade_to_corporate(placer, organization_name="ACME", actor=None)
    accounts.link_profile(organization, payer, actor=None)
    colleague = accounts.create_profile(email="legal@acme.example.com", name="Legal")
    accounts.link_profile(organization, colleague, actor=None)
    assert accounts.visible_orders(colleague) == [order]
    with pytest.raises(Conflict, match="only orders awaiting payment"):
        accounts.pay_order(order, payer=placer, method="card")


def test_credit_is_never_pooled_inside_an_organization(shop):
    ann = accounts.create_profile(email="ann@acme.example.com", name="Ann")
    bob = accounts.create_profile(email="bob@acme.example.com", name="Bob")
    organization = accounts.upgrade_to_corporate(ann, organization_name="ACME", actor=None)
    accounts.link_profile(organization, bob, actor=None)
    accounts.add_credit(ann, 20000, memo="top-up", actor=None)
    order = order_for(bob)
    shop.commit()
    events = audit_count()
    with pytest.raises(Conflict, match=r"bob@acme.example.com has only \$0.00"):
        accounts.pay_order(order, payer=bob, method="prepaid_credit")
    shop.rollback()
    assert bob.credit_balance == 0 and ann.credit_balance == 20000
    assert order.status == OrderStatus.AWAITING_PAYMENT and order.paid_by_id is None
    assert count(CreditEntry) == 1 and audit_count() == events
    assert [e.profile_id for e in db.session.scalars(select(CreditEntry))] == [ann.id]


def test_pay_with_credit_debits_the_payer_and_balance_equals_ledger(shop):
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    accounts.add_credit(ann, DV_PRICE * 2, memo="", actor=None)
    first, second, third = order_for(ann), order_for(ann), order_for(ann)
    accounts.pay_order(first, payer=ann, method="prepaid_credit")
    accounts.pay_order(second, payer=ann, method="prepaid_credit")
    assert ann.credit_balance == 0 == ledger_sum(ann)
    with pytest.raises(Conflict, match="below zero"):
        accounts.pay_order(third, payer=ann, method="prepaid_credit")
    entries = db.session.scalars(select(CreditEntry).order_by(CreditEntry.id)).all()
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [
        (CreditKind.TOP_UP, 10000, 10000),
        (CreditKind.ORDER_PAYMENT, -5000, 5000),
        (CreditKind.ORDER_PAYMENT, -5000, 0),
    ]


def test_pay_with_credit_in_another_currency_is_refused(shop):
    euro = accounts.create_profile(email="eu@example.com", name="Eu", currency="EUR")
    usd = accounts.create_profile(email="us@example.com", name="Us")
    accounts.add_credit(euro, 100000, memo="", actor=None)
    order = order_for(usd)
    with pytest.raises(Conflict, match="in USD but the credit of eu@example.com is in EUR"):
        accounts.pay_order(order, payer=euro, method="prepaid_credit")
    assert euro.credit_balance == 100000 and order.paid_by_id is None


def test_pay_refuses_unknown_method(shop):
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    with pytest.raises(InvalidInput, match="Unknown payment method"):
        accounts.pay_order(order_for(ann), payer=ann, method="cash")


def test_credit_adjustment_rules(shop):
    finance, support = make_staff("finance"), make_staff("support")
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    with pytest.raises(PermissionDenied):
        accounts.add_credit(ann, 1000, memo="goodwill", actor=support)
    with pytest.raises(InvalidInput, match="memo"):
        accounts.add_credit(ann, 1000, memo=" ", actor=finance)
    with pytest.raises(InvalidInput):
        accounts.add_credit(ann, 0, memo="nothing", actor=finance)
    entry = accounts.add_credit(ann, 1250, memo="goodwill", actor=finance)
    assert entry.kind == CreditKind.ADJUSTMENT and entry.actor_id == finance.id
    with pytest.raises(Conflict, match="below zero"):
        accounts.add_credit(ann, -1251, memo="too much", actor=finance)
    accounts.add_credit(ann, -1250, memo="reversal", actor=finance)
    assert ann.credit_balance == 0 == ledger_sum(ann)
    with pytest.raises(InvalidInput, match="Only staff"):
        accounts.add_credit(ann, -1, memo="", actor=None)


# --------------------------------------------------------------------------- legacy credit


def test_legacy_transfer_moves_the_balance_once_in_one_entry(shop):
    support = make_staff("support")
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    accounts.add_credit(ann, 100, memo="", actor=None)
    account = legacy("ann@legacy.test", 4800)
    entry = accounts.transfer_legacy_credit(account, ann, actor=support)
    assert entry.kind == CreditKind.LEGACY_TRANSFER and entry.amount == 4800
    assert entry.legacy_account_id == account.id and entry.balance_after == 4900
    assert ann.credit_balance == 4900 == ledger_sum(ann)
    assert account.credit_balance == 0 and account.transferred_amount == 4800
    assert account.transferred_to_id == ann.id and account.transferred_by_id == support.id
    actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert actions[-1] == "legacy_credit.transfer" and actions.count("legacy_credit.transfer") == 1


def test_second_legacy_transfer_is_refused_and_changes_nothing(shop):
    support = make_staff("support")
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    bob = accounts.create_profile(email="bob@example.com", name="Bob")
    account = legacy("ann@legacy.test", 4800)
    accounts.transfer_legacy_credit(account, ann, actor=support)
    shop.commit()
    events, entries = audit_count(), count(CreditEntry)
    for target in (ann, bob):
        with pytest.raises(Conflict, match="already moved to ann@example.com.*only once"):
            accounts.transfer_legacy_credit(account, target, actor=support)
        shop.rollback()
    assert audit_count() == events and count(CreditEntry) == entries
    assert ann.credit_balance == 4800 and bob.credit_balance == 0
    assert account.transferred_to_id == ann.id and account.transferred_amount == 4800


def test_legacy_transfer_refuses_currency_mismatch_and_empty_balance(shop):
    support, finance = make_staff("support"), make_staff("finance")
    usd = accounts.create_profile(email="us@example.com", name="Us")
    euro_account = legacy("eu@legacy.test", 9900, currency="EUR")
    with pytest.raises(Conflict, match="holds EUR but us@example.com uses USD"):
        accounts.transfer_legacy_credit(euro_account, usd, actor=support)
    empty = legacy("zero@legacy.test", 0, number="L-2")
    with pytest.raises(Conflict, match="no credit"):
        accounts.transfer_legacy_credit(empty, usd, actor=support)
    usd_account = legacy("us@legacy.test", 100, number="L-3")
    with pytest.raises(PermissionDenied):
        accounts.transfer_legacy_credit(usd_account, usd, actor=finance)
    assert euro_account.credit_balance == 9900 and euro_account.transferred_at is None
    assert usd.credit_balance == 0 and count(CreditEntry) == 0


# --------------------------------------------------------------------------- corporate requests


def test_complete_request_links_matches_reports_unknown_and_queues_email(shop):
    support = make_staff("support")
    main = accounts.create_profile(email="it@acme.example.com", name="IT Lead")
    second = accounts.create_profile(email="acc@acme.example.com", name="Accounts")
    old = order_for(second)
    request = accounts.submit_corporate_request(
        organization_name="ACME Corp", main_contact_email="IT@acme.example.com",
        secondary_emails=["acc@acme.example.com", "", "new.hire@acme.example.com",
                          "it@acme.example.com", "ACC@acme.example.com"])
    assert request.secondary_emails == ["acc@acme.example.com", "new.hire@acme.example.com"]
    matches = accounts.request_matches(request)
    assert set(matches["profiles"]) == {"it@acme.example.com", "acc@acme.example.com"}
    assert matches["unknown"] == ["new.hire@acme.example.com"]
    organization = accounts.complete_corporate_request(request, actor=support)
    assert organization.name == "ACME Corp" and organization.main_contact == main
    assert second.organization_id == organization.id and second.org_role == OrgRole.SECONDARY
    assert count(Profile) == 2  # unknown emails are never invented
    assert request.status == RequestStatus.COMPLETED and request.processed_by_id == support.id
    assert "new.hire@acme.example.com" in request.outcome
    assert "Linked: acc@acme.example.com" in request.outcome
    emails = db.session.scalars(select(OutboxEmail)).all()
    assert [e.to for e in emails] == ["it@acme.example.com"]
    assert "new.hire@acme.example.com" in emails[0].body
    assert old in accounts.visible_orders(main)
    with pytest.raises(Conflict, match="already completed"):
        accounts.complete_corporate_request(request, actor=support)


def test_failed_completion_leaves_no_partial_rows_and_no_audit_event(shop):
    support = make_staff("support")
    accounts.create_profile(email="it@acme.example.com", name="IT")
    taken = accounts.create_profile(email="taken@acme.example.com", name="Taken")
    accounts.upgrade_to_corporate(taken, organization_name="Elsewhere", actor=None)
    request = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="it@acme.example.com",
        secondary_emails=["taken@acme.example.com"])
    shop.commit()
    events, organizations = audit_count(), count(Organization)
    with pytest.raises(Conflict, match="taken@acme.example.com already belongs to Elsewhere"):
        accounts.complete_corporate_request(request, actor=support)
    shop.rollback()
    assert audit_count() == events and count(Organization) == organizations
    assert count(OutboxEmail) == 0
    assert db.session.get(CorporateRequest, request.id).status == RequestStatus.OPEN
    assert profile_by_email("it@acme.example.com").organization_id is None


def test_complete_refuses_when_main_contact_has_no_profile(shop):
    request = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="nobody@acme.example.com", secondary_emails=[])
    with pytest.raises(NotFound, match="sign up first"):
        accounts.complete_corporate_request(request, actor=None)
    assert count(Organization) == 0


def test_reject_request_needs_a_reason(shop):
    support = make_staff("support")
    request = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="it@acme.example.com", secondary_emails=[])
    with pytest.raises(InvalidInput, match="reason"):
        accounts.reject_corporate_request(request, reason="", actor=support)
    assert request.status == RequestStatus.OPEN
    accounts.reject_corporate_request(request, reason="Duplicate of #1", actor=support)
    assert request.status == RequestStatus.REJECTED and request.outcome.endswith("#1")
    with pytest.raises(Conflict):
        accounts.reject_corporate_request(request, reason="again", actor=support)


def test_submit_request_refuses_bad_input(shop):
    with pytest.raises(InvalidInput, match="organization name"):
        accounts.submit_corporate_request(organization_name=" ",
                                          main_contact_email="a@b.example.com",
                                          secondary_emails=[])
    with pytest.raises(InvalidInput, match="not a valid email"):
        accounts.submit_corporate_request(organization_name="X",
                                          main_contact_email="a@b.example.com",
                                          secondary_emails=["not-an-email"])
    assert count(CorporateRequest) == 0


# --------------------------------------------------------------------------- reviews and quotes


def test_credit_adjustment_quote_runs_every_check_and_writes_nothing(shop):
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    accounts.add_credit(ann, 1000, memo="", actor=None)
    events = audit_count()
    quote = accounts.quote_credit_adjustment(ann, -400, memo=" correction ")
    assert (quote.amount, quote.balance_before, quote.balance_after, quote.memo,
            quote.currency) == (-400, 1000, 600, "correction", "USD")
    with pytest.raises(InvalidInput, match="memo"):
        accounts.quote_credit_adjustment(ann, 100, memo="  ")
    with pytest.raises(InvalidInput, match="non-zero"):
        accounts.quote_credit_adjustment(ann, 0, memo="x")
    with pytest.raises(Conflict, match=r"has only \$10.00 of credit; taking \$10.01"):
        accounts.quote_credit_adjustment(ann, -1001, memo="x")
    with pytest.raises(InvalidInput, match=r"at most \$100,000.00"):
        accounts.quote_credit_adjustment(ann, accounts.MAX_CREDIT_ADJUSTMENT + 1, memo="x")
    with pytest.raises(InvalidInput, match="at most 500 characters"):
        accounts.quote_credit_adjustment(ann, 100, memo="x" * 501)
    assert accounts.quote_credit_adjustment(
        ann, accounts.MAX_CREDIT_ADJUSTMENT, memo="x").balance_after == 10_001_000
    assert ann.credit_balance == 1000 and count(CreditEntry) == 1 and audit_count() == events


def test_staff_adjustments_are_bounded_and_can_require_the_reviewed_balance(shop):
    finance = make_staff("finance")
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    for amount in (accounts.MAX_CREDIT_ADJUSTMENT + 1, -accounts.MAX_CREDIT_ADJUSTMENT - 1):
        with pytest.raises(InvalidInput, match="at most"):
            accounts.add_credit(ann, amount, memo="big", actor=finance)
    # A storefront top-up is not a staff adjustment and has no such bound.
    accounts.add_credit(ann, accounts.MAX_CREDIT_ADJUSTMENT + 1, memo="", actor=None)
    shop.commit()
    with pytest.raises(Conflict, match=r"is now \$100,000.01, not the \$0.00 reviewed"):
        accounts.add_credit(ann, 100, memo="x", actor=finance, expected_balance=0)
    shop.rollback()
    assert count(CreditEntry) == 1
    entry = accounts.add_credit(ann, -1, memo="x", actor=finance,
                                expected_balance=accounts.MAX_CREDIT_ADJUSTMENT + 1)
    assert entry.balance_after == accounts.MAX_CREDIT_ADJUSTMENT == ledger_sum(ann)


def test_legacy_transfer_quote_says_what_moves_and_refuses_as_the_transfer_does(shop):
    support = make_staff("support")
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    euro = accounts.create_profile(email="eu@example.com", name="Eu", currency="EUR")
    accounts.add_credit(ann, 100, memo="", actor=None)
    account = legacy("ann@legacy.test", 4800)
    quote = accounts.quote_legacy_transfer(account, ann)
    assert (quote.amount, quote.currency, quote.legacy_number, quote.profile_balance_before,
            quote.profile_balance_after) == (4800, "USD", "L-100001", 100, 4900)
    with pytest.raises(Conflict, match="holds USD but eu@example.com uses EUR"):
        accounts.quote_legacy_transfer(account, euro)
    assert count(CreditEntry) == 1 and account.transferred_at is None
    accounts.transfer_legacy_credit(account, ann, actor=support)
    with pytest.raises(Conflict, match="already moved to ann@example.com.*only once"):
        accounts.quote_legacy_transfer(account, ann)


def test_completion_quote_is_what_completing_does(shop):
    main = accounts.create_profile(email="it@acme.example.com", name="IT")
    accounts.create_profile(email="acc@acme.example.com", name="Acc")
    request = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="it@acme.example.com",
        secondary_emails=["acc@acme.example.com", "new@acme.example.com"])
    quote = accounts.quote_corporate_request_completion(request)
    assert (quote.main, quote.organization, quote.organization_name) == (main, None, "ACME")
    assert (quote.link, quote.already_linked, quote.unknown) == (
        ("acc@acme.example.com",), (), ("new@acme.example.com",))
    assert count(Organization) == 0
    # When the main contact already leads an organization, that one is used.
    organization = accounts.upgrade_to_corporate(main, organization_name="ACME Group",
                                                 actor=None)
    accounts.link_profile(organization, profile_by_email("acc@acme.example.com"), actor=None)
    quote = accounts.quote_corporate_request_completion(request)
    assert (quote.organization, quote.organization_name) == (organization, "ACME Group")
    assert (quote.link, quote.already_linked) == ((), ("acc@acme.example.com",))
    assert accounts.complete_corporate_request(request, actor=None) == organization
    with pytest.raises(Conflict, match="already completed"):
        accounts.quote_corporate_request_completion(request)


def test_completion_quote_refuses_what_completing_refuses(shop):
    nobody = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="nobody@acme.example.com",
        secondary_emails=[])
    with pytest.raises(NotFound, match="sign up first"):
        accounts.quote_corporate_request_completion(nobody)
    lead = accounts.create_profile(email="lead@other.example.com", name="Lead")
    main = accounts.create_profile(email="it@acme.example.com", name="IT")
    other = accounts.upgrade_to_corporate(lead, organization_name="Other", actor=None)
    accounts.link_profile(other, main, actor=None)
    secondary = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="it@acme.example.com",
        secondary_emails=[])
    with pytest.raises(Conflict, match="is a secondary user of Other"):
        accounts.quote_corporate_request_completion(secondary)


def test_upgrade_link_and_unlink_reviews_say_what_changes_and_refuse_as_the_verbs_do(shop):
    ann = accounts.create_profile(email="ann@example.com", name="Ann")
    bob = accounts.create_profile(email="bob@example.com", name="Bob")
    order_for(ann)
    order_for(bob)
    review = accounts.review_upgrade(ann, organization_name="  ACME  ")
    assert (review.organization_name, review.own_orders, review.same_name) == ("ACME", 1, ())
    for name, message in (("", "a name"), ("A" * 201, "at most 200")):
        with pytest.raises(InvalidInput, match=message):
            accounts.review_upgrade(ann, organization_name=name)
    organization = accounts.upgrade_to_corporate(ann, organization_name="ACME", actor=None)
    assert accounts.review_upgrade(bob, organization_name="acme").same_name == (organization,)
    with pytest.raises(Conflict, match="already belongs to ACME"):
        accounts.review_upgrade(ann, organization_name="Other")

    link = accounts.review_link(organization, bob)
    assert (link.main_contact, link.members, link.orders_now, link.orders_after) == (
        ann, 1, 1, 2)
    lead = accounts.create_profile(email="lead@other.example.com", name="Lead")
    accounts.upgrade_to_corporate(lead, organization_name="Other", actor=None)
    with pytest.raises(Conflict, match="main contact of Other and cannot join"):
        accounts.review_link(organization, lead)
    accounts.link_profile(organization, bob, actor=None)
    with pytest.raises(Conflict, match="already linked"):
        accounts.review_link(organization, bob)

    unlink = accounts.review_unlink(bob, reason=" left ")
    assert (unlink.organization, unlink.reason, unlink.orders_now, unlink.orders_after) == (
        organization, "left", 2, 1)
    for reason, message in (("", "needs a reason"), ("x" * 501, "at most 500")):
        with pytest.raises(InvalidInput, match=message):
            accounts.review_unlink(bob, reason=reason)
    with pytest.raises(Conflict, match="main contact cannot be unlinked"):
        accounts.review_unlink(ann, reason="x")
    assert count(Organization) == 2 and bob.organization_id == organization.id


def test_requests_list_a_bounded_number_of_secondary_emails_and_reasons_are_bounded(shop):
    too_many = [f"u{i}@acme.example.com" for i in range(accounts.MAX_SECONDARY_EMAILS + 1)]
    with pytest.raises(InvalidInput, match="at most 100 secondary emails; this one lists 101"):
        accounts.submit_corporate_request(organization_name="ACME",
                                          main_contact_email="it@acme.example.com",
                                          secondary_emails=too_many)
    request = accounts.submit_corporate_request(
        organization_name="ACME", main_contact_email="it@acme.example.com",
        secondary_emails=too_many[:-1])
    assert len(request.secondary_emails) == accounts.MAX_SECONDARY_EMAILS
    with pytest.raises(InvalidInput, match="at most 500 characters"):
        accounts.reject_corporate_request(request, reason="x" * 501, actor=None)
    assert request.status == RequestStatus.OPEN
