"""Money helpers count decimal places exactly, beyond the decimal context's 28 digits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.money import fits_columns, fits_precision, format_amount, integer_digits, places, to_decimal


@pytest.mark.parametrize(
    ("value", "expected_places", "expected_integer_digits"),
    [
        ("0", 0, 0),
        ("0.000", 0, 0),
        ("-12.50", 1, 2),
        ("1E+5", 0, 6),
        ("0.001", 3, 0),
        ("1.0000000000000000000000000000001", 31, 1),
        ("12345678901234567890.123456789012345678", 18, 20),
    ],
)
def test_places_and_integer_digits_count_exactly(value, expected_places, expected_integer_digits):
    # given / when / then
    assert places(Decimal(value)) == expected_places
    assert integer_digits(Decimal(value)) == expected_integer_digits


def test_fits_precision_refuses_digits_beyond_the_context_precision():
    # given an amount with a 1 in its 31st decimal place (normalize() rounds it to 1)
    value = Decimal("1.0000000000000000000000000000001")
    # when / then it fits no asset's precision and not the columns
    assert not fits_precision(value, 8)
    assert not fits_columns(value)
    assert fits_precision(Decimal("1.00000000"), 0)


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-inf", Decimal("NaN")])
def test_to_decimal_refuses_values_that_are_no_amount(value):
    # given / when / then
    with pytest.raises(ValueError, match="not a finite number"):
        to_decimal(value)
    assert to_decimal("-1.50") == Decimal("-1.50")


@pytest.mark.parametrize("value", [0.1, 75562.92, float("nan"), True, "1.50"])
def test_format_amount_refuses_a_float_loudly(value):
    # given an amount that went through floating point (e.g. an aggregate a database returned as
    # float) or is no number at all
    # when / then it is refused with a TypeError that names the type, never formatted
    with pytest.raises(TypeError, match=r"not (float|bool|str)"):
        format_amount(value, 2)


@pytest.mark.parametrize(
    ("value", "precision", "expected"),
    [
        (Decimal("1.000000000000000001"), 18, "1.000000000000000001"),
        (Decimal("2.345"), 2, "2.34"),  # banker's rounding
        (7, 2, "7.00"),
        (None, 2, "-"),
    ],
)
def test_format_amount_renders_decimals_and_integers_exactly(value, precision, expected):
    # given / when / then
    assert format_amount(value, precision) == expected
