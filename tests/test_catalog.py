"""The catalog: certificate types and subscription products, by domain call and by view."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from backoffice.errors import Conflict, InvalidInput, NotFound
from backoffice.models import (
    AuditEvent,
    CertificateKind,
    CertificateType,
    SubscriptionProduct,
)
from backoffice.subscriptions import (
    create_certificate_type,
    create_product,
    update_certificate_type,
    update_product,
)
from tests.conftest import count_change_events


def _events(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def _count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.fixture
def catalog(ctx):
    """Two certificate types, DV and OV."""
    create_certificate_type(code="DV", name="Domain Validated", yearly_price=5000)
    create_certificate_type(code="OV", name="Organization Validated", yearly_price=12000)
    return ctx


# --------------------------------------------------------------------------- certificate types


def test_certificate_type_code_is_upper_cased_and_audited(ctx):
    cert = create_certificate_type(code="  ev-caas ", name=" EV as a service ",
                                   yearly_price=0, kind="caas")
    assert cert.code == "EV-CAAS" and cert.name == "EV as a service"
    assert cert.kind == CertificateKind.CAAS and cert.yearly_price == 0 and cert.active
    (event,) = _events(ctx, "catalog.certificate_type.create")
    assert event.target_id == str(cert.id)
    assert event.details == {"code": "EV-CAAS", "name": "EV as a service", "yearly_price": 0,
                             "kind": "caas"}


def test_certificate_type_code_is_unique_whatever_the_case(catalog):
    with pytest.raises(Conflict, match="already has a certificate type with code DV"):
        create_certificate_type(code="dv", name="Another DV", yearly_price=1)
    assert _count(catalog, CertificateType) == 2


@pytest.mark.parametrize("price", [-1, 12.5, "5000", None, True])
def test_certificate_type_price_must_be_a_non_negative_integer(ctx, price):
    with pytest.raises(InvalidInput, match="whole, non-negative number"):
        create_certificate_type(code="DV", name="Domain Validated", yearly_price=price)
    assert _count(ctx, CertificateType) == 0
    assert _count(ctx, AuditEvent) == 0


def test_unknown_certificate_kind_is_refused(ctx):
    with pytest.raises(InvalidInput, match="Unknown certificate kind 'quantum'"):
        create_certificate_type(code="Q", name="Quantum", yearly_price=1, kind="quantum")


@pytest.mark.parametrize("code, name", [("", "Name"), ("  ", "Name"), ("DV", ""), ("DV", " ")])
def test_certificate_type_needs_code_and_name(ctx, code, name):
    with pytest.raises(InvalidInput):
        create_certificate_type(code=code, name=name, yearly_price=1)


def test_update_certificate_type_reprices_and_is_audited(catalog):
    cert = catalog.scalar(sa.select(CertificateType).where(CertificateType.code == "DV"))
    update_certificate_type(cert, name="DV SSL", yearly_price=5500, active=False, actor=None)
    assert (cert.name, cert.yearly_price, cert.active, cert.code) == ("DV SSL", 5500, False, "DV")
    (event,) = _events(catalog, "catalog.certificate_type.update")
    assert event.details["before"] == {"name": "Domain Validated", "yearly_price": 5000,
                                       "active": True}
    assert event.details["after"] == {"name": "DV SSL", "yearly_price": 5500, "active": False}


@pytest.mark.parametrize("price", [-100, 1.5])
def test_update_certificate_type_refuses_a_bad_price(catalog, price):
    cert = catalog.scalar(sa.select(CertificateType).where(CertificateType.code == "DV"))
    with pytest.raises(InvalidInput):
        update_certificate_type(cert, name="DV", yearly_price=price, active=True, actor=None)
    assert cert.yearly_price == 5000
    assert _events(catalog, "catalog.certificate_type.update") == []


# --------------------------------------------------------------------------- products


def test_product_bundles_types_by_code_and_is_audited(catalog):
    product = create_product(name="Bundle", certificate_types=["ov", "dv"],
                             terms_months=["36", 12, 24, 12])
    assert [t.code for t in product.certificate_types] == ["DV", "OV"]
    assert product.terms_months == [12, 24, 36]
    (event,) = _events(catalog, "catalog.product.create")
    assert event.target_id == str(product.id)
    assert event.details["terms_months"] == [12, 24, 36]


def test_product_with_unknown_certificate_code_names_it(catalog):
    with pytest.raises(NotFound, match="No certificate type with code NOPE"):
        create_product(name="Bundle", certificate_types=["DV", "nope"])
    assert _count(catalog, SubscriptionProduct) == 0


def test_product_needs_a_certificate_type(catalog):
    with pytest.raises(InvalidInput, match="at least one certificate type"):
        create_product(name="Bundle", certificate_types=[])


@pytest.mark.parametrize("terms", [[0], [121], [12, 0], [-12], [], ["twelve"], [None], None])
def test_product_terms_must_be_between_1_and_120_months(catalog, terms):
    with pytest.raises(InvalidInput, match="Terms are whole numbers of months"):
        create_product(name="Bundle", certificate_types=["DV"], terms_months=terms)
    assert _count(catalog, SubscriptionProduct) == 0


@pytest.mark.parametrize("terms", [[1], [120], [1, 120]])
def test_product_terms_at_the_boundaries_are_accepted(catalog, terms):
    product = create_product(name="Bundle", certificate_types=["DV"], terms_months=terms)
    assert product.terms_months == terms


def test_product_name_is_unique(catalog):
    create_product(name="Bundle", certificate_types=["DV"])
    with pytest.raises(Conflict, match="named Bundle already exists"):
        create_product(name=" Bundle ", certificate_types=["OV"])


def test_update_product_is_audited_and_checked(catalog):
    product = create_product(name="Bundle", certificate_types=["DV"])
    other = create_product(name="Other", certificate_types=["OV"])
    update_product(product, name="Bundle Plus", certificate_types=["DV", "OV"],
                   terms_months=[12], active=False, actor=None)
    assert [t.code for t in product.certificate_types] == ["DV", "OV"]
    assert product.terms_months == [12] and product.active is False
    (event,) = _events(catalog, "catalog.product.update")
    assert event.details["certificate_types"] == ["DV", "OV"]
    with pytest.raises(Conflict):
        update_product(other, name="Bundle Plus", certificate_types=["OV"], terms_months=[12],
                       active=True, actor=None)
    with pytest.raises(InvalidInput):
        update_product(other, name="Other", certificate_types=["OV"], terms_months=[200],
                       active=True, actor=None)
    with pytest.raises(NotFound, match="XX"):
        update_product(other, name="Other", certificate_types=["XX"], terms_months=[12],
                       active=True, actor=None)


# --------------------------------------------------------------------------- through the views


def _new_type(client, **fields):
    data = {"code": "wc-dv", "name": "Wildcard DV", "kind": "traditional",
            "yearly_price": "189.00", **fields}
    return client.post("/admin/certificatetype/new/", data=data, follow_redirects=True)


def test_admin_creates_a_certificate_type_through_the_view(appctx, client_as):
    response = _new_type(client_as("admin"))
    assert response.status_code == 200
    with appctx() as session:
        cert = session.scalar(sa.select(CertificateType))
        assert (cert.code, cert.name, cert.yearly_price) == ("WC-DV", "Wildcard DV", 18900)
        (event,) = _events(session, "catalog.certificate_type.create")
        assert event.actor_label == "admin@staff.test"


@pytest.mark.parametrize("price, minor", [("189", 18900), ("1,234.5", 123450), ("0", 0),
                                          (" 0.01 ", 1), ("1,000,000.00", 100_000_000)])
def test_prices_are_typed_as_money(appctx, client_as, price, minor):
    _new_type(client_as("admin"), yearly_price=price)
    with appctx() as session:
        assert session.scalar(sa.select(CertificateType.yearly_price)) == minor


PRICE_MESSAGE = "Enter the price as an amount of 0 or more, such as 50.00."


@pytest.mark.parametrize("fields, message", [
    ({"yearly_price": "-1"}, PRICE_MESSAGE),
    ({"yearly_price": "12.505"}, "USD amounts have at most 2 decimals"),
    ({"yearly_price": ""}, "Enter the yearly price, e.g. 50.00."),
    ({"yearly_price": "   "}, "Enter the yearly price, e.g. 50.00."),
    ({"yearly_price": "1,000,000.01"}, "A yearly price can be at most 1,000,000.00."),
    ({"yearly_price": "905970020212414042476352"}, PRICE_MESSAGE),
    ({"yearly_price": "9" * 5000}, PRICE_MESSAGE),
    ({"yearly_price": "²"}, PRICE_MESSAGE),
    ({"yearly_price": "①"}, PRICE_MESSAGE),
    ({"yearly_price": "1e3"}, PRICE_MESSAGE),
    ({"yearly_price": "NaN"}, PRICE_MESSAGE),
    ({"yearly_price": "50\x00"}, "Remove the control characters"),
    ({"name": "a\x00b"}, "Remove the control characters"),
    ({"name": "x" * 201}, "Field cannot be longer than 200 characters."),
    ({"code": "C" * 33}, "Field cannot be longer than 32 characters."),
    ({"kind": "quantum"}, "Choose traditional or caas."),
    ({"code": ""}, "This field is required"),
])
def test_bad_certificate_type_form_shows_a_message_and_writes_nothing(appctx, client_as,
                                                                      fields, message):
    response = _new_type(client_as("admin"), **fields)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with appctx() as session:
        assert _count(session, CertificateType) == 0
        assert count_change_events() == 0


def test_duplicate_certificate_code_in_the_view_is_flashed(appctx, client_as):
    client = client_as("admin")
    _new_type(client)
    response = _new_type(client, code="WC-dv", name="Again")
    assert "already has a certificate type with code WC-DV" in response.get_data(as_text=True)
    with appctx() as session:
        assert _count(session, CertificateType) == 1
        assert len(_events(session, "catalog.certificate_type.create")) == 1


@pytest.fixture
def type_ids(appctx):
    with appctx() as session:
        dv = create_certificate_type(code="DV", name="Domain Validated", yearly_price=5000)
        ov = create_certificate_type(code="OV", name="Organization Validated",
                                     yearly_price=12000)
        session.commit()
        return {"DV": dv.id, "OV": ov.id}


def _new_product(client, **fields):
    data = {"name": "Business Bundle", "terms_months": "12, 24", "active": "y", **fields}
    return client.post("/admin/subscriptionproduct/new/", data=data, follow_redirects=True)


def test_admin_creates_a_product_through_the_view(appctx, client_as, type_ids):
    response = _new_product(client_as("admin"),
                            certificate_types=[str(type_ids["DV"]), str(type_ids["OV"])])
    assert response.status_code == 200
    with appctx() as session:
        product = session.scalar(sa.select(SubscriptionProduct))
        assert product.name == "Business Bundle"
        assert product.terms_months == [12, 24]
        assert [t.code for t in product.certificate_types] == ["DV", "OV"]
        assert len(_events(session, "catalog.product.create")) == 1


@pytest.mark.parametrize("terms, message", [
    ("12, a year", "is not a list of month counts"),
    ("0", "between 1 and 120"),
    ("12, 121", "between 1 and 120"),
    ("12.5", "is not a list of month counts"),
    ("12, ²", "is not a list of month counts"),
    ("①", "is not a list of month counts"),
    ("-12", "is not a list of month counts"),
    ("905970020212414042476352", "between 1 and 120"),
    ("1" * 5000, "List at most a few terms"),
    (" , ", "between 1 and 120"),
    ("", "This field is required"),
    ("12\x00", "Remove the control characters"),
])
def test_bad_product_terms_show_a_message_and_write_nothing(appctx, client_as, type_ids,
                                                            terms, message):
    response = _new_product(client_as("admin"), certificate_types=[str(type_ids["DV"])],
                            terms_months=terms)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with appctx() as session:
        assert _count(session, SubscriptionProduct) == 0
        assert _events(session, "catalog.product.create") == []


def test_product_without_certificate_types_shows_a_message(appctx, client_as, type_ids):
    response = _new_product(client_as("admin"))
    assert "at least one certificate type" in response.get_data(as_text=True)
    with appctx() as session:
        assert _count(session, SubscriptionProduct) == 0


@pytest.mark.parametrize("fields, message", [
    ({"name": "a\x00b"}, "Remove the control characters"),
    ({"name": "x" * 201}, "Field cannot be longer than 200 characters."),
    ({"certificate_types": "99999"}, "Not a valid choice"),
    ({"certificate_types": "²"}, "Not a valid choice"),
])
def test_bad_product_fields_show_a_message_and_write_nothing(appctx, client_as, type_ids,
                                                            fields, message):
    response = _new_product(client_as("admin"),
                            **{"certificate_types": str(type_ids["DV"]), **fields})
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with appctx() as session:
        assert _count(session, SubscriptionProduct) == 0


def test_edit_forms_show_the_price_as_money_and_the_terms_as_a_list(appctx, client_as,
                                                                    type_ids):
    with appctx() as session:
        product = create_product(name="Bundle", certificate_types=["DV"],
                                 terms_months=[12, 24])
        session.commit()
        product_id = product.id
    client = client_as("admin")
    page = client.get(f"/admin/certificatetype/edit/?id={type_ids['DV']}").get_data(
        as_text=True)
    assert 'value="50.00"' in page
    page = client.get(f"/admin/subscriptionproduct/edit/?id={product_id}").get_data(
        as_text=True)
    assert 'value="12, 24"' in page
    client.post(f"/admin/certificatetype/edit/?id={type_ids['DV']}",
                data={"name": "Domain Validated", "yearly_price": "55.5", "active": "y"})
    refused = client.post(f"/admin/certificatetype/edit/?id={type_ids['DV']}",
                          data={"name": "Domain Validated", "yearly_price": "99999999",
                                "active": "y"})
    assert "A yearly price can be at most 1,000,000.00." in refused.get_data(as_text=True)
    with appctx() as session:
        assert session.get(CertificateType, type_ids["DV"]).yearly_price == 5550
        assert len(_events(session, "catalog.certificate_type.update")) == 1
