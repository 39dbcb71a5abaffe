"""The one formatting style: moments, days, country names and postal addresses."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from backoffice import audit
from backoffice.extensions import db
from backoffice.formats import (
    address_lines,
    audit_lines,
    country_name,
    format_day,
    format_moment,
)
from backoffice.models import StaffUser

DENVER = {"company": "Acme Ltd", "address1": "1600 Broadway", "address2": "Suite 200",
          "city": "Denver", "state": "CO", "postal_code": "80202", "country": "US"}


def test_a_us_address_reads_city_state_and_zip():
    assert address_lines(DENVER) == ["Acme Ltd", "1600 Broadway", "Suite 200",
                                     "Denver, CO 80202", "United States"]


def test_elsewhere_the_postal_code_comes_first_and_the_region_below():
    dublin = {"name": "Bluefin", "address1": "12 Harbour Road", "city": "Dublin",
              "postal_code": "D02 X285", "state": "Leinster", "country": "ie"}
    assert address_lines(dublin) == ["Bluefin", "12 Harbour Road", "D02 X285 Dublin",
                                     "Leinster", "Ireland"]


def test_missing_parts_leave_no_empty_lines_or_stray_commas():
    assert address_lines({"city": "Denver", "country": "US"}) == ["Denver", "United States"]
    assert address_lines({"state": "CO", "postal_code": "80202", "country": "US"}) == [
        "CO 80202", "United States"]
    assert address_lines({}) == []


@pytest.mark.parametrize(("code", "locale", "name"), [
    ("DE", "en_US", "Germany"), ("de", "en_US", "Germany"), ("US", "de_DE", "Vereinigte Staaten"),
    ("XX", "en_US", "XX"), ("", "en_US", ""), ("FR", "not-a-locale", "France"),
])
def test_country_names_come_from_the_code_in_the_display_locale(code, locale, name):
    assert country_name(code, locale) == name


def test_moments_and_days_have_one_format():
    moment = datetime(2026, 12, 22, 10, 22, 17, tzinfo=UTC)
    assert format_moment(moment) == "Dec 22, 2026, 10:22:17\u202fAM UTC"
    assert format_day(date(2026, 12, 22)) == "Dec 22, 2026"
    assert format_moment(None) == format_day(None) == ""


def test_audit_details_read_as_facts_with_money_and_changes():
    assert audit_lines({"total": 18838, "currency": "EUR",
                        "lines": {"DV": {"quantity": 3, "amount": 30000}}}) == [
        "total: €188.38", "lines DV: quantity 3; amount €300.00"]
    assert audit_lines({"name": {"from": "", "to": "Ann"}}) == ["name: \u2014 \u2192 Ann"]
    assert audit_lines({"before": {"yearly_price": 9900, "active": True, "name": "DV"},
                        "after": {"yearly_price": 10900, "active": False, "name": "DV"}}) == [
        "yearly price: $99.00 \u2192 $109.00", "active: yes \u2192 no"]
    assert audit_lines({"amount": 0, "currency": "JPY"}) == ["amount: ¥0"]
    assert audit_lines(None) == []


def test_the_audit_log_shows_details_for_people(client_as, appctx):
    client = client_as("finance")
    with appctx():
        actor = db.session.scalars(select(StaffUser)).one()
        audit.record(actor, "credit.adjust", actor, {"amount": 18838, "currency": "USD",
                                                     "memo": "goodwill"})
        db.session.commit()
    page = client.get("/admin/auditevent/").get_data(as_text=True)
    assert "amount: $188.38<br>memo: goodwill" in page
    assert "18838" not in page
