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
        lines.append(f"{city}, {region}" if city and state else
                     " ".join(part for part in (city, region) if part))
    else:
        lines.append(" ".join(part for part in (postal, city) if part))
        lines.append(state)
    lines.append(country_name(country, locale))
    return [line for line in lines if line]


#: audit-detail keys that hold minor units (of the event's ``currency``, else USD, the
#: catalog's price currency)
MONEY_KEYS = frozenset({"amount", "total", "balance_after", "yearly_price", "credit_balance",
                        "transferred_amount", "expected_balance"})


def _label(key: str) -> str:
    return key.replace("_", " ")


def _value(key: str, value, currency: str, locale: str) -> str:
    if key in MONEY_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return format_money(value, currency, locale)
    if value is None or value == "":
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_value(key, v, currency, locale) for v in value) or "\u2014"
    if isinstance(value, dict):
        return "; ".join(f"{_label(k)} {_value(k, v, currency, locale)}"
                         for k, v in value.items())
    return str(value)


def audit_lines(details: dict | None, locale: str = DEFAULT_LOCALE) -> list[str]:
    """An audit event's details for people: one line per fact, money in major units,
    changes as ``before → after``."""
    details = dict(details or {})
    currency = str(details.get("currency") or "USD")
    lines: list[str] = []
    before, after = details.pop("before", None), details.pop("after", None)
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            old, new = before.get(key), after.get(key)
            if old != new:
                lines.append(f"{_label(key)}: {_value(key, old, currency, locale)} \u2192 "
                             f"{_value(key, new, currency, locale)}")
    for key, value in details.items():
        if key == "currency" and MONEY_KEYS & set(details):
            continue  # the amounts carry it
        if isinstance(value, dict) and set(value) == {"from", "to"}:
            lines.append(f"{_label(key)}: {_value(key, value['from'], currency, locale)} "
                         f"\u2192 {_value(key, value['to'], currency, locale)}")
        elif isinstance(value, dict) and value and all(isinstance(v, dict)
                                                       for v in value.values()):
            for name, inner in value.items():
                lines.append(f"{_label(key)} {name}: {_value(key, inner, currency, locale)}")
        else:
            lines.append(f"{_label(key)}: {_value(key, value, currency, locale)}")
    return lines


__all__ = ["DEFAULT_LOCALE", "address_lines", "audit_lines", "country_name", "format_day",
           "format_moment", "format_money"]
