"""The fast path of batch validation: plain code over the rows, no serializer per row.

``trade_rows_validate`` accepts a row only when ``TradeInputSerializer`` would accept it with the
same values (it is stricter: it gives up on anything unusual), and returns ``None`` as soon as one
row is not plainly valid. The caller then runs the serializer over the whole batch, which is the
one source of the per-row error messages. A well-formed batch (the matching engine's every batch)
is validated here, a bad one costs the serializer's time as before.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from rest_framework.exceptions import ValidationError

from reference.models import Instrument, Participant
from settlement.api.serializers import AwareDateTimeField, ExactDecimalField, executed_at_error, trade_errors
from settlement.services.trades import TradeInput

# The serializer's CharFields and their max_length.
_TEXTS = (("external_id", 100), ("symbol", 40), ("buyer", 32), ("seller", 32))
_SOURCE_MAX = 64
_DECIMAL = ExactDecimalField()
_WHEN = AwareDateTimeField()


def _plain_text(value: Any, limit: int) -> bool:
    """A string the serializer's CharField keeps as it is: not blank, no surrounding whitespace
    (it would trim it), ASCII without NUL (it refuses NUL and surrogates), within max_length."""
    return (
        type(value) is str
        and 0 < len(value) <= limit
        and value.isascii()
        and "\x00" not in value
        and value.strip() == value
    )


class _Parsed:
    """A batch repeats its prices, quantities and timestamps: each distinct string is parsed once."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.decimals: dict[str, Decimal] = {}
        self.times: dict[str, datetime] = {}
        self.fits: dict[tuple[Any, ...], bool] = {}

    def decimal(self, value: Any) -> Decimal:
        if type(value) is not str:
            return _DECIMAL.to_internal_value(value)
        if value not in self.decimals:
            self.decimals[value] = _DECIMAL.to_internal_value(value)
        return self.decimals[value]

    def executed_at(self, value: Any) -> datetime:
        if type(value) is not str or value not in self.times:
            parsed = _WHEN.to_internal_value(value)
            if executed_at_error(parsed, self.now):
                raise ValidationError("executed_at")
            if type(value) is not str:
                return parsed
            self.times[value] = parsed
        return self.times[value]


def _fits(parsed: _Parsed, row: dict[str, Any], trade: tuple[Instrument, Participant, Participant]) -> bool:
    """The trade's cross-field checks pass (distinct parties, precision, notional). With distinct
    parties the verdict depends on the instrument, quantity and price only: memoised on their raw
    strings (``Decimal("1.0") == Decimal("1")``, but their decimal places differ)."""
    instrument, buyer, seller = trade
    if buyer.pk == seller.pk:
        return False
    key = (row["symbol"], row["quantity"], row["price"])
    if type(key[1]) is str and type(key[2]) is str and key in parsed.fits:
        return parsed.fits[key]
    ok = not trade_errors(instrument, buyer, seller, parsed.decimal(key[1]), parsed.decimal(key[2]))
    if type(key[1]) is str and type(key[2]) is str:
        parsed.fits[key] = ok
    return ok


def _row(
    row: Any,
    *,
    participants: dict[str, Participant],
    instruments: dict[str, Instrument],
    source: str,
    parsed: _Parsed,
) -> TradeInput | None:
    if type(row) is not dict or not all(_plain_text(row.get(name), limit) for name, limit in _TEXTS):
        return None
    if "source" in row and not (_plain_text(row["source"], _SOURCE_MAX) and row["source"] == source):
        return None
    instrument = instruments.get(row["symbol"])
    buyer, seller = participants.get(row["buyer"]), participants.get(row["seller"])
    if instrument is None or buyer is None or seller is None:
        return None
    try:
        quantity, price = parsed.decimal(row.get("quantity")), parsed.decimal(row.get("price"))
        executed_at = parsed.executed_at(row.get("executed_at"))
    except ValidationError:
        return None
    if not _fits(parsed, row, (instrument, buyer, seller)):
        return None
    return TradeInput(
        source=source,
        external_id=row["external_id"],
        instrument=instrument,
        buyer=buyer,
        seller=seller,
        quantity=quantity,
        price=price,
        executed_at=executed_at,
    )


def trade_rows_validate(
    items: list[Any],
    *,
    participants: dict[str, Participant],
    instruments: dict[str, Instrument],
    source: str,
    now: datetime,
) -> list[TradeInput] | None:
    """Every row as a ``TradeInput``, or ``None`` when any row needs the serializer's verdict."""
    inputs = []
    parsed = _Parsed(now)
    for row in items:
        item = _row(row, participants=participants, instruments=instruments, source=source, parsed=parsed)
        if item is None:
            return None
        inputs.append(item)
    return inputs
