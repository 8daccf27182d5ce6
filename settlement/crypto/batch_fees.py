"""Schedule fees of a batch's cash legs, computed the way ``fees_hold`` computes them for one
leg, with the fee rules read once per (asset, pair of tiers) instead of once per leg."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal

from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from settlement.models import FeeCharge, FeeChargeStatus, FeeKind, FeeParty, FeeRail, SettlementInstruction
from settlement.models.fees import FeeRule, SettlementType
from settlement.services.fees import _charged, _rule_candidates, fee_charge_new, fee_quote_of_rule, fee_rule_pick


def batch_fee_charges(legs: Sequence[SettlementInstruction]) -> dict[int, list[FeeCharge]]:
    """This attempt's schedule charges per charged leg: the recorded ones, or new unsaved ones
    (``batch_fee_charges_save`` records those of the trades that lock)."""
    charged = [leg for leg in legs if _charged(leg)]
    if not charged:
        return {}
    out: dict[int, list[FeeCharge]] = defaultdict(list)
    for charge in FeeCharge.objects.filter(instruction__in=charged, kind=FeeKind.SCHEDULE):
        out[charge.instruction_id].append(charge)
    at = timezone.now()
    rules: dict[tuple[int, frozenset[str]], list[FeeRule]] = {}
    for leg in charged:
        existing = [c for c in out.get(leg.pk, []) if c.attempt == leg.attempt]
        if existing:
            out[leg.pk] = existing
            continue
        out.pop(leg.pk, None)
        tiers = frozenset({leg.payer.tier, leg.payee.tier})
        key = (leg.asset_id, tiers)
        if key not in rules:
            rules[key] = _rule_candidates(
                tiers=set(tiers), asset=leg.asset, rail=FeeRail.LEDGER, settlement_type=SettlementType.GROSS, at=at
            )
        for party, participant in ((FeeParty.PAYER, leg.payer), (FeeParty.PAYEE, leg.payee)):
            quote = fee_quote_of_rule(
                party=party,
                participant=participant,
                asset=leg.asset,
                amount=leg.amount,
                rule=fee_rule_pick(rules[key], participant),
            )
            if quote is not None and quote.fee > 0:
                out[leg.pk].append(fee_charge_new(quote, instruction=leg, attempt=leg.attempt))
    return dict(out)


def payer_fee(charges: Sequence[FeeCharge]) -> Decimal:
    return sum((c.fee for c in charges if c.party == FeeParty.PAYER), Decimal(0))


def batch_fee_charges_save(charges: Sequence[FeeCharge], *, batch_id: int) -> None:
    new = [c for c in charges if c.pk is None]
    if new:
        bulk_create_with_history(new, FeeCharge, default_change_reason=f"computed when batch {batch_id} locked")


def pending_charges(charges: Sequence[FeeCharge]) -> list[FeeCharge]:
    return [c for c in charges if c.status == FeeChargeStatus.PENDING]


def gas_shares(fee: Decimal, legs: list[SettlementInstruction]) -> dict[int, Decimal]:
    """The chain transaction's network fee split evenly over the legs it paid, at the asset's
    precision (rounded down), the remainder to the first leg. Each share stays within the leg's
    reserve when the reserves were equal (the transaction's fee cap is their sum); should one not,
    the excess moves to the next leg with room."""
    if not legs:
        return {}
    quantum = Decimal(1).scaleb(-legs[0].asset.precision)
    even = (fee / len(legs)).quantize(quantum, rounding=ROUND_FLOOR)
    shares = {leg.pk: even for leg in legs}
    shares[legs[0].pk] += fee - even * len(legs)
    overflow = Decimal(0)
    for leg in legs:
        room = leg.fee_lock.amount if leg.fee_lock else Decimal(0)
        shares[leg.pk] += overflow
        overflow = max(shares[leg.pk] - room, Decimal(0))
        shares[leg.pk] -= overflow
    if overflow:  # never when fee <= fee cap = the sum of the reserves
        raise ValueError(f"network fee {fee} exceeds the reserves of its legs")
    return shares


def gas_row(leg: SettlementInstruction, *, fee: Decimal, tx_hash: str) -> FeeCharge:
    return FeeCharge(
        instruction=leg,
        attempt=leg.attempt,
        kind=FeeKind.PASS_THROUGH,
        party=FeeParty.PAYER,
        participant_id=leg.payer_id,
        asset=leg.asset,
        value=leg.amount,
        from_bps=Decimal(0),
        fee=fee,
        status=FeeChargeStatus.POSTED,
        posted_at=timezone.now(),
        cost_source=f"network gas of {tx_hash} (share)"[:255],
    )
