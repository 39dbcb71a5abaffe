"""Partner pages: customers, subscriptions with review/confirm, inventory, resellers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

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
    assert client.get(f"/admin/customer/{customer_id}/").status_code == 200


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
        # it lands on the customer's Subscriptions tab, the new one listed
        assert done.headers["Location"].endswith(f"/admin/customer/{customer_id}/subscriptions")
        assert subscription.auto_renew is True
        charge = session.scalar(select(Transaction))
        assert charge.amount == 26164
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert f'href="/admin/subscription/details/?id={subscription.id}">#{subscription.id}' in page
    assert f'#{subscription.id}</a> added for Acme' in page
    page = client.get(f"/admin/customer/{customer_id}/transactions").get_data(as_text=True)
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
    ({"start_date": "２０２６-１１-２２"}, "Enter the date as YYYY-MM-DD"),
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


def test_finance_cannot_change_subscriptions(client_as, appctx, subscription_id):
    client = client_as("finance")
    with appctx():
        before = counts()
    for path in ("suspend", "enable", "inventory", "renewal"):
        url = f"/admin/subscription/{path}/{subscription_id}/"
        assert client.get(url).status_code == 403
        for step in ("review", "confirm"):
            assert client.post(url, data={"step": step, "qty_DV": "1"}).status_code == 403
    with appctx() as session:
        assert counts() == before
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.ACTIVE
    assert client.get(f"/admin/subscription/details/?id={subscription_id}").status_code == 200


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


# --------------------------------------------------------------------------- reviewed changes
#
# Each reviewed operation below is tested the same way: review then Confirm applies once;
# a second Confirm of the same review applies nothing and lands on the first result; a
# review made stale by someone else applies nothing; bad input is a message; a role
# without the permission gets 403.

#: a moment inside the term of the ``subscription_id`` fixture (2026-06-01 to 2027-06-01)
IN_TERM = datetime(2026, 12, 1, 9, tzinfo=UTC)


def events(session, action: str) -> int:
    return session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == action))


def inventory(session, subscription_id) -> dict[str, tuple[int, int]]:
    subscription = session.get(Subscription, subscription_id)
    return {row.certificate_type.code: (row.quantity, row.renewal_quantity)
            for row in subscription.inventory}


def confirm_again(client, url: str, review, data: dict | None = None):
    """Post the Confirm of ``review`` (again)."""
    token = review_token_from(review.get_data(as_text=True))
    return client.post(url, data={**(data or {}), "step": "confirm", "review_token": token})


def landed_on(client, response, url_end: str) -> str:
    """The page a 303 lands on, after checking where it goes."""
    assert response.status_code == 303, response.data[:2000]
    assert response.headers["Location"].endswith(url_end)
    return client.get(response.headers["Location"]).get_data(as_text=True)


def status_review(client, url: str):
    """A status change's review: the page itself, opened with GET."""
    review = client.get(url)
    assert review.status_code == 200, review.data[:2000]
    return review


# ----------------------------------------------------------------- renewal inventory

RENEWAL = {"qty_DV": "4", "qty_OV": "2", "qty_EV": "0"}


@pytest.mark.clock(IN_TERM)
def test_renewal_inventory_review_then_confirm_charges_nothing(client_as, appctx,
                                                              subscription_id):
    client = client_as("support")
    url = f"/admin/subscription/renewal/{subscription_id}/"
    form = client.get(url).get_data(as_text=True)
    assert 'name="qty_DV"' in form and 'value="10"' in form  # today's renewal inventory
    review = client.post(url, data={**RENEWAL, "step": "review"})
    html = review.get_data(as_text=True)
    assert "Jun 1, 2027 to Jun 1, 2028" in html  # the next term
    assert 'data-testid="before-DV">10<' in html and 'data-testid="after-DV">4<' in html
    assert 'data-testid="total-before">$500.00<' in html  # 10 DV x 50.00
    assert 'data-testid="total-after">$440.00<' in html  # 4 DV x 50.00 + 2 OV x 120.00
    assert "auto-renew off" in html  # the fixture's subscription will not renew
    with appctx() as session:  # the review wrote nothing
        assert inventory(session, subscription_id)["DV"] == (10, 10)
    done = confirm_again(client, url, review, RENEWAL)
    page = landed_on(client, done, f"/admin/subscription/details/?id={subscription_id}")
    assert "Renewal inventory saved" in page
    with appctx() as session:
        assert inventory(session, subscription_id) == {"DV": (10, 4), "OV": (0, 2),
                                                       "EV": (0, 0)}
        assert session.scalar(select(func.count(Transaction.id))) == 1  # only the first charge
        assert events(session, "subscription.renewal_inventory") == 1


@pytest.mark.clock(IN_TERM)
def test_renewal_inventory_confirmed_twice_applies_once(client_as, appctx, subscription_id):
    client = client_as("support")
    url = f"/admin/subscription/renewal/{subscription_id}/"
    review, first = review_then_confirm(client, url, RENEWAL)
    second = confirm_again(client, url, review, RENEWAL)
    assert second.headers["Location"] == first.headers["Location"]
    page = landed_on(client, second, f"/admin/subscription/details/?id={subscription_id}")
    assert "already applied" in page and "nothing was changed" in page
    with appctx() as session:
        assert inventory(session, subscription_id)["DV"] == (10, 4)
        assert events(session, "subscription.renewal_inventory") == 1


@pytest.mark.clock(IN_TERM)
def test_renewal_inventory_changed_by_someone_else_shows_the_new_review(
        client_as, appctx, subscription_id):
    from backoffice import subscriptions

    client = client_as("support")
    url = f"/admin/subscription/renewal/{subscription_id}/"
    review = client.post(url, data={**RENEWAL, "step": "review"})
    with appctx() as session:
        subscriptions.set_renewal_inventory(session.get(Subscription, subscription_id),
                                            {"DV": 7}, actor=None)
        session.commit()
    stale = confirm_again(client, url, review, RENEWAL)
    html = stale.get_data(as_text=True)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert 'data-testid="before-DV">7<' in html  # the new review, to confirm again
    with appctx() as session:
        assert inventory(session, subscription_id)["DV"] == (10, 7)
        assert events(session, "subscription.renewal_inventory") == 1  # the other change
    done = confirm_again(client, url, stale, RENEWAL)
    assert done.status_code == 303
    with appctx() as session:
        assert inventory(session, subscription_id)["DV"] == (10, 4)


@pytest.mark.clock(IN_TERM)
def test_renewal_review_is_stale_after_a_price_change(client_as, appctx, subscription_id):
    client = client_as("support")
    url = f"/admin/subscription/renewal/{subscription_id}/"
    review = client.post(url, data={**RENEWAL, "step": "review"})
    with appctx() as session:
        ov = session.scalar(select(CertificateType).where(CertificateType.code == "OV"))
        update_certificate_type(ov, name=ov.name, yearly_price=15000, active=True, actor=None)
        session.commit()
    stale = confirm_again(client, url, review, RENEWAL)
    html = stale.get_data(as_text=True)
    assert "changed since you reviewed it" in html and "$500.00" in html  # 200 + 2 x 150
    with appctx() as session:
        assert inventory(session, subscription_id)["OV"] == (0, 0)


@pytest.mark.clock(IN_TERM)
@pytest.mark.parametrize(("change", "message"), [
    ({"qty_DV": "a\x00b"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "905970020212414042476352"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "²"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "①"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "-1"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "100001"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "1.5"}, "Enter a whole number from 0 to 100,000."),
    ({"qty_DV": "10", "qty_OV": "0"}, "already set to these quantities"),
    ({"qty_DV": None, "qty_OV": None, "qty_EV": None}, "already set to these quantities"),
])
def test_bad_renewal_inventory_is_explained(client_as, appctx, subscription_id, change,
                                            message):
    client = client_as("support")
    data = {k: v for k, v in {**RENEWAL, **change}.items() if v is not None}
    for step in ("review", "confirm"):
        response = client.post(f"/admin/subscription/renewal/{subscription_id}/",
                               data={**data, "step": step})
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and message in html
        assert 'name="review_token" value' not in html
    with appctx() as session:
        assert inventory(session, subscription_id)["DV"] == (10, 10)
        assert events(session, "subscription.renewal_inventory") == 0


def test_an_expired_subscription_has_no_renewal_inventory_to_set(client_as, appctx,
                                                                 subscription_id):
    with appctx() as session:
        session.get(Subscription, subscription_id).status = SubscriptionStatus.EXPIRED
        session.commit()
    client = client_as("support")
    response = client.post(f"/admin/subscription/renewal/{subscription_id}/",
                           data={**RENEWAL, "step": "review"})
    assert "has expired; it has no next term" in response.get_data(as_text=True)
    with appctx() as session:
        assert events(session, "subscription.renewal_inventory") == 0


# ----------------------------------------------------------------- suspend and enable


@pytest.mark.clock(IN_TERM)
def test_suspend_then_enable_through_their_reviews(client_as, appctx, subscription_id):
    client = client_as("support")
    details = f"/admin/subscription/details/?id={subscription_id}"
    suspend = f"/admin/subscription/suspend/{subscription_id}/"
    review = status_review(client, suspend).get_data(as_text=True)
    assert 'data-testid="status-before">active<' in review
    assert 'data-testid="status-after">suspended<' in review
    assert "takes no inventory additions" in review and "DV 10 / 10" in review
    assert "Suspend subscription" in review
    with appctx() as session:  # the review wrote nothing
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.ACTIVE
    done = confirm_again(client, suspend, client.get(suspend))
    assert f"Subscription #{subscription_id} is suspended." in landed_on(client, done, details)
    refused = client.post(f"/admin/subscription/inventory/{subscription_id}/",
                          data={"step": "review", "qty_DV": "1"})
    assert b"only active subscriptions take additions" in refused.data
    enable = f"/admin/subscription/enable/{subscription_id}/"
    review = status_review(client, enable).get_data(as_text=True)
    assert 'data-testid="status-after">active<' in review and "Auto-renew is off" in review
    done = confirm_again(client, enable, client.get(enable))
    assert "is active again" in landed_on(client, done, details)
    with appctx() as session:
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.ACTIVE
        assert (events(session, "subscription.suspend"),
                events(session, "subscription.enable")) == (1, 1)


@pytest.mark.clock(IN_TERM)
def test_suspend_confirmed_twice_applies_once(client_as, appctx, subscription_id):
    client = client_as("support")
    url = f"/admin/subscription/suspend/{subscription_id}/"
    review = status_review(client, url)
    first, second = confirm_again(client, url, review), confirm_again(client, url, review)
    assert first.status_code == 303
    page = landed_on(client, second, f"/admin/subscription/details/?id={subscription_id}")
    assert "already applied" in page
    with appctx() as session:
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.SUSPENDED
        assert events(session, "subscription.suspend") == 1


@pytest.fixture
def suspended_id(appctx, subscription_id):
    from backoffice import subscriptions

    with appctx() as session:
        subscriptions.suspend_subscription(session.get(Subscription, subscription_id),
                                           actor=None)
        session.commit()
    return subscription_id


@pytest.mark.clock(IN_TERM)
def test_enable_confirmed_twice_applies_once(client_as, appctx, suspended_id):
    client = client_as("support")
    url = f"/admin/subscription/enable/{suspended_id}/"
    review = status_review(client, url)
    first, second = confirm_again(client, url, review), confirm_again(client, url, review)
    assert first.status_code == 303
    assert "already applied" in landed_on(client, second,
                                          f"/admin/subscription/details/?id={suspended_id}")
    with appctx() as session:
        assert session.get(Subscription, suspended_id).status == SubscriptionStatus.ACTIVE
        assert events(session, "subscription.enable") == 1


@pytest.mark.clock(IN_TERM)
def test_suspended_by_someone_else_meanwhile_applies_nothing(client_as, appctx,
                                                            subscription_id):
    from backoffice import subscriptions

    client = client_as("support")
    url = f"/admin/subscription/suspend/{subscription_id}/"
    review = status_review(client, url)
    with appctx() as session:
        subscriptions.suspend_subscription(session.get(Subscription, subscription_id),
                                           actor=None)
        session.commit()
    refused = confirm_again(client, url, review)
    page = landed_on(client, refused, f"/admin/subscription/details/?id={subscription_id}")
    assert "only active subscriptions can be suspended" in page
    with appctx() as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "subscription.suspend")).one()
        assert event.actor is None  # the other change only


@pytest.mark.clock(IN_TERM)
def test_enabled_by_someone_else_meanwhile_applies_nothing(client_as, appctx, suspended_id):
    from backoffice import subscriptions

    client = client_as("support")
    url = f"/admin/subscription/enable/{suspended_id}/"
    review = status_review(client, url)
    with appctx() as session:
        subscriptions.enable_subscription(session.get(Subscription, suspended_id), actor=None)
        session.commit()
    refused = confirm_again(client, url, review)
    assert "only suspended subscriptions can be enabled" in landed_on(
        client, refused, f"/admin/subscription/details/?id={suspended_id}")
    with appctx() as session:
        assert events(session, "subscription.enable") == 1  # the other change


@pytest.mark.clock(IN_TERM)
@pytest.mark.parametrize("verb", ["suspend", "enable"])
def test_a_status_review_is_stale_when_the_subscription_changed(client_as, appctx,
                                                                subscription_id, verb):
    """Suspended and enabled again, its renewal inventory changed: the review is stale."""
    from backoffice import subscriptions

    if verb == "enable":
        with appctx() as session:
            subscriptions.suspend_subscription(session.get(Subscription, subscription_id),
                                               actor=None)
            session.commit()
    client = client_as("support")
    url = f"/admin/subscription/{verb}/{subscription_id}/"
    review = status_review(client, url)
    with appctx() as session:
        subscription = session.get(Subscription, subscription_id)
        subscriptions.set_renewal_inventory(subscription, {"DV": 3}, actor=None)
        session.commit()
        status = subscription.status
    stale = confirm_again(client, url, review)
    html = stale.get_data(as_text=True)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "DV 10 / 3" in html
    with appctx() as session:
        assert session.get(Subscription, subscription_id).status == status
        assert events(session, f"subscription.{verb}") == 0
    assert confirm_again(client, url, stale).status_code == 303


@pytest.mark.clock(datetime(2027, 6, 2, 9, tzinfo=UTC))  # the term ended on 2027-06-01
def test_a_subscription_whose_term_ended_cannot_be_enabled(client_as, appctx, suspended_id):
    client = client_as("support")
    refused = client.get(f"/admin/subscription/enable/{suspended_id}/")
    page = landed_on(client, refused, f"/admin/subscription/details/?id={suspended_id}")
    assert "term ended on 2027-06-01; it cannot be enabled again" in page
    with appctx() as session:
        assert session.get(Subscription, suspended_id).status == SubscriptionStatus.SUSPENDED
        assert events(session, "subscription.enable") == 0


@pytest.mark.clock(IN_TERM)
def test_a_confirm_that_was_not_reviewed_applies_nothing(client_as, appctx, subscription_id):
    client = client_as("support")
    suspend = f"/admin/subscription/suspend/{subscription_id}/"
    enable = f"/admin/subscription/enable/{subscription_id}/"
    for bad in ({"step": "apply"}, {"step": "confirm", "review_token": "a\x00b"}):
        response = client.post(suspend, data=bad)  # not a form this page sends: back to it
        assert response.status_code == 303 and response.headers["Location"].endswith(suspend)
    for token in ("", "forged", "9" * 5000):  # reviewed again, to confirm
        response = client.post(suspend, data={"step": "confirm", "review_token": token})
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "review has expired" in html
    # a token made for another page (the suspend review, posted to enable) is refused too
    token = review_token_from(client.get(suspend).get_data(as_text=True))
    response = client.post(enable, data={"step": "confirm", "review_token": token})
    assert "only suspended subscriptions can be enabled" in landed_on(
        client, response, f"/admin/subscription/details/?id={subscription_id}")
    with appctx() as session:
        assert session.get(Subscription, subscription_id).status == SubscriptionStatus.ACTIVE
        assert events(session, "subscription.suspend") == 0


@pytest.mark.parametrize("path", ["suspend", "enable", "renewal", "inventory"])
@pytest.mark.parametrize("ident", ["905970020212414042476352", "2147483648", "0", "x"])
def test_an_unknown_or_huge_subscription_id_is_404(client_as, path, ident):
    client = client_as("support")
    assert client.get(f"/admin/subscription/{path}/{ident}/").status_code == 404
    assert client.post(f"/admin/subscription/{path}/{ident}/",
                       data={"step": "confirm"}).status_code == 404


# ----------------------------------------------------------------- resellers


@pytest.fixture
def reseller_id(appctx, product_id):
    """A reseller with one customer who has one active, auto-renewing subscription."""
    from backoffice import subscriptions

    with appctx() as session:
        reseller = factories.reseller()
        customer = factories.customer(reseller=reseller)
        subscriptions.add_subscription(customer, factories_product(session, product_id),
                                       term_months=12, inventory={"DV": 1}, auto_renew=True,
                                       actor=None)
        session.commit()
        return reseller.id


def reseller_status(reseller_id) -> tuple[ResellerStatus, str]:
    reseller = db.session.get(Reseller, reseller_id)
    return reseller.status, reseller.status_reason


def test_disable_shows_the_impact_then_a_review_then_disables(client_as, appctx,
                                                             reseller_id, product_id):
    admin = client_as("admin")
    url = f"/admin/reseller/disable/{reseller_id}/"
    preview = admin.get(url).get_data(as_text=True)
    assert "Auto-renewals that will stop" in preview and "Acme Ltd" in preview
    assert 'name="reason"' in preview and 'name="review_token"' not in preview
    review, done = review_then_confirm(admin, url, {"reason": "Unpaid invoices"})
    html = review.get_data(as_text=True)
    assert 'data-testid="status-after">disabled<' in html and "Unpaid invoices" in html
    assert "Auto-renewals that will stop" in html and "Acme Ltd" in html
    assert "Disable reseller" in html
    page = landed_on(admin, done, f"/admin/reseller/details/?id={reseller_id}")
    assert "CertHub Partners is disabled." in page and "Unpaid invoices" in page
    with appctx() as session:
        assert reseller_status(reseller_id) == (ResellerStatus.DISABLED, "Unpaid invoices")
        assert events(session, "reseller.disable") == 1
        customer_id = session.scalar(select(Customer.id))
    refused = admin.post(f"/admin/customer/subscribe/{customer_id}/",
                         data={"product_id": str(product_id), "term_months": "12",
                               "qty_DV": "1", "step": "review"})
    assert b"which is disabled" in refused.data


def test_disable_confirmed_twice_applies_once(client_as, appctx, reseller_id):
    admin = client_as("admin")
    url = f"/admin/reseller/disable/{reseller_id}/"
    data = {"reason": "Unpaid invoices"}
    review, first = review_then_confirm(admin, url, data)
    second = confirm_again(admin, url, review, data)
    assert first.status_code == 303
    assert "already applied" in landed_on(admin, second,
                                          f"/admin/reseller/details/?id={reseller_id}")
    with appctx() as session:
        assert events(session, "reseller.disable") == 1


@pytest.mark.parametrize(("reason", "message"), [
    ("", "Disabling a reseller needs a reason."),
    ("   ", "Disabling a reseller needs a reason."),
    (None, "Disabling a reseller needs a reason."),
    ("a\x00b", "Remove the control characters (such as NUL) from this field."),
    ("x" * 501, "Field cannot be longer than 500 characters."),
])
def test_disable_needs_a_reason_of_at_most_500_characters(client_as, appctx, reseller_id,
                                                          reason, message):
    admin = client_as("admin")
    data = {} if reason is None else {"reason": reason}
    for step in ("review", "confirm"):
        response = admin.post(f"/admin/reseller/disable/{reseller_id}/",
                              data={**data, "step": step})
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and message in html
        assert 'name="review_token" value' not in html
    with appctx() as session:
        assert reseller_status(reseller_id) == (ResellerStatus.ACTIVE, "")
        assert events(session, "reseller.disable") == 0
    review = admin.post(f"/admin/reseller/disable/{reseller_id}/",
                        data={"reason": "x" * 500, "step": "review"})
    assert 'name="review_token" value' in review.get_data(as_text=True)


def test_a_confirm_with_another_reason_than_reviewed_applies_nothing(client_as, appctx,
                                                                     reseller_id):
    admin = client_as("admin")
    url = f"/admin/reseller/disable/{reseller_id}/"
    review = admin.post(url, data={"reason": "Unpaid invoices", "step": "review"})
    other = confirm_again(admin, url, review, {"reason": "Something else"})
    html = other.get_data(as_text=True)
    assert other.status_code == 200 and "review has expired or was not made" in html
    assert "Something else" in html  # reviewed again, with what was sent
    with appctx():
        assert reseller_status(reseller_id) == (ResellerStatus.ACTIVE, "")


def test_disable_review_is_stale_when_the_impact_changed(client_as, appctx, reseller_id):
    admin = client_as("admin")
    url = f"/admin/reseller/disable/{reseller_id}/"
    data = {"reason": "Unpaid invoices"}
    review = admin.post(url, data={**data, "step": "review"})
    with appctx() as session:
        factories.customer("Globex", reseller=session.get(Reseller, reseller_id))
        session.commit()
    stale = confirm_again(admin, url, review, data)
    html = stale.get_data(as_text=True)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    with appctx() as session:
        assert reseller_status(reseller_id)[0] == ResellerStatus.ACTIVE
    assert confirm_again(admin, url, stale, data).status_code == 303
    with appctx() as session:
        assert reseller_status(reseller_id)[0] == ResellerStatus.DISABLED


def test_disabled_by_someone_else_meanwhile_applies_nothing(client_as, appctx, reseller_id):
    from backoffice import partners

    admin = client_as("admin")
    url = f"/admin/reseller/disable/{reseller_id}/"
    data = {"reason": "Unpaid invoices"}
    review = admin.post(url, data={**data, "step": "review"})
    with appctx() as session:
        partners.disable_reseller(session.get(Reseller, reseller_id), reason="Contract ended",
                                  actor=None)
        session.commit()
    refused = confirm_again(admin, url, review, data)
    assert refused.status_code == 200 and "is already disabled" in refused.get_data(
        as_text=True)
    with appctx() as session:
        assert reseller_status(reseller_id) == (ResellerStatus.DISABLED, "Contract ended")
        assert events(session, "reseller.disable") == 1


@pytest.fixture
def disabled_reseller_id(appctx, reseller_id):
    from backoffice import partners

    with appctx() as session:
        partners.disable_reseller(session.get(Reseller, reseller_id), reason="Unpaid invoices",
                                  actor=None)
        session.commit()
    return reseller_id


def test_enable_reseller_review_then_confirm(client_as, appctx, disabled_reseller_id):
    admin = client_as("admin")
    url = f"/admin/reseller/enable/{disabled_reseller_id}/"
    html = status_review(admin, url).get_data(as_text=True)
    assert 'data-testid="status-before">disabled<' in html and "Unpaid invoices" in html
    assert "renew again" in html and "Enable reseller" in html
    with appctx():
        assert reseller_status(disabled_reseller_id)[0] == ResellerStatus.DISABLED
    done = confirm_again(admin, url, admin.get(url))
    assert "is active again" in landed_on(admin, done,
                                          f"/admin/reseller/details/?id={disabled_reseller_id}")
    with appctx() as session:
        assert reseller_status(disabled_reseller_id) == (ResellerStatus.ACTIVE, "")
        assert events(session, "reseller.enable") == 1


def test_enable_reseller_confirmed_twice_applies_once(client_as, appctx,
                                                      disabled_reseller_id):
    admin = client_as("admin")
    url = f"/admin/reseller/enable/{disabled_reseller_id}/"
    review = status_review(admin, url)
    first, second = confirm_again(admin, url, review), confirm_again(admin, url, review)
    assert first.status_code == 303
    assert "already applied" in landed_on(admin, second,
                                          f"/admin/reseller/details/?id={disabled_reseller_id}")
    with appctx() as session:
        assert events(session, "reseller.enable") == 1


def test_enable_review_is_stale_when_the_reseller_was_disabled_again(client_as, appctx,
                                                                    disabled_reseller_id):
    from backoffice import partners

    admin = client_as("admin")
    url = f"/admin/reseller/enable/{disabled_reseller_id}/"
    review = status_review(admin, url)
    with appctx() as session:
        reseller = session.get(Reseller, disabled_reseller_id)
        partners.enable_reseller(reseller, actor=None)
        partners.disable_reseller(reseller, reason="Fraud check", actor=None)
        session.commit()
    stale = confirm_again(admin, url, review)
    html = stale.get_data(as_text=True)
    assert stale.status_code == 200 and "changed since you reviewed it" in html
    assert "Fraud check" in html
    with appctx() as session:
        assert reseller_status(disabled_reseller_id) == (ResellerStatus.DISABLED,
                                                         "Fraud check")
        assert events(session, "reseller.enable") == 1  # the other change


def test_enabled_by_someone_else_meanwhile_the_enable_applies_nothing(client_as, appctx,
                                                                      disabled_reseller_id):
    from backoffice import partners

    admin = client_as("admin")
    url = f"/admin/reseller/enable/{disabled_reseller_id}/"
    review = status_review(admin, url)
    with appctx() as session:
        partners.enable_reseller(session.get(Reseller, disabled_reseller_id), actor=None)
        session.commit()
    refused = confirm_again(admin, url, review)
    assert "is already active" in landed_on(
        admin, refused, f"/admin/reseller/details/?id={disabled_reseller_id}")
    with appctx() as session:
        assert events(session, "reseller.enable") == 1


@pytest.mark.parametrize("role", ["support", "finance"])
def test_only_admins_disable_and_enable_resellers(client_as, appctx, reseller_id, role):
    client = client_as(role)
    with appctx():
        before = counts()
    for path in ("disable", "enable"):
        url = f"/admin/reseller/{path}/{reseller_id}/"
        assert client.get(url).status_code == 403
        for step in ("review", "confirm"):
            assert client.post(url, data={"reason": "x", "step": step}).status_code == 403
    with appctx():
        assert counts() == before
        assert reseller_status(reseller_id) == (ResellerStatus.ACTIVE, "")


@pytest.mark.parametrize("path", ["disable", "enable"])
@pytest.mark.parametrize("ident", ["905970020212414042476352", "2147483648", "999"])
def test_an_unknown_or_huge_reseller_id_is_404(client_as, path, ident):
    client = client_as("admin")
    assert client.get(f"/admin/reseller/{path}/{ident}/").status_code == 404
    assert client.post(f"/admin/reseller/{path}/{ident}/",
                       data={"reason": "x", "step": "confirm"}).status_code == 404


# ----------------------------------------------------------------- the first two reviews


@pytest.mark.clock(datetime(2026, 11, 22, 10, tzinfo=UTC))
def test_subscription_confirmed_twice_is_added_and_charged_once(client_as, appctx,
                                                                customer_id, product_id):
    client = client_as("support")
    url = f"/admin/customer/subscribe/{customer_id}/"
    data = subscribe_form(product_id)
    review, first = review_then_confirm(client, url, data)
    second = confirm_again(client, url, review, data)
    assert second.headers["Location"] == first.headers["Location"]
    assert "already applied" in client.get(second.headers["Location"]).get_data(as_text=True)
    with appctx() as session:
        assert counts()[2:4] == (1, 1)
        assert events(session, "subscription.create") == 1


@pytest.mark.clock(datetime(2027, 1, 15, 9, tzinfo=UTC))
def test_inventory_confirmed_twice_is_added_and_charged_once(client_as, appctx,
                                                             subscription_id):
    client = client_as("support")
    url = f"/admin/subscription/inventory/{subscription_id}/"
    review, first = review_then_confirm(client, url, {"qty_OV": "3"})
    second = confirm_again(client, url, review, {"qty_OV": "3"})
    assert "already applied" in landed_on(client, second,
                                          f"/admin/subscription/details/?id={subscription_id}")
    with appctx() as session:
        assert inventory(session, subscription_id)["OV"] == (3, 0)
        assert events(session, "subscription.inventory_add") == 1
        assert session.scalar(select(func.count(Transaction.id))) == 2


# --------------------------------------------------------------------------- partner forms

CONTROL_MESSAGE = "Remove the control characters (such as NUL) from this field."
#: every text field of the customer and reseller forms, with its column's length
TEXT_LIMITS = {"company_name": 200, "address1": 200, "address2": 200, "address3": 200,
               "city": 100, "postal_code": 20, "state": 100}


def test_every_text_field_is_limited_to_its_column_length(app):
    from wtforms.validators import Length

    from backoffice.views.partners import AddressForm, CustomerCreateForm, CustomerEditForm

    def limits(form_class) -> dict[str, int]:
        with app.test_request_context():
            form = form_class(meta={"csrf": False})
        return {field.name: next(v.max for v in field.validators if isinstance(v, Length))
                for field in form if field.type in ("StringField", "EmailField")}

    columns = {name: Customer.__table__.c[name].type.length for name in TEXT_LIMITS}
    assert columns == TEXT_LIMITS
    assert {name: Reseller.__table__.c[name].type.length for name in TEXT_LIMITS} == columns
    assert limits(AddressForm) == columns
    email = Customer.__table__.c["customer_admin_email"].type.length
    for form_class in (CustomerCreateForm, CustomerEditForm):
        assert limits(form_class) == {**columns, "customer_admin_email": email}


def customer_form_cases():
    for name, limit in TEXT_LIMITS.items():
        yield pytest.param({name: "a\x00b"}, CONTROL_MESSAGE, id=f"{name}-nul")
        yield pytest.param({name: "x" * (limit + 1)},
                           f"Field cannot be longer than {limit} characters.",
                           id=f"{name}-too-long")
    for country in ("XX", "ie", "IRL", "a\x00b", "9" * 5000):
        yield pytest.param({"country": country}, "Not a valid choice", id=f"country-{country[:4]}")
    yield pytest.param({"country": ""}, "Choose a country.", id="country-missing")
    yield pytest.param({"country": None}, "Choose a country.", id="country-absent")
    for reseller in ("999", "905970020212414042476352", "-1", "abc", "", "a\x00b", None):
        yield pytest.param({"reseller": reseller}, "Choose a reseller from the list",
                           id=f"reseller-{reseller!r:.10}")
    yield pytest.param({"administrative_responsibility": "boss"}, "Not a valid choice",
                       id="responsibility")
    yield pytest.param({"customer_admin_email": "a" * 243 + "@example.com"},
                       "Field cannot be longer than 254 characters.", id="email-too-long")
    yield pytest.param({"customer_admin_email": "it\x00@bluefin.example"}, CONTROL_MESSAGE,
                       id="email-nul")


@pytest.mark.parametrize(("change", "message"), [
    *customer_form_cases(),
    *(pytest.param({"currency": currency}, "Not a valid choice", id=f"currency-{currency[:4]}")
      for currency in ("XYZ", "usd", "JPY", "a\x00b", "9" * 5000)),
])
def test_bad_input_on_the_new_customer_form_is_a_message(client_as, appctx, change, message):
    client = client_as("support")
    with appctx():
        before = counts()
    data = {k: v for k, v in {**CUSTOMER_FORM, **change}.items() if v is not None}
    response = client.post("/admin/customer/new/", data=data)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with appctx():
        assert counts() == before


def test_a_customer_with_every_field_at_its_longest_is_saved(client_as, appctx):
    client = client_as("support")
    longest = {name: "x" * limit for name, limit in TEXT_LIMITS.items()}
    email = "a" * 242 + "@example.com"  # 254 characters
    response = client.post("/admin/customer/new/",
                           data={**CUSTOMER_FORM, **longest, "customer_admin_email": email})
    assert response.status_code == 302
    with appctx() as session:
        customer = session.scalar(select(Customer))
        assert {name: len(getattr(customer, name)) for name in TEXT_LIMITS} == TEXT_LIMITS
        assert customer.customer_admin_email == email


@pytest.mark.parametrize(("change", "message"), [
    # an absent country keeps the customer's own (WTForms fills the form from the row)
    case for case in customer_form_cases() if case.id not in ("responsibility",
                                                              "country-absent")])
def test_bad_input_on_the_customer_edit_form_is_a_message(client_as, appctx, customer_id,
                                                          change, message):
    client = client_as("support")
    with appctx():
        before = counts()
    form = {**CUSTOMER_FORM, "city": "Hamburg", "customer_admin_email": ""}
    form.pop("administrative_responsibility")
    data = {k: v for k, v in {**form, **change}.items() if v is not None}
    response = client.post(f"/admin/customer/edit/?id={customer_id}", data=data)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with appctx() as session:
        assert counts() == before
        assert session.get(Customer, customer_id).city == "Springfield"


def test_a_customer_cannot_be_moved_to_a_disabled_reseller(client_as, appctx, customer_id):
    from backoffice import partners

    with appctx() as session:
        reseller = factories.reseller("Closed Partner")
        partners.disable_reseller(reseller, reason="Closed", actor=None)
        session.commit()
        reseller_id = reseller.id
    client = client_as("support")
    form = {**CUSTOMER_FORM, "reseller": str(reseller_id), "customer_admin_email": ""}
    form.pop("administrative_responsibility")
    response = client.post(f"/admin/customer/edit/?id={customer_id}", data=form,
                           follow_redirects=True)
    assert "Closed Partner is disabled; it cannot take new customers." in response.get_data(
        as_text=True)
    with appctx() as session:
        assert session.get(Customer, customer_id).reseller_id is None


def reseller_form_cases():
    for name, limit in TEXT_LIMITS.items():
        yield pytest.param({name: "a\x00b"}, CONTROL_MESSAGE, id=f"{name}-nul")
        yield pytest.param({name: "x" * (limit + 1)},
                           f"Field cannot be longer than {limit} characters.",
                           id=f"{name}-too-long")
    yield pytest.param({"country": "XX"}, "Not a valid choice", id="country-unknown")
    yield pytest.param({"country": "9" * 5000}, "Not a valid choice", id="country-huge")
    yield pytest.param({"company_name": "   "}, "This field is required", id="blank-name")


@pytest.mark.parametrize(("change", "message"), list(reseller_form_cases()))
def test_bad_input_on_the_reseller_forms_is_a_message(client_as, appctx, change, message):
    with appctx() as session:
        reseller_id = factories.reseller().id
        session.commit()
    admin = client_as("admin")
    with appctx():
        before = counts()
    for url in ("/admin/reseller/new/", f"/admin/reseller/edit/?id={reseller_id}"):
        response = admin.post(url, data={**RESELLER_FORM, **change})
        assert response.status_code == 200
        assert message in response.get_data(as_text=True)
    with appctx() as session:
        assert counts() == before
        assert session.scalar(select(func.count(Reseller.id))) == 1
        assert session.get(Reseller, reseller_id).city == "Springfield"


@pytest.mark.parametrize("view", ["customer", "reseller"])
@pytest.mark.parametrize("ident", ["905970020212414042476352", "2147483648", "abc", ""])
def test_an_unknown_or_huge_id_on_the_edit_and_details_pages_is_no_error(client_as, view,
                                                                         ident):
    client = client_as("admin")
    for page in ("edit", "details"):
        response = client.get(f"/admin/{view}/{page}/?id={ident}")
        assert response.status_code == 303  # back to the list, with a message
        assert urlsplit(response.headers["Location"]).path == f"/admin/{view}/"
    response = client.post(f"/admin/{view}/edit/?id={ident}", data=RESELLER_FORM,
                           follow_redirects=True)
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "is not the id of a record" in text or "Choose a record from the list" in text


def test_a_disabled_resellers_subscription_offers_no_additions(client_as, appctx,
                                                               disabled_reseller_id):
    with appctx() as session:
        subscription = session.scalar(select(Subscription).join(Customer).where(
            Customer.reseller_id == disabled_reseller_id))
        sid, reseller_name = subscription.id, subscription.customer.reseller.company_name
    page = client_as("support").get(f"/admin/subscription/details/?id={sid}").get_data(
        as_text=True)
    assert f"/admin/subscription/inventory/{sid}/" not in page
    assert "Add inventory" not in page
    assert f"No additions while its reseller {reseller_name} is disabled" in page


def test_an_active_resellers_subscription_offers_additions(client_as, appctx, reseller_id):
    with appctx() as session:
        sid = session.scalar(select(Subscription.id).join(Customer).where(
            Customer.reseller_id == reseller_id))
    page = client_as("support").get(f"/admin/subscription/details/?id={sid}").get_data(
        as_text=True)
    assert "Add inventory" in page and "No additions while" not in page


def test_create_lands_on_the_new_customer_and_save_on_the_edited_one(client_as, appctx):
    client = client_as("support")
    created = client.post("/admin/customer/new/", data=CUSTOMER_FORM)
    with appctx() as session:
        customer_id = session.scalar(select(Customer.id))
    assert created.headers["Location"].endswith(f"/admin/customer/{customer_id}/")
    page = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "Bluefin Hosting" in page and "Add subscription" in page
    saved = client.post(f"/admin/customer/edit/?id={customer_id}",
                        data={**CUSTOMER_FORM, "city": "Cork"})
    assert saved.headers["Location"].endswith(f"/admin/customer/{customer_id}/")
    with appctx() as session:
        assert session.get(Customer, customer_id).city == "Cork"


def test_labels_and_search_placeholder_are_written_for_people(client_as):
    client = client_as("support")
    listing = client.get("/admin/customer/").get_data(as_text=True)
    assert 'placeholder="Search by company, customer admin&#39;s email, city"' in listing
    assert "customer_admin_email," not in listing
    details = client.get("/admin/reseller/").get_data(as_text=True)
    assert "Address1" not in details
    form = client.get("/admin/customer/new/").get_data(as_text=True)
    # the admin email is asked for only for customer-administered customers
    assert re.search(r'<input[^>]*data-shown-when="administrative_responsibility=customer"'
                     r'[^>]*id="customer_admin_email"|<input[^>]*id="customer_admin_email"'
                     r'[^>]*data-shown-when="administrative_responsibility=customer"', form)
    assert 'ul class="form-control" id="administrative_responsibility"' in form
