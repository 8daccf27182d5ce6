"""The fees a trade would be charged now (a read: nothing is stored).

The settlement path and the fee rail come from ``settlement.routing``: a gross T+0 crypto trade is
quoted on the ledger rail as a gross movement; a netted trade is quoted as if it were the whole
net payment of its participants in the window (``indicative``), on the bank rail when it is paid
in fiat.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from common.money import quantize
from reference.models import Instrument, Participant
from settlement.models.fees import SettlementType
from settlement.routing import cash_fee_rail, settlement_type
from settlement.services.fees import FeeQuote, fee_quotes


@dataclass(frozen=True)
class FeePreview:
    instrument: Instrument
    notional: Decimal
    settlement_type: str
    indicative: bool  # netted: charged on the net payments, not on this trade
    quotes: list[FeeQuote]


def fee_preview(
    *,
    buyer: Participant,
    seller: Participant,
    instrument: Instrument,
    quantity: Decimal,
    price: Decimal,
    viewer: Participant | None = None,
) -> FeePreview:
    """The quote of a trade of ``quantity`` at ``price``, per party; with ``viewer`` (a
    participant) only that participant's own quote (never the counterparty's rule, rate or fee)."""
    quote_asset = instrument.quote
    notional = quantize(quantity * price, quote_asset.precision)
    kind = settlement_type(instrument)
    quotes = fee_quotes(
        payer=buyer,
        payee=seller,
        asset=quote_asset,
        amount=notional,
        rail=cash_fee_rail(instrument),
        settlement_type=kind,
    )
    if viewer is not None:
        quotes = [q for q in quotes if q.participant.pk == viewer.pk]
    return FeePreview(instrument, notional, kind, kind == SettlementType.NETTED, quotes)
