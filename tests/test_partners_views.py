"""Partner pages: customers, subscriptions with review/confirm, inventory, resellers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import (
    AdminResponsibility,
    AuditEvent,
    CertificateType,
    Customer,
    CustomerAdmin,
    Reseller,
    ResellerStatus,
    Subscription,
    SubscriptionStatus,
    Transaction,
)
from backoffice.subscriptions import update_certificate_type
from tests import factories
from tests.conftest import review_then_confirm, review_token_from

CUSTOMER_FORM = {
    "company_name": "Bluefin Hosting", "address1": "12 Harbour Road", "address2": "",
    "address3": "", "city": "Dublin", "postal_code": "D02 X285", "state": "", "country": "IE",
    "reseller": "__None", "administrative_responsibility": "customer",
    "customer_admin_email": "it@bluefin.example", "currency": "EUR",
}


def counts():
    return tuple(db.session.scalar(select(func.count()).select_from(m))
                 for m in (Customer, CustomerAdmin, Subscription, Transaction, AuditEvent))


@pytest.fixture
def product_id(appctx):
    with appctx() as session:
        product = factories.catalog()
        session.commit()
        return product.id


@pytest.fixture
def customer_id(appctx, product_id):
    with appctx() as session:
        customer = factories.customer()
        session.commit()
        return customer.id


def test_support_adds_a_customer_administered_customer(app, client_as, appctx):
    client = client_as("support")
    response = client.post("/admin/customer/new/", data=CUSTOMER_FORM)
    assert response.status_code == 302
    with appctx() as session:
        customer = session.scalar(select(Customer))
        assert (customer.company_name, customer.country, customer.currency) == (
            "Bluefin Hosting", "IE", "EUR")
        assert customer.administrative_responsibility == AdminResponsibility.CUSTOMER
        assert [a.email for a in customer.admins] == ["it@bluefin.example"]
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "customer.create"))
        assert event.actor.email == "support@staff.test"


@pytest.mark.parametrize(("change", "message"), [
    ({"customer_admin_email": ""}, b"needs a customer admin email"),
    ({"customer_admin_email": "not-an-email"}, b"Invalid email address"),
    ({"country": "XX"}, b"Not a valid choice"),
    ({"company_name": ""}, b"This field is required"),
    ({"city": "  "}, b"This field is required"),
])
def test_bad_customer_input_gets_a_message_and_writes_nothing(client_as, appctx, change,
                                                              message):
    client = client_as("support")
    with appctx():
        before = counts()
    response = client.post("/admin/customer/new/", data={**CUSTOMER_FORM, **change},
                           follow_redirects=True)
    assert response.status_code == 200
    assert message in response.data
    with appctx():
        assert counts() == before


def test_administrative_responsibility_cannot_be_changed_by_a_crafted_post(
        client_as, appctx, customer_id):
    client = client_as("support")
    form = {**CUSTOMER_FORM, "administrative_responsibility": "customer",
            "customer_admin_email": "x@y.example", "city": "Hamburg"}
    response = client.post(f"/admin/customer/edit/?id={customer_id}", data=form,
                           follow_redirects=True)
    assert b"cannot be changed" in response.data
    with appctx() as session:
        customer = session.get(Customer, customer_id)
        assert customer.administrative_responsibility == AdminResponsibility.PARTNER
        assert customer.city == "Springfield"  # the whole change was refused
    # The edit page shows the field but does not let it be edited.
    page = client.get(f"/admin/customer/edit/?id={customer_id}").get_data(as_text=True)
    assert 'name="administrative_responsibility"' in page and "disabled" in page
    # An ordinary edit without the field goes through.
    form.pop("administrative_responsibility")
    client.post(f"/admin/customer/edit/?id={customer_id}", data=form)
    with appctx() as session:
        assert session.get(Customer, customer_id).city == "Hamburg"


def test_the_verb_refuses_a_responsibility_change_too(ctx):
    from backoffice import partners
    from backoffice.errors import Conflict

    customer = factories.customer(admin_email="a@b.example")
    with pytest.raises(Conflict, match="cannot be changed"):
        partners.update_customer(customer, administrative_responsibility="partner", actor=None)


@pytest.mark.parametrize("role", ["finance"])
def test_roles_without_partner_write_get_403(client_as, customer_id, role):
    client = client_as(role)
    assert client.get("/admin/customer/new/").status_code == 403
    assert client.post("/admin/customer/new/", data=CUSTOMER_FORM).status_code == 403
    assert client.post(f"/admin/customer/subscribe/{customer_id}/",
                       data={"product_id": "1"}).status_code == 403
    assert client.get(f"/admin/customer/details/?id={customer_id}").status_code == 200


def subscribe_form(product_id, **extra):
    return {"product_id": str(product_id), "term_months": "12", "start_date": "2026-06-01",
            "auto_renew": "y", "qty_DV": "10", "qty_OV": "", "qty_EV": "0", **extra}


@pytest.mark.clock(datetime(2026, 11, 22, 10, tzinfo=UTC))
def test_backdated_subscription_review_then_confirm(client_as, appctx, customer_id,
                                                   product_id):
    client = client_as("support")
    form_page = client.get(f"/admin/customer/subscribe/{customer_id}/?product_id={product_id}")
    assert b"qty_DV" in form_page.data
    url = f"/admin/customer/subscribe/{customer_id}/"
    review, done = review_then_confirm(client, url, subscribe_form(product_id))
    html = review.get_data(as_text=True)
    assert "$261.64" in html and "191 of 365" in html and "$500.00" in html
    assert done.status_code == 303
    with appctx() as session:
        subscription = session.scalar(select(Subscription))
        assert done.headers["Location"].endswith(f"/admin/subscription/details/?id="
                                                 f"{subscription.id}")
        assert subscription.auto_renew is True
        charge = session.scalar(select(Transaction))
        assert charge.amount == 26164
    page = client.get(f"/admin/customer/details/?id={customer_id}").get_data(as_text=True)
    assert "$261.64" in page and "191/365 days" in page


@pytest.mark.clock(datetime(2026, 11, 22, 10, tzinfo=UTC))
def test_the_review_alone_writes_nothing(client_as, appctx, customer_id, product_id):
    client = client_as("support")
    review = client.post(f"/admin/customer/subscribe/{customer_id}/",
                         data={**subscribe_form(product_id), "step": "review"})
    assert "Confirm" in review.get_data(as_text=True)
    with appctx():
        assert counts()[2:4] == (0, 0)


@pytest.mark.clock(datetime(2026, 11, 22, 10, tzinfo=UTC))
def test_confirm_after_a_price_change_shows_the_new_amounts_and_charges_nothing(
        client_as, appctx, customer_id, product_id):
    client = client_as("support")
    url = f"/admin/customer/subscribe/{customer_id}/"
    review = client.post(url, data={**subscribe_form(product_id), "step": "review"})
    token = review_token_from(review.get_data(as_text=True))
    with appctx() as session:
        dv = session.scalar(select(CertificateType).where(CertificateType.code == "DV"))
        update_certificate_type(dv, name=dv.name, yearly_price=6000, active=True, actor=None)
        session.commit()
    stale = client.post(url, data={**subscribe_form(product_id), "step": "confirm",
                                   "review_token": token})
    html = stale.get_data(as_text=True)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "$313.97" in html  # 600.00 x 191/365: the new review, to confirm again
    with appctx():
        assert counts()[2] == 0


@pytest.mark.clock(datetime(2026, 11, 22, 10, tzinfo=UTC))
@pytest.mark.parametrize(("change", "message"), [
    ({"start_date": "2026-11-23"}, "in the future"),
    ({"start_date": "2025-11-22"}, "earliest start date allowed today is 2025-11-23"),
    ({"start_date": "22/11/2026"}, "Enter the date as YYYY-MM-DD"),
    ({"start_date": "10000-01-01"}, "Enter the date as YYYY-MM-DD"),
    ({"start_date": "1999-12-31"}, "Enter a date from 2000-01-01"),
    ({"qty_DV": "ten"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "²"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "905970020212414042476352"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "100001"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "-1"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "0"}, "at least one certificate type"),
    ({"term_months": "18"}, "Choose one of the product&#39;s terms."),
    ({"term_months": "x"}, "Choose one of the product&#39;s terms."),
    ({"term_months": "1" * 5000}, "Choose one of the product&#39;s terms."),
])
def test_bad_subscription_input_is_explained(client_as, appctx, customer_id, product_id,
                                             change, message):
    client = client_as("support")
    response = client.post(f"/admin/customer/subscribe/{customer_id}/",
                           data={**subscribe_form(product_id), **change, "step": "review"})
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert 'name="review_token"' not in response.get_data(as_text=True)
    with appctx():
        assert counts()[2] == 0


@pytest.fixture
def subscription_id(appctx, customer_id, product_id):
    from backoffice import subscriptions

    with appctx() as session, time_machine.travel(datetime(2026, 11, 22, tzinfo=UTC),
                                                  tick=False):
        subscription = subscriptions.add_subscription(
            session.get(Customer, customer_id), factories_product(session, product_id),
            term_months=12, inventory={"DV": 10}, start_date=datetime(2026, 6, 1).date(),
            actor=None)
        session.commit()
        return subscription.id


def factories_product(session, product_id):
    from backoffice.models import SubscriptionProduct

    return session.get(SubscriptionProduct, product_id)


@pytest.mark.clock(datetime(2027, 1, 15, 9, tzinfo=UTC))
def test_add_inventory_review_then_confirm(client_as, appctx, subscription_id):
    client = client_as("support")
    url = f"/admin/subscription/inventory/{subscription_id}/"
    review, done = review_then_confirm(client, url, {"qty_OV": "3"})
    assert "$135.12" in review.get_data(as_text=True)
    assert "137 of 365" in review.get_data(as_text=True)
    assert done.status_code == 303
    with appctx() as session:
        sub = session.get(Subscription, subscription_id)
        assert {i.certificate_type.code: i.quantity for i in sub.inventory}["OV"] == 3
        assert sorted(t.amount for t in session.scalars(select(Transaction))) == [13512, 26164]


def test_renewal_inventory_form_saves_without_charging(client_as, appctx, subscription_id):
    client = client_as("support")
    response = client.post(f"/admin/subscription/renewal/{subscription_id}/",
                           data={"qty_DV": "4", "qty_OV": "2", "qty_EV": "0"})
    assert response.status_code == 303
    with appctx() as session:
        sub = session.get(Subscription, subscription_id)
        assert {i.certificate_type.code: (i.quantity, i.renewal_quantity)
                for i in sub.inventory} == {"DV": (10, 4), "OV": (0, 2), "EV": (0, 0)}
        assert session.scalar(select(func.count(Transaction.id))) == 1


@pytest.mark.clock(datetime(2026, 12, 1, 9, tzinfo=UTC))  # inside the subscription's term
def test_suspend_then_enable_through_confirmation_pages(client_as, appctx, subscription_id):
    client = client_as("support")
    confirm = client.get(f"/admin/subscription/suspend/{subscription_id}/")
    assert b"Suspend subscription" in confirm.data
    with appctx() as session:
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.ACTIVE
    assert client.post(f"/admin/subscription/suspend/{subscription_id}/").status_code == 303
    refused = client.post(f"/admin/subscription/inventory/{subscription_id}/",
                          data={"step": "review", "qty_DV": "1"})
    assert b"only active subscriptions take additions" in refused.data
    assert client.post(f"/admin/subscription/enable/{subscription_id}/").status_code == 303
    with appctx() as session:
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.ACTIVE


def test_finance_cannot_change_subscriptions(client_as, subscription_id):
    client = client_as("finance")
    for path in ("suspend", "enable", "inventory", "renewal"):
        assert client.post(f"/admin/subscription/{path}/{subscription_id}/",
                           data={"step": "confirm", "qty_DV": "1"}).status_code == 403


RESELLER_FORM = {"company_name": "TrustLayer", "address1": "9 Quay", "address2": "",
                 "address3": "", "city": "Lyon", "postal_code": "69001", "state": "",
                 "country": "FR"}


def test_admin_creates_a_reseller_and_support_cannot(client_as, appctx):
    assert client_as("support").post("/admin/reseller/new/",
                                     data=RESELLER_FORM).status_code == 403
    admin = client_as("admin")
    assert admin.post("/admin/reseller/new/", data=RESELLER_FORM).status_code == 302
    with appctx() as session:
        assert session.scalar(select(Reseller.company_name)) == "TrustLayer"


def test_disable_shows_the_impact_and_needs_a_reason(client_as, appctx, product_id):
    from backoffice import subscriptions

    with appctx() as session:
        reseller = factories.reseller()
        customer = factories.customer(reseller=reseller)
        subscriptions.add_subscription(customer, factories_product(session, product_id),
                                       term_months=12, inventory={"DV": 1}, auto_renew=True,
                                       actor=None)
        session.commit()
        reseller_id, customer_id = reseller.id, customer.id
    assert client_as("support").post(f"/admin/reseller/disable/{reseller_id}/",
                                     data={"reason": "x"}).status_code == 403
    admin = client_as("admin")
    preview = admin.get(f"/admin/reseller/disable/{reseller_id}/").get_data(as_text=True)
    assert "Auto-renewals that will stop" in preview and "Acme Ltd" in preview
    no_reason = admin.post(f"/admin/reseller/disable/{reseller_id}/", data={"reason": ""})
    assert b"needs a reason" in no_reason.data
    with appctx() as session:
        assert session.get(Reseller, reseller_id).status == ResellerStatus.ACTIVE
    done = admin.post(f"/admin/reseller/disable/{reseller_id}/",
                      data={"reason": "Unpaid invoices"})
    assert done.status_code == 303
    refused = admin.post(f"/admin/customer/subscribe/{customer_id}/",
                         data={"product_id": str(product_id), "term_months": "12",
                               "qty_DV": "1", "step": "review"})
    assert b"which is disabled" in refused.data
    assert admin.post(f"/admin/reseller/enable/{reseller_id}/").status_code == 303
    with appctx() as session:
        assert session.get(Reseller, reseller_id).status == ResellerStatus.ACTIVE
