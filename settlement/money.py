"""Money rules: Decimal only, per-asset precision, explicit rounding."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# Column definition shared by every amount: 38 digits, 18 of them after the point (wei precision).
MAX_DIGITS = 38
DECIMAL_PLACES = 18
MAX_PRECISION = DECIMAL_PLACES
# Rounding for computed values (quantity x price): banker's rounding, the usual ledger choice.
ROUNDING = ROUND_HALF_EVEN


def to_decimal(value: object) -> Decimal:
    """Build a Decimal from a string or int; floats are refused so no binary error sneaks in."""
    if isinstance(value, (bool, float)):
        raise TypeError("money must be given as a string or integer, not a float")
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def quantum(precision: int) -> Decimal:
    return Decimal(1).scaleb(-precision)


def places(value: Decimal) -> int:
    """Number of significant decimal places (trailing zeros do not count)."""
    exponent = value.normalize().as_tuple().exponent
    if not isinstance(exponent, int):  # NaN or infinity
        raise ValueError(f"not a finite number: {value}")
    return max(0, -exponent)


def fits_precision(value: Decimal, precision: int) -> bool:
    return places(value) <= precision


def fits_column(value: Decimal) -> bool:
    """Whether ``value`` fits an amount column (at most MAX_DIGITS - DECIMAL_PLACES digits before the
    point); a computed amount such as quantity x price can exceed it even when both factors fit."""
    return value.is_finite() and (value.is_zero() or value.adjusted() < MAX_DIGITS - DECIMAL_PLACES)


def quantize(value: Decimal, precision: int) -> Decimal:
    return value.quantize(quantum(precision), rounding=ROUNDING)


def format_amount(value: Decimal | None, precision: int) -> str:
    """Render a stored amount at its asset's precision (columns keep 18 places for every asset)."""
    if value is None:
        return "-"
    return format(value.quantize(quantum(precision), rounding=ROUNDING), "f")
