"""The fast path of batch validation: plain code over the rows, no serializer per row.

``trade_rows_validate`` accepts a row only when ``TradeInputSerializer`` would accept it with the
same values (it is stricter: it gives up on anything unusual), and returns ``None`` as soon as one
row is not plainly valid. The caller then runs the serializer over the whole batch, which is the
one source of the per-row error messages. A well-formed batch (the matching engine's every batch)
is validated here, a bad one costs the serializer's time as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework.exceptions import ValidationError

from settlement.api.serializers import AwareDateTimeField, ExactDecimalField, executed_at_error, trade_errors
from settlement.models import Instrument, Participant
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


def _row(
    row: Any,
    *,
    participants: dict[str, Participant],
    instruments: dict[str, Instrument],
    source: str,
    now: datetime,
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
        quantity = _DECIMAL.to_internal_value(row.get("quantity"))
        price = _DECIMAL.to_internal_value(row.get("price"))
        executed_at = _WHEN.to_internal_value(row.get("executed_at"))
    except ValidationError:
        return None
    if executed_at_error(executed_at, now) or trade_errors(instrument, buyer, seller, quantity, price):
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
    for row in items:
        item = _row(row, participants=participants, instruments=instruments, source=source, now=now)
        if item is None:
            return None
        inputs.append(item)
    return inputs
