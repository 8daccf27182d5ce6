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
    """Build a Decimal from a string or int; floats are refused so no binary error sneaks in, and
    NaN and infinities are refused: they are no amount."""
    if isinstance(value, (bool, float)):
        raise TypeError("money must be given as a string or integer, not a float")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return amount


def quantum(precision: int) -> Decimal:
    return Decimal(1).scaleb(-precision)


def _significant(value: Decimal) -> tuple[int, int]:
    """(digits, exponent) of ``value`` without trailing zeros, counted exactly: not with
    ``normalize()``, which rounds to the context's 28 digits (so 1.000...0001 with 31 places
    would count as 0 places and pass any precision check, then be rounded by the database)."""
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN or infinity
        raise ValueError(f"not a finite number: {value}")
    if not any(digits):  # zero, however it is written
        return 0, 0
    significant = len(digits)
    while significant > 1 and exponent < 0 and digits[significant - 1] == 0:
        significant, exponent = significant - 1, exponent + 1
    return significant, exponent


def places(value: Decimal) -> int:
    """Number of significant decimal places (trailing zeros do not count)."""
    _digits, exponent = _significant(value)
    return max(0, -exponent)


def integer_digits(value: Decimal) -> int:
    """Number of digits before the decimal point (0 for a value below 1)."""
    digits, exponent = _significant(value)
    return max(0, digits + exponent)


def fits_columns(value: Decimal) -> bool:
    """Whether the amount columns (MAX_DIGITS, DECIMAL_PLACES) hold ``value`` exactly."""
    return places(value) <= DECIMAL_PLACES and integer_digits(value) <= MAX_DIGITS - DECIMAL_PLACES


def fits_precision(value: Decimal, precision: int) -> bool:
    return places(value) <= precision


def fits_column(value: Decimal) -> bool:
    """Whether ``value`` fits an amount column (at most MAX_DIGITS - DECIMAL_PLACES digits before the
    point); a computed amount such as quantity x price can exceed it even when both factors fit."""
    return value.is_finite() and (value.is_zero() or value.adjusted() < MAX_DIGITS - DECIMAL_PLACES)


def quantize(value: Decimal, precision: int) -> Decimal:
    return value.quantize(quantum(precision), rounding=ROUNDING)


def format_amount(value: Decimal | int | None, precision: int) -> str:
    """Render a stored amount at its asset's precision (columns keep 18 places for every asset).
    A float is refused loudly: it is binary (0.1 is not one tenth) and 18-decimal amounts do not fit
    it, so a float here means an amount or an aggregate went through floating point on its way."""
    if value is None:
        return "-"
    if isinstance(value, (bool, float)) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"amounts are formatted from Decimal or int, not {type(value).__name__} ({value!r})")
    return format(Decimal(value).quantize(quantum(precision), rounding=ROUNDING), "f")
