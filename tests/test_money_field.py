"""MoneyField: amounts typed in the display locale, parsed exactly into minor units."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from backoffice.views.forms import ConsoleForm, MoneyField


class AmountForm(ConsoleForm):
    amount = MoneyField("Amount", maximum=10_000_000)


def parse(app, monkeypatch, text, *, currency="USD", locale="en_US"):
    """(minor units or None, the field's errors) for ``text``."""
    monkeypatch.setitem(app.config, "DISPLAY_LOCALE", locale)
    with app.test_request_context(method="POST"):
        form = AmountForm(formdata=MultiDict({"amount": text}), meta={"csrf": False})
        form.amount.currency = currency
        form.validate()
        return form.amount.data, form.amount.errors


@pytest.mark.parametrize(("text", "currency", "locale", "minor"), [
    ("12.50", "USD", "en_US", 1250),
    (" 1,234.50 ", "USD", "en_US", 123450),
    ("12.500", "USD", "en_US", 1250),
    ("12", "USD", "en_US", 1200),
    ("100,000.00", "USD", "en_US", 10_000_000),
    ("1.234,50", "EUR", "de_DE", 123450),
    ("12,5", "EUR", "de_DE", 1250),
    ("1\u202f234,50", "EUR", "fr_FR", 123450),
    ("1,250", "JPY", "en_US", 1250),
    ("0.01", "USD", "en_US", 1),
])
def test_amounts_in_the_display_locale(app, monkeypatch, text, currency, locale, minor):
    assert parse(app, monkeypatch, text, currency=currency, locale=locale) == (minor, [])


@pytest.mark.parametrize(("text", "currency", "locale", "message"), [
    ("1,234.50", "EUR", "de_DE", "Enter the amount in digits, like 1.234,50."),
    ("12.50", "EUR", "de_DE", "Enter the amount in digits, like 1.234,50."),
    ("1,23.4", "USD", "en_US", "Enter the amount in digits, like 1,234.50."),
    ("1e30", "USD", "en_US", "Enter the amount in digits"),
    ("NaN", "USD", "en_US", "Enter the amount in digits"),
    ("∞", "USD", "en_US", "Enter the amount in digits"),
    ("١٢", "USD", "en_US", "Enter the amount in digits"),
    ("²", "USD", "en_US", "Enter the amount in digits"),
    ("-1", "USD", "en_US", "without a sign"),
    ("12.5", "JPY", "en_US", "JPY amounts have at most 0 decimals."),
    ("1.005", "USD", "en_US", "USD amounts have at most 2 decimals."),
    # more digits than the decimal context holds: refused, never rounded into range
    ("1.00000000000000000000000000001", "USD", "en_US", "at most 2 decimals"),
    ("99999999999999999999999999999999", "USD", "en_US", "Enter an amount from $0.01"),
    ("100,000.01", "USD", "en_US", "Enter an amount from $0.01 to $100,000.00."),
    ("0", "USD", "en_US", "Enter an amount from $0.01"),
    ("", "USD", "en_US", "Enter an amount, e.g. 12.50."),
    ("", "EUR", "de_DE", "Enter an amount, e.g. 12,50."),
])
def test_what_is_not_an_amount_is_a_message(app, monkeypatch, text, currency, locale,
                                            message):
    minor, errors = parse(app, monkeypatch, text, currency=currency, locale=locale)
    assert minor is None and len(errors) == 1 and message in errors[0]


def test_the_field_needs_its_currency(app):
    with app.test_request_context(method="POST"):
        form = AmountForm(formdata=MultiDict({"amount": "1"}), meta={"csrf": False})
        with pytest.raises(RuntimeError, match="needs its currency"):
            form.validate()


def test_what_was_typed_is_shown_again(app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPLAY_LOCALE", "en_US")
    with app.test_request_context(method="POST"):
        form = AmountForm(formdata=MultiDict({"amount": "12,5"}), meta={"csrf": False})
        form.amount.currency = "USD"
        form.validate()
        assert 'value="12,5"' in form.amount() and 'inputmode="decimal"' in form.amount()
