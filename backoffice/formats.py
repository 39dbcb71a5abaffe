"""The console's one way of writing dates, moments and money for people (babel).

Domain messages and pages use the same functions, so a date reads the same in a flash, a
table and an invoice. ``locale`` is the display locale (``DISPLAY_LOCALE``); domain
messages, which know no request, use the default.
"""

from __future__ import annotations

from datetime import date, datetime

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime

from .money import format_money

DEFAULT_LOCALE = "en_US"


def format_moment(value: datetime | None, locale: str = DEFAULT_LOCALE) -> str:
    """A UTC timestamp, e.g. ``Nov 22, 2026, 7:38:00 AM UTC``."""
    if value is None:
        return ""
    return format_datetime(value, "medium", tzinfo=None, locale=locale) + " UTC"


def format_day(value: date | None, locale: str = DEFAULT_LOCALE) -> str:
    """A calendar date, e.g. ``Nov 22, 2026``."""
    return "" if value is None else format_date(value, "medium", locale=locale)


def country_name(code: str | None, locale: str = DEFAULT_LOCALE) -> str:
    """The country's name for a two-letter code (``IE`` -> ``Ireland``); the code itself
    when it names no country."""
    if not code:
        return ""
    try:
        names = Locale.parse(locale).territories
    except (ValueError, UnknownLocaleError):
        names = Locale.parse(DEFAULT_LOCALE).territories
    return names.get(code.upper(), code)


#: countries whose addresses end "City, ST 12345" (the postal code after the city and
#: region); elsewhere the postal code comes before the city
CITY_FIRST = frozenset({"US", "CA", "AU"})


def address_lines(address: dict, locale: str = DEFAULT_LOCALE) -> list[str]:
    """A postal address as written on an envelope, without empty lines.

    ``address`` has ``name``, ``company``, ``address1``..``address3``, ``city``,
    ``postal_code``, ``state`` and a two-letter ``country``, any of them missing. US,
    Canadian and Australian addresses read "Denver, CO 80202"; others "80202 Denver",
    with the region on its own line.
    """
    get = lambda key: str(address.get(key) or "").strip()  # noqa: E731
    lines = [get(k) for k in ("name", "company", "address1", "address2", "address3")]
    country = get("country").upper()
    city, postal, state = get("city"), get("postal_code"), get("state")
    if country in CITY_FIRST:
        region = " ".join(part for part in (state, postal) if part)
        lines.append(", ".join(part for part in (city, region) if part))
    else:
        lines.append(" ".join(part for part in (postal, city) if part))
        lines.append(state)
    lines.append(country_name(country, locale))
    return [line for line in lines if line]


__all__ = ["DEFAULT_LOCALE", "address_lines", "country_name", "format_day", "format_moment",
           "format_money"]
