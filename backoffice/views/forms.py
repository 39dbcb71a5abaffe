"""The console's form library: every POST page's form derives from ConsoleForm.

- **Control characters** (NUL and the rest of Unicode's Cc, except tab and line breaks)
  are refused in one place, for every field of every form, so no such text reaches the
  database.
- **Whole numbers** are typed in ASCII digits only and stay inside a stated range: "²",
  "①", "1e3" or a 5,000-digit number is a message on the field, never a crash.
- **Quantities** per certificate type come from one form class built from the product's
  certificate types, rendered by one macro (``templates/macros/forms.html``).
- **Money** is typed in the display locale and parsed exactly into minor units by
  MoneyField (at the end of this module).
- **Reviews**: ReviewForm adds the hidden ``step`` and ``review_token`` that the one
  Review -> Confirm mechanism (``views/review.py``) reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from babel.numbers import (
    NumberFormatError,
    format_decimal,
    get_decimal_symbol,
    get_group_symbol,
    parse_decimal,
)
from flask import current_app
from flask_wtf import FlaskForm
from wtforms import DateField, Field, HiddenField, IntegerField, PasswordField, StringField
from wtforms.validators import (
    AnyOf,
    DataRequired,
    EqualTo,
    Length,
    NumberRange,
    StopValidation,
    ValidationError,
)

from ..money import format_money, minor_digits
from ..staff import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from ..validation import MAX_QUANTITY

#: Unicode control characters a staff member never means to type (tab, LF, CR allowed)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: every Unicode control character, tab and newlines too: none belongs in an address or
#: an argument of one
CONTROL_ANY = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIGITS = re.compile(r"[0-9]{1,18}")

CONTROL_MESSAGE = "Remove the control characters (such as NUL) from this field."


def has_control_characters(value: str) -> bool:
    return bool(_CONTROL.search(value))


class ConsoleForm(FlaskForm):
    """A Flask-WTF form (CSRF included) that refuses control characters in any field."""

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in self:
            if any(isinstance(value, str) and has_control_characters(value)
                   for value in field.raw_data or ()):
                field.errors = [*field.errors, CONTROL_MESSAGE]
                valid = False
        return valid


#: the dates a staff member may type anywhere in the console
EARLIEST_DATE, LATEST_DATE = date(2000, 1, 1), date(2099, 12, 31)


def in_date_range(_form, field) -> None:
    """A DateField validator: a date between EARLIEST_DATE and LATEST_DATE."""
    if field.data is not None and not EARLIEST_DATE <= field.data <= LATEST_DATE:
        raise ValidationError(f"Enter a date from {EARLIEST_DATE:%Y-%m-%d} to "
                              f"{LATEST_DATE:%Y-%m-%d}.")


class DayField(DateField):
    """A calendar date typed as YYYY-MM-DD (a date input), between EARLIEST_DATE and
    LATEST_DATE."""

    def __init__(self, label=None, validators=None, **kwargs):
        super().__init__(label, [*(validators or []), in_date_range], **kwargs)

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError("Enter the date as YYYY-MM-DD, e.g. 2026-11-22.") from exc


class WholeNumberField(IntegerField):
    """A whole number from ``minimum`` to ``maximum``, typed in ASCII digits.

    An empty field is ``blank`` (0 by default, None to leave it empty).
    """

    def __init__(self, label=None, validators=None, *, minimum: int = 0, maximum: int,
                 blank: int | None = 0, **kwargs):
        message = f"Enter a whole number from {minimum:,} to {maximum:,}."
        kwargs.setdefault("default", blank)
        super().__init__(label, [*(validators or []),
                                 NumberRange(minimum, maximum, message=message)], **kwargs)
        self.blank = blank
        self.message = message

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        raw = valuelist[0].strip() if isinstance(valuelist[0], str) else ""
        if raw == "":
            self.data = self.blank
            return
        if not _DIGITS.fullmatch(raw):
            self.data = None
            raise ValueError(self.message)
        self.data = int(raw)


def quantity_form(certificate_types: Iterable, *, base: type[ConsoleForm] = ConsoleForm,
                  prefix: str = "qty_", maximum: int = MAX_QUANTITY) -> type[ConsoleForm]:
    """A form class with one quantity field per certificate type, named ``qty_<CODE>``.

    ``base`` adds the page's other fields. The quantities come back from
    :func:`quantities`; the macro ``quantity_table`` renders them.
    """
    fields = {
        f"{prefix}{cert.code}": WholeNumberField(f"{cert.name} ({cert.code})", maximum=maximum)
        for cert in certificate_types
    }
    form_class = type(f"{base.__name__}WithQuantities", (base,), fields)
    form_class.quantity_prefix = prefix  # type: ignore[attr-defined]
    return form_class


def quantities(form: ConsoleForm) -> dict[str, int]:
    """The quantities of a :func:`quantity_form`, by certificate code."""
    prefix = form.quantity_prefix
    return {name[len(prefix):]: field.data or 0 for name, field in form._fields.items()
            if name.startswith(prefix)}


def quantity_fields(form: ConsoleForm) -> list[Field]:
    prefix = form.quantity_prefix
    return [field for name, field in form._fields.items() if name.startswith(prefix)]


class ReviewForm(ConsoleForm):
    """A form that is reviewed before it is applied (see ``views/review.py``)."""

    step = HiddenField(default="review", validators=[AnyOf(("review", "confirm"))])
    review_token = HiddenField()


#: the largest row id there is (id columns are 32-bit integers on PostgreSQL)
MAX_ROW_ID = 2_147_483_647


class RecordIdsField(Field):
    """The ids of rows chosen on a page (checkboxes, or hidden inputs carried along).

    Each id is typed in ASCII digits, from 1 to MAX_ROW_ID; at most ``max_entries``
    different ids are taken. Anything else ("²", "①", a 5,000-digit number, "1 OR 1=1")
    is a message on the field. ``data`` is the sorted list of ids; a page carries them
    along as hidden inputs, one per id.
    """

    def __init__(self, label=None, validators=None, *, max_entries: int, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.max_entries = max_entries

    def process_formdata(self, valuelist):
        ids = set()
        for raw in valuelist:
            text = raw.strip() if isinstance(raw, str) else ""
            if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ROW_ID:
                self.data = []
                raise ValueError("Choose the rows from the list on the page.")
            ids.add(int(text))
        if len(ids) > self.max_entries:
            self.data = []
            raise ValueError(f"Choose at most {self.max_entries:,} rows at once.")
        self.data = sorted(ids)

    def process_data(self, value):
        self.data = sorted(set(value or ()))


# --------------------------------------------------------------------------- money


#: the longest amount anyone types; longer text is refused before it is parsed
_MONEY_MAX_CHARS = 32


class MoneyField(StringField):
    """An amount of money typed in the console's display locale (DISPLAY_LOCALE), e.g.
    "1,234.50" in en_US or "1.234,50" in de_DE; ``data`` is its whole minor units.

    Only ASCII digits and the locale's decimal and group symbols are accepted, so "1e30",
    "NaN", "∞", "-5", "²" or "١٢" are a message on the field, never a crash. The amount is
    parsed by babel (strict: misplaced group symbols are refused), must not have more
    decimals than the currency, and must lie from ``minimum`` to ``maximum`` minor units.

    The field needs its currency before the form is validated: set ``field.currency``
    (e.g. ``form.amount.currency = profile.currency``) or pass ``currency=``.
    """

    def __init__(self, label=None, validators=None, *, maximum: int, minimum: int = 1,
                 currency: str | None = None, **kwargs):
        kwargs.setdefault("render_kw", {"inputmode": "decimal", "autocomplete": "off"})
        super().__init__(label, validators, **kwargs)
        self.minimum, self.maximum, self.currency = minimum, maximum, currency
        self.text = ""

    def process_formdata(self, valuelist):
        self.text = valuelist[0] if valuelist and isinstance(valuelist[0], str) else ""
        self.data = None  # parsed in pre_validate, once the currency is known

    def _value(self) -> str:
        if self.raw_data:
            return self.text
        return "" if self.data is None else self._display(self.data)

    def _locale(self) -> str:
        return current_app.config.get("DISPLAY_LOCALE", "en_US")

    def _display(self, amount: int) -> str:
        return format_money(amount, self.currency, locale=self._locale())

    def range_message(self) -> str:
        return (f"Enter an amount from {self._display(self.minimum)} to "
                f"{self._display(self.maximum)}.")

    def pre_validate(self, form) -> None:
        if self.currency is None:
            raise RuntimeError(f"MoneyField {self.name} needs its currency before validation")
        self.data = None
        locale = self._locale()
        text = self.text.strip()
        if not text:
            raise StopValidation(f"Enter an amount, e.g. {_example('12.50', locale)}.")
        if text[0] in "-+−":
            raise StopValidation("Enter the amount without a sign.")
        decimal, group = get_decimal_symbol(locale), get_group_symbol(locale)
        allowed = set("0123456789") | {decimal, group}
        digits_only = f"Enter the amount in digits, like {_example('1234.50', locale)}."
        if len(text) > _MONEY_MAX_CHARS or any(c not in allowed for c in text):
            raise StopValidation(digits_only)
        try:
            value = parse_decimal(text, locale=locale, strict=True)
        except NumberFormatError as exc:
            raise StopValidation(digits_only) from exc
        digits = minor_digits(self.currency)
        if not value.is_finite():
            raise StopValidation(self.range_message())
        minor = _exact_minor(value, digits)
        if minor is None:
            raise StopValidation(f"{self.currency} amounts have at most {digits} decimals.")
        if not self.minimum <= minor <= self.maximum:
            raise StopValidation(self.range_message())
        self.data = minor


def _example(amount: str, locale: str) -> str:
    return format_decimal(Decimal(amount), format="#,##0.00", locale=locale)


def _exact_minor(value: Decimal, digits: int) -> int | None:
    """``value`` in whole minor units, by integer arithmetic (no decimal context, so no
    rounding), or None when it has more than ``digits`` decimals."""
    _sign, coefficient_digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, coefficient_digits)) or "0")
    shift = exponent + digits
    if shift >= 0:
        return coefficient * 10 ** shift
    whole, remainder = divmod(coefficient, 10 ** -shift)
    return None if remainder else whole


# --------------------------------------------------------------------------- passwords

#: what every new-password field says about the policy (``staff.check_password_strength``)
PASSWORD_RULES = (f"At least {MIN_PASSWORD_LENGTH} characters; not a common password, your "
                  "email, or one character repeated. Several uncommon words, or a password "
                  "manager's random password, work well.")


class NewPasswordForm(ConsoleForm):
    """A new password typed twice (the reset link page, the account page); the policy
    itself is the domain's (``staff.check_password_strength``)."""

    password = PasswordField(
        "New password", description=PASSWORD_RULES, render_kw={"autocomplete": "new-password"},
        validators=[DataRequired(message="Type a new password."),
                    Length(max=MAX_PASSWORD_LENGTH)])
    confirm = PasswordField(
        "New password again", render_kw={"autocomplete": "new-password"},
        validators=[DataRequired(message="Type the new password a second time."),
                    EqualTo("password",
                            message="The two new passwords differ; type the same one twice.")])
