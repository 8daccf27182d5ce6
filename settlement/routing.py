"""Which way a trade settles: the one home of the rule.

A trade whose base asset is crypto on a T+0 cycle settles *gross*, at once, leg by leg through the
crypto pipeline (on chain, or on the internal ledger for a chain without a rail). Every other trade
(fiat, securities, crypto on a later cycle) settles *netted*: its legs go into the open netting
window of its asset class and move with the window's net payments over the bank and custody rails.

Services, selectors and views ask here; none of them reads ``Asset.is_crypto_t0`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q

from common.choices import AssetClass, AssetKind, SettlementCycle
from settlement.models.fees import FeeRail, SettlementType

if TYPE_CHECKING:
    from reference.models import Asset, Instrument


def settles_gross(instrument: Instrument) -> bool:
    """True when a trade in ``instrument`` settles gross T+0 through the crypto pipeline, False
    when it settles netted through a window."""
    return instrument.base.is_crypto_t0


def asset_class_of(base: Asset) -> str:
    """The netting window class of a netted trade whose base asset is ``base``."""
    return {"fiat": AssetClass.FIAT, "security": AssetClass.SECURITY}.get(base.kind, AssetClass.CRYPTO)


def settlement_type(instrument: Instrument) -> str:
    """``SettlementType.GROSS`` or ``SettlementType.NETTED`` for a trade in ``instrument``."""
    return SettlementType.GROSS if settles_gross(instrument) else SettlementType.NETTED


def cash_fee_rail(instrument: Instrument) -> str:
    """The rail whose fee rules price a trade's cash leg: the bank for a netted trade paid in fiat
    (its net payment goes over a bank rail), the internal ledger otherwise."""
    if not settles_gross(instrument) and instrument.quote.kind == AssetKind.FIAT:
        return FeeRail.BANK
    return FeeRail.LEDGER


def settles_gross_q(instrument_path: str = "instrument") -> Q:
    """The same rule as a query filter on the instrument reached by ``instrument_path`` (e.g.
    ``"trade__instrument"`` from an instruction)."""
    return Q(
        **{
            f"{instrument_path}__base__kind": AssetKind.CRYPTO,
            f"{instrument_path}__base__settlement_cycle": SettlementCycle.T0,
        }
    )
