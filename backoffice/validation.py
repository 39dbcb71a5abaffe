"""Checks shared by the domain modules for values staff and customers type."""

from __future__ import annotations

import pycountry
from babel.numbers import list_currencies
from email_validator import EmailNotValidError, validate_email

from .errors import InvalidInput

_CURRENCIES = frozenset(list_currencies())

#: the most certificates of one type a single operation may order, add or refund
MAX_QUANTITY = 100_000


def normalize_email(email: str) -> str:
    """Validate an address and return it lower-cased, or raise InvalidInput."""
    try:
        result = validate_email((email or "").strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"'{email}' is not a valid email address: {exc}") from exc
    return result.normalized.lower()


def country_code(value: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased; refuses anything else."""
    code = (value or "").strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise InvalidInput(f"'{value}' is not an ISO 3166 country code (e.g. US, DE, GB).")
    return code


def currency_code(value: str) -> str:
    """An ISO 4217 currency code, upper-cased; refuses anything else."""
    code = (value or "").strip().upper()
    if code not in _CURRENCIES:
        raise InvalidInput(f"'{value}' is not an ISO 4217 currency code (e.g. USD, EUR).")
    return code


def required_text(fields: dict[str, str], labels: dict[str, str], max_length: int = 200) -> dict:
    """Strip each field and refuse empty required ones, naming them as staff see them."""
    cleaned = {name: (value or "").strip() for name, value in fields.items()}
    missing = [labels[name] for name in labels if not cleaned.get(name)]
    if missing:
        raise InvalidInput(f"Please fill in: {', '.join(missing)}.")
    too_long = [name for name, value in cleaned.items() if len(value) > max_length]
    if too_long:
        raise InvalidInput(f"{', '.join(too_long)} must be at most {max_length} characters.")
    return cleaned


def positive_counts(counts: dict[str, int], what: str = "quantity") -> dict[str, int]:
    """Codes upper-cased mapped to whole, non-negative numbers; refuses anything else."""
    cleaned: dict[str, int] = {}
    for code, count in (counts or {}).items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"The {what} for {code} must be a whole number of 0 or more.")
        if count > MAX_QUANTITY:
            raise InvalidInput(f"The {what} for {code} can be at most {MAX_QUANTITY:,} in "
                               f"one operation.")
        key = (code or "").strip().upper()
        cleaned[key] = cleaned.get(key, 0) + count
    return cleaned
