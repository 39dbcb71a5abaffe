"""Money arithmetic: exact integers, half-up rounding, parsing and display."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backoffice.errors import InvalidInput
from backoffice.money import format_money, prorate, round_half_up, to_minor


@pytest.mark.parametrize(("amount", "num", "den", "expected"), [
    (1, 1, 2, 1),        # 0.5 -> 1 (banker's rounding would give 0)
    (5, 1, 2, 3),        # 2.5 -> 3 (banker's rounding would give 2)
    (7, 1, 2, 4),        # 3.5 -> 4
    (-5, 1, 2, -3),      # halves go away from zero
    (1, 1, 3, 0),        # 0.333 -> 0
    (2, 1, 3, 1),        # 0.667 -> 1
    (50000, 191, 365, 26164),  # DESIGN.md: 500.00 x 191/365 = 261.64
    (36000, 137, 365, 13512),  # DESIGN.md: 360.00 x 137/365 = 135.12
])
def test_prorate_rounds_half_up_per_line(amount, num, den, expected):
    assert prorate(amount, num, den) == expected


@given(st.integers(min_value=-10**15, max_value=10**15),
       st.integers(min_value=0, max_value=4000), st.integers(min_value=1, max_value=4000))
def test_prorate_is_exact_half_up_for_any_size(amount, num, den):
    exact = Fraction(amount * num, den)
    result = prorate(amount, num, den)
    assert isinstance(result, int)
    assert abs(Fraction(result) - exact) <= Fraction(1, 2)
    if abs(exact - int(exact)) == Fraction(1, 2):
        assert abs(result) > abs(exact)  # a half always rounds away from zero


def test_round_half_up_never_uses_floats_on_huge_values():
    huge = Fraction(10**30 + 1, 2)  # x.5 far beyond float precision
    assert round_half_up(huge) == (10**30 + 2) // 2


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("12.50", "USD", 1250), ("1,234.5", "USD", 123450), ("0.01", "EUR", 1),
    ("-3", "USD", -300), ("500", "JPY", 500),
])
def test_to_minor_parses_staff_amounts(text, currency, minor):
    assert to_minor(text, currency) == minor


@pytest.mark.parametrize(("text", "currency"), [("1.005", "USD"), ("abc", "USD"),
                                                ("", "USD"), ("1.5", "JPY"), ("NaN", "USD")])
def test_to_minor_refuses_what_is_not_an_amount(text, currency):
    with pytest.raises(InvalidInput):
        to_minor(text, currency)


def test_format_money_uses_the_currency_minor_unit():
    assert format_money(26164, "USD") == "$261.64"
    assert format_money(-1250, "EUR", locale="de_DE") == "-12,50\xa0€"
    assert format_money(500, "JPY") == "¥500"
