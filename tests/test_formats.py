"""The one formatting style: moments, days, country names and postal addresses."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from backoffice.formats import address_lines, country_name, format_day, format_moment

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
