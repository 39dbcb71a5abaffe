"""Money in integer minor units: parsing, proration, rounding and display.

No float ever touches an amount: arithmetic is on ``int`` and ``Fraction``, rounded
ROUND_HALF_UP to the minor unit once per line.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

from babel.core import get_global
from babel.numbers import format_currency, get_currency_precision

from .errors import InvalidInput

#: the minor unit's digits of every currency not listed in :func:`minor_digits_exceptions`
DEFAULT_MINOR_DIGITS: int = get_global("currency_fractions")["DEFAULT"][0]


def minor_digits(currency: str) -> int:
    """How many decimal digits the currency's minor unit has (2 for USD, 0 for JPY)."""
    return get_currency_precision(currency)


def minor_digits_exceptions() -> dict[str, int]:
    """Every currency whose minor unit has other than ``DEFAULT_MINOR_DIGITS`` digits, the
    same table :func:`minor_digits` reads (for formatting amounts in SQL)."""
    return {code: fractions[0] for code, fractions in get_global("currency_fractions").items()
            if code != "DEFAULT" and fractions[0] != DEFAULT_MINOR_DIGITS}


def round_half_up(value: Fraction) -> int:
    """Round an exact fraction of minor units to the nearest unit, halves away from zero."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * remainder >= magnitude.denominator:
        whole += 1
    return sign * whole


def prorate(amount: int, numerator: int, denominator: int) -> int:
    """``round(amount x numerator / denominator)`` half-up, exactly."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return round_half_up(Fraction(amount * numerator, denominator))


def to_minor(text: str, currency: str) -> int:
    """Parse a staff-typed amount ("1,234.50") into minor units, refusing extra decimals."""
    cleaned = (text or "").strip().replace(",", "").replace(" ", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise InvalidInput(f"'{text}' is not an amount.") from exc
    if not value.is_finite():
        raise InvalidInput(f"'{text}' is not an amount.")
    digits = minor_digits(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value(rounding=ROUND_HALF_UP):
        raise InvalidInput(f"{currency} amounts have at most {digits} decimals; got '{text}'.")
    return int(scaled)


def to_decimal(amount: int, currency: str) -> Decimal:
    """Minor units as an exact Decimal of major units."""
    return Decimal(amount).scaleb(-minor_digits(currency))


def format_money(amount: int | None, currency: str | None, locale: str = "en_US") -> str:
    """Display minor units with babel, e.g. ``26164, "USD"`` -> ``$261.64``."""
    if amount is None or currency is None:
        return ""
    return format_currency(to_decimal(amount, currency), currency, locale=locale)
