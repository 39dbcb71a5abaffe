"""The console's form library: every POST page's form derives from ConsoleForm.

- **Control characters** (NUL and the rest of Unicode's Cc, except tab and line breaks)
  are refused in one place, for every field of every form, so no such text reaches the
  database.
- **Whole numbers** are typed in ASCII digits only and stay inside a stated range: "²",
  "①", "1e3" or a 5,000-digit number is a message on the field, never a crash.
- **Quantities** per certificate type come from one form class built from the product's
  certificate types, rendered by one macro (``templates/macros/forms.html``).
- **Reviews**: ReviewForm adds the hidden ``step`` and ``review_token`` that the one
  Review -> Confirm mechanism (``views/review.py``) reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from flask_wtf import FlaskForm
from wtforms import DateField, Field, HiddenField, IntegerField
from wtforms.validators import AnyOf, NumberRange, ValidationError

from ..validation import MAX_QUANTITY

#: Unicode control characters a staff member never means to type (tab, LF, CR allowed)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
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
