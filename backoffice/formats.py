"""The console's one way of writing dates, moments and money for people (babel).

Domain messages and pages use the same functions, so a date reads the same in a flash, a
table and an invoice. ``locale`` is the display locale (``DISPLAY_LOCALE``); domain
messages, which know no request, use the default.
"""

from __future__ import annotations

from datetime import date, datetime

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


__all__ = ["DEFAULT_LOCALE", "format_day", "format_moment", "format_money"]
