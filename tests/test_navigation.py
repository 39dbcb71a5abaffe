"""Entity navigation: record tabs at their own addresses, breadcrumbs on every record and
operation page, names that link to their records, and Back / Cancel that return where the
staff member came from, never to another site."""

from __future__ import annotations

import html as htmllib
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from backoffice import accounts
from backoffice.extensions import db
from backoffice.models import Customer, Profile, StaffUser, Subscription
from backoffice.views.navigation import safe_return
from tests import factories
from tests.pages import console_pages, more_demo_data
from tests.test_accounts import billing

EVIL = ["//evil.example", "//evil.example/admin/", "https://evil.example/admin/",
        "http://evil.example", "javascript:alert(1)", "JavaScript:alert(1)",
        " javascript:alert(1)", "/\\evil.example", "\\\\evil.example", "/login",
        "admin/customer/", "data:text/html,hi", "/admin\x00/", "https:/evil.example"]


@pytest.fixture
def world(appctx):
    """A reseller's customer with one subscription, a profile with an order; ids."""
    with appctx() as session:
        product = factories.catalog()
        reseller = factories.reseller("CertHub Partners")
        customer = factories.customer("Acme Ltd", reseller=reseller)
        subscription = factories.subscribe(customer, product, {"DV": 2})
        profile = accounts.create_profile(email="ann@acme.example.com", name="Ann Main")
        order = accounts.place_order(profile, items={"DV": 1}, billing=billing(profile))
        session.commit()
        return {"customer": customer.id, "subscription": subscription.id,
                "reseller": reseller.id, "profile": profile.id, "order": order.id,
                "order_number": order.number, "product": product.id,
                "charge": factories.charge_of(subscription).id}


def crumbs(page: str) -> list[tuple[str, str | None]]:
    """The breadcrumb of a page: (label, address or None), in order."""
    match = re.search(r'<nav aria-label="breadcrumb"[^>]*>(.*?)</nav>', page, re.S)
    assert match, "no breadcrumb on the page"
    items = re.findall(r'<li class="breadcrumb-item[^"]*"([^>]*)>(.*?)</li>', match.group(1),
                       re.S)
    trail = []
    for attributes, inner in items:
        link = re.fullmatch(r'\s*<a href="([^"]*)">(.*)</a>\s*', inner, re.S)
        if link:
            trail.append((htmllib.unescape(link.group(2)), htmllib.unescape(link.group(1))))
        else:
            assert 'aria-current="page"' in attributes or trail, inner
            trail.append((htmllib.unescape(inner.strip()), None))
    assert 'aria-current="page"' in items[-1][0], "the last item is the page itself"
    return trail


def cancel_of(page: str, label: str = "Cancel") -> str:
    match = re.search(rf'<a class="btn[^"]*" href="([^"]*)">{label}</a>', page)
    assert match, f"no {label} on the page"
    return htmllib.unescape(match.group(1))


def text(response) -> str:
    return response.get_data(as_text=True)


# --------------------------------------------------------------------------- tabs


def test_each_customer_tab_is_its_own_address(client_as, world):
    client = client_as("support")
    cid = world["customer"]
    for address, tab in ((f"/admin/customer/{cid}/", "details"),
                         (f"/admin/customer/{cid}/subscriptions", "subscriptions"),
                         (f"/admin/customer/{cid}/transactions", "transactions")):
        response = client.get(address)
        assert response.status_code == 200, address
        page = text(response)
        assert f'data-testid="tab-{tab}"' in page
        tabs = page.split('data-testid="record-tabs"', 1)[1].split("</ul>", 1)[0]
        # plain links, the shown one marked as the current page
        assert "data-toggle" not in tabs and 'role="tab"' not in tabs
        current = re.findall(r'<a class="nav-link active" href="([^"]+)" aria-current="page">',
                             tabs)
        assert current == [address]
        assert f'href="/admin/customer/{cid}/subscriptions"' in tabs
        assert f'href="/admin/customer/{cid}/transactions"' in tabs
        assert f'href="/admin/customer/{cid}/"' in tabs
    # the edit link names the record, though the address has no ?id=
    page = text(client.get(f"/admin/customer/{cid}/transactions"))
    assert f"/admin/customer/edit/?id={cid}&amp;url=/admin/customer/" in page


@pytest.mark.parametrize("address", [
    "/admin/customer/{cid}/orders", "/admin/customer/{cid}/details",
    "/admin/customer/{cid}/Subscriptions", "/admin/customer/999999/",
    "/admin/customer/99999999999/", "/admin/customer/999999/subscriptions"])
def test_an_unknown_tab_or_customer_is_not_found(client_as, world, address):
    response = client_as("support").get(address.format(cid=world["customer"]))
    assert response.status_code == 404


def test_the_old_address_moves_to_the_tab(client_as, world):
    client = client_as("support")
    cid = world["customer"]
    for query, location in (
            ({"id": cid}, f"/admin/customer/{cid}/"),
            ({"id": cid, "tab": "subscriptions"}, f"/admin/customer/{cid}/subscriptions"),
            ({"id": cid, "tab": "transactions", "transactions_after": "abc"},
             f"/admin/customer/{cid}/transactions?transactions_after=abc"),
            ({"id": cid, "tab": "bogus"}, f"/admin/customer/{cid}/")):
        response = client.get("/admin/customer/details/", query_string=query)
        assert response.status_code == 302, query
        assert response.headers["Location"] == location
        assert client.get(location).status_code == 200
    # an id that names no customer still goes back to the list with a message
    for bad in ("999999", "abc", ""):
        response = client.get("/admin/customer/details/", query_string={"id": bad})
        assert response.status_code in (302, 303)
        assert urlsplit(response.headers["Location"]).path == "/admin/customer/"


def test_pagers_keep_the_tab_and_save_lands_on_the_record(client_as, appctx, world):
    with appctx() as session:
        customer = session.get(Customer, world["customer"])
        product = session.get(Subscription, world["subscription"]).product
        for _ in range(50):
            factories.subscribe(customer, product, {"DV": 1})
        session.commit()
    client = client_as("support")
    cid = world["customer"]
    page = text(client.get(f"/admin/customer/{cid}/subscriptions"))
    older = re.search(r'href="([^"]+)" data-testid="subscriptions-next"', page)
    assert older and htmllib.unescape(older.group(1)).startswith(
        f"/admin/customer/{cid}/subscriptions?subscriptions_after=")
    second = text(client.get(htmllib.unescape(older.group(1))))
    assert 'data-testid="tab-subscriptions"' in second
    assert 'data-testid="subscriptions-prev"' in second


# --------------------------------------------------------------------------- breadcrumbs


def test_record_pages_show_their_trail(client_as, world):
    client = client_as("admin")
    cid, sid = world["customer"], world["subscription"]
    customer = [("Customers", "/admin/customer/"), ("Acme Ltd", f"/admin/customer/{cid}/")]
    assert crumbs(text(client.get(f"/admin/customer/{cid}/subscriptions"))) == [
        customer[0], ("Acme Ltd", None)]
    assert crumbs(text(client.get(f"/admin/subscription/details/?id={sid}"))) == [
        *customer, (f"Subscription #{sid}", None)]
    assert crumbs(text(client.get(f"/admin/transaction/details/?id={world['charge']}"))) == [
        *customer, ("Transactions & Refunds", f"/admin/billing/customer/{cid}/transactions"),
        (f"Transaction T{world['charge']}", None)]
    assert crumbs(text(client.get(f"/admin/reseller/details/?id={world['reseller']}"))) == [
        ("Resellers", "/admin/reseller/"), ("CertHub Partners", None)]
    assert crumbs(text(client.get(f"/admin/profile/details/?id={world['profile']}"))) == [
        ("Profiles", "/admin/profile/"), ("ann@acme.example.com", None)]
    assert crumbs(text(client.get(f"/admin/order/details/?id={world['order']}"))) == [
        ("Orders", "/admin/order/"), (f"Order {world['order_number']}", None)]
    assert crumbs(text(client.get(f"/admin/customer/edit/?id={cid}"))) == [
        *customer, ("Edit", None)]


def test_operation_pages_show_the_trail_down_to_the_operation(client_as, appctx, world):
    client = client_as("admin")
    cid, sid = world["customer"], world["subscription"]
    customer = [("Customers", "/admin/customer/"), ("Acme Ltd", f"/admin/customer/{cid}/")]
    subscription = [*customer, (f"Subscription #{sid}", f"/admin/subscription/details/?id={sid}")]
    for address, trail in (
            (f"/admin/subscription/inventory/{sid}/", [*subscription, ("Add inventory", None)]),
            (f"/admin/subscription/renewal/{sid}/",
             [*subscription, ("Set renewal inventory", None)]),
            (f"/admin/subscription/suspend/{sid}/", [*subscription, ("Suspend", None)]),
            (f"/admin/customer/subscribe/{cid}/", [*customer, ("Add subscription", None)]),
            (f"/admin/billing/customer/{cid}/refund?transaction={world['charge']}",
             [*customer, ("Transactions & Refunds",
                          f"/admin/billing/customer/{cid}/transactions"),
              ("Process refund", None)]),
            (f"/admin/reseller/disable/{world['reseller']}/",
             [("Resellers", "/admin/reseller/"),
              ("CertHub Partners", f"/admin/reseller/details/?id={world['reseller']}"),
              ("Disable", None)]),
            (f"/admin/profile/credit/{world['profile']}/",
             [("Profiles", "/admin/profile/"),
              ("ann@acme.example.com", f"/admin/profile/details/?id={world['profile']}"),
              ("Adjust credit", None)])):
        response = client.get(address)
        assert response.status_code == 200, address
        assert crumbs(text(response)) == trail, address
    # the review of an operation keeps its trail
    review = client.post(f"/admin/subscription/inventory/{sid}/",
                         data={"step": "review", "qty_DV": "1"})
    assert crumbs(text(review))[-1] == ("Add inventory", None)
    with appctx():
        other = db.session.scalar(select(StaffUser.id).where(StaffUser.email != "admin@staff.test"))
    if other is not None:
        reset = text(client.get(f"/admin/staffuser/reset-link/{other}/"))
        assert crumbs(reset)[0] == ("Staff", "/admin/staffuser/")


#: address parts that name a record: a page with one is a record's or an operation's
RECORD_ARGUMENTS = {"customer_id", "invoice_id", "request_id", "account_id", "profile_id",
                    "reseller_id", "subscription_id", "user_id", "id"}


def test_every_record_and_operation_page_has_a_breadcrumb(app, demo, appctx, client_as):
    client = client_as("admin")
    with appctx():
        more_demo_data()
        pages = console_pages(app)
    adapter = app.url_map.bind("localhost")
    checked = set()
    for address in pages:
        path, _, query = address.partition("?")
        endpoint, arguments = adapter.match(path)
        names = set(arguments) | ({"id"} if "id=" in query else set())
        if not names & RECORD_ARGUMENTS or path.endswith((".pdf", ".csv")):
            continue
        response = client.get(address, follow_redirects=True)
        assert response.status_code == 200, address
        assert crumbs(text(response)), address
        checked.add(endpoint)
    for endpoint in ("customer.details_view", "customer.subscribe_view",
                     "subscription.details_view", "subscription.inventory_view",
                     "subscription.renewal_view", "reseller.details_view",
                     "profile.details_view", "profile.upgrade_view", "profile.link_view",
                     "profile.credit_view", "organization.details_view",
                     "order.details_view", "invoice.details_view", "billing.invoice",
                     "transaction.details_view", "staffuser.details_view",
                     "staffuser.reset_link_view", "billing.refund",
                     "billing.customer_transactions", "corporaterequest.details_view",
                     "legacyaccount.transfer_view", "sessions.staff_member"):
        assert endpoint in checked, endpoint
    assert len(checked) > 40


# --------------------------------------------------------------------------- names link


def link_to_record(page: str, label: str) -> str:
    match = re.search(rf'<a href="([^"]+)">{re.escape(label)}</a>', page)
    assert match, f"{label} is not a link"
    return htmllib.unescape(match.group(1))


def test_list_names_link_to_their_records(client_as, appctx, world):
    client = client_as("admin")
    cid = world["customer"]
    page = text(client.get("/admin/customer/", query_string={"search": "Acme"}))
    assert link_to_record(page, "Acme Ltd") == (
        f"/admin/customer/{cid}/?url=/admin/customer/?search%3DAcme")
    # the related reseller links to its record too
    assert link_to_record(page, "CertHub Partners").startswith(
        f"/admin/reseller/details/?id={world['reseller']}")
    page = text(client.get("/admin/reseller/"))
    assert link_to_record(page, "CertHub Partners").startswith(
        f"/admin/reseller/details/?id={world['reseller']}&url=")
    page = text(client.get("/admin/profile/"))
    for label in ("ann@acme.example.com", "Ann Main"):
        assert link_to_record(page, label).startswith(
            f"/admin/profile/details/?id={world['profile']}&url=")
    page = text(client.get("/admin/order/"))
    assert link_to_record(page, world["order_number"]).startswith(
        f"/admin/order/details/?id={world['order']}&url=")
    page = text(client.get("/admin/staffuser/"))
    with appctx():
        admin_id = db.session.scalar(select(StaffUser.id).where(
            StaffUser.email == "admin@staff.test"))
    assert link_to_record(page, "admin@staff.test").startswith(
        f"/admin/staffuser/details/?id={admin_id}&url=")
    page = text(client.get("/admin/transaction/"))
    assert link_to_record(page, "Acme Ltd") == f"/admin/customer/{cid}/"
    assert link_to_record(page, str(world["charge"])).startswith(
        f"/admin/transaction/details/?id={world['charge']}&url=")
    page = text(client.get("/admin/subscription/"))
    assert "/admin/subscriptionproduct/details/?id=" in page
    # on the record's own page its name is plain text
    page = text(client.get(f"/admin/profile/details/?id={world['profile']}"))
    details = page.split('class="table table-hover', 1)[1].split("</table>", 1)[0]
    assert "ann@acme.example.com" in details and "</a>" not in details
    with appctx():
        organization = accounts.upgrade_to_corporate(
            db.session.get(Profile, world["profile"]), organization_name="ACME", actor=None)
        db.session.commit()
        organization_id = organization.id
    page = text(client.get("/admin/organization/"))
    assert link_to_record(page, "ACME").startswith(
        f"/admin/organization/details/?id={organization_id}&url=")


# --------------------------------------------------------------------------- back and cancel


def test_cancel_returns_where_the_staff_member_came_from(client_as, world):
    client = client_as("admin")
    sid, cid = world["subscription"], world["customer"]
    inventory = f"/admin/subscription/inventory/{sid}/"
    record = f"/admin/subscription/details/?id={sid}"
    # no clue where from: the record's page
    assert cancel_of(text(client.get(inventory))) == record
    # from a console page (the browser's Referer), or an explicit url=
    came = f"/admin/customer/{cid}/subscriptions"
    page = text(client.get(inventory, headers={"Referer": f"http://localhost{came}"}))
    assert cancel_of(page) == came
    assert f'<input type="hidden" name="url" value="{came}">' in page
    assert cancel_of(text(client.get(inventory, query_string={"url": came}))) == came
    # kept when the form comes back with a message, and on the review
    again = text(client.post(inventory, data={"step": "review", "qty_DV": "x", "url": came}))
    assert cancel_of(again) == came
    review = text(client.post(inventory, data={"step": "review", "qty_DV": "1", "url": came}))
    assert cancel_of(review, "Back") == came
    # adding a subscription falls back to the customer's Subscriptions tab
    assert cancel_of(text(client.get(f"/admin/customer/subscribe/{cid}/", query_string={
        "product_id": world["product"]}))) == came


@pytest.mark.parametrize("target", EVIL)
def test_no_return_address_leaves_the_console(client_as, world, target):
    client = client_as("admin")
    sid, cid = world["subscription"], world["customer"]
    record = f"/admin/subscription/details/?id={sid}"
    for page_url, default in ((f"/admin/subscription/inventory/{sid}/", record),
                              (f"/admin/profile/credit/{world['profile']}/",
                               f"/admin/profile/details/?id={world['profile']}")):
        response = client.get(page_url, query_string={"url": target})
        if "\x00" in target:
            assert response.status_code == 400  # no address carries a control character
            continue
        assert cancel_of(text(response)) == default, (page_url, target)
        referred = client.get(page_url, headers={"Referer": target})
        assert cancel_of(text(referred)) == default
    # a record page shows no Back to it
    page = text(client.get(f"/admin/customer/{cid}/", query_string={"url": target}))
    if "\x00" not in target:
        assert 'data-testid="back"' not in page
        # no link of the page (its List, Edit and tab links included) goes there
        for href in re.findall(r'href="([^"]*)"', page):
            address = htmllib.unescape(href)
            assert "evil" not in address and not address.lower().lstrip().startswith(
                ("javascript", "data:")) or address == "javascript:void(0)", address
    # Flask-Admin's own forms never send anyone there after a save either
    saved = client.post(f"/admin/customer/edit/?id={cid}&url={target}", data={
        "company_name": "Acme Ltd", "address1": "1 Main Street", "city": "Springfield",
        "postal_code": "62701", "country": "US", "reseller": str(world["reseller"])})
    location = saved.headers.get("Location", "")
    assert saved.status_code in (302, 303, 400) and "evil" not in location
    assert not location.lower().startswith(("javascript", "data"))


def test_safe_return_keeps_console_paths_only(app):
    with app.test_request_context("/admin/"):
        for target in EVIL + ["", None, "/admin" + "x" * 2001, "/adminx/", "/static/x"]:
            assert safe_return(target) is None, target
        for target in ("/admin/", "/admin", "/admin/customer/12/subscriptions",
                       "/admin/customer/?search=Acme+Ltd&page=2"):
            assert safe_return(target) == target


def test_a_record_page_offers_back_to_where_the_staff_member_came_from(client_as, world):
    client = client_as("support")
    cid = world["customer"]
    came = "/admin/customer/?search=Acme"
    page = text(client.get(f"/admin/customer/{cid}/", query_string={"url": came}))
    assert re.search(rf'href="{re.escape(htmllib.escape(came))}" data-testid="back">Back<', page)
    # the tabs carry it along, so Back still returns there from another tab
    tabs = page.split('data-testid="record-tabs"', 1)[1].split("</ul>", 1)[0]
    assert f"/admin/customer/{cid}/subscriptions?url=/admin/customer/?search%3DAcme" in tabs
    # and none when nothing says where from: the Referer alone may be the page of an
    # operation just confirmed, and the breadcrumb leads up anyway
    page = text(client.get(f"/admin/subscription/details/?id={world['subscription']}",
                           headers={"Referer": f"http://localhost/admin/customer/{cid}/"}))
    assert 'data-testid="back"' not in page
    assert 'data-testid="back"' not in text(client.get(f"/admin/customer/{cid}/"))
