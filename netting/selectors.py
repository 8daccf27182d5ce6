"""Reads across the plan: from a trade leg to the netted instructions that moved its value, and
a participant's liquidity position against its net debit cap."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum

from ledger.models import LedgerAccount
from netting.models import NetDebitCap, NetObligation, NettedInstruction, NettedStatus, NettingWindow
from settlement.models import SettlementInstruction
from settlement.selectors import sees_everything, visible_scope


def netted_instructions_for_leg(leg: SettlementInstruction) -> QuerySet[NettedInstruction]:
    """The payer's and the payee's netted instructions covering ``leg`` (none when a side's
    obligation nets to zero, or before its window closed)."""
    if leg.netting_window_id is None:
        return NettedInstruction.objects.none()
    return NettedInstruction.objects.filter(
        window_id=leg.netting_window_id,
        asset_id=leg.asset_id,
        settlement_date=leg.settlement_date,
        participant_id__in=[leg.payer_id, leg.payee_id],
    )


def leg_net_payment_ids(leg: SettlementInstruction) -> list[int]:
    """The ids of ``leg``'s netted instructions, sorted (the API's ``net_payments``)."""
    return sorted(netted_instructions_for_leg(leg).values_list("pk", flat=True))


def liquidity_position(cap: NetDebitCap) -> dict[str, Decimal]:
    """What the participant holds, has locked, and owes in open pay-ins for the cap's asset."""
    balances = dict(
        LedgerAccount.objects.filter(owner_id=cap.participant_id, asset_id=cap.asset_id).values_list("kind", "balance")
    )
    owed = NettedInstruction.objects.filter(
        participant_id=cap.participant_id, asset_id=cap.asset_id, direction="pay_in"
    ).exclude(status=NettedStatus.SETTLED).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    latest = (
        NetObligation.objects.filter(participant_id=cap.participant_id, asset_id=cap.asset_id)
        .filter(~Q(net=0))
        .order_by("-window_id")
        .values_list("net", flat=True)
        .first()
    )
    return {
        "available": balances.get("available", Decimal(0)),
        "locked": balances.get("locked", Decimal(0)),
        "open_pay_ins": owed,
        "latest_net": latest if latest is not None else Decimal(0),
        "headroom": cap.cap - owed,
    }


def windows_visible_to(user: Any) -> QuerySet[NettingWindow]:
    """Windows describe the whole market: staff only."""
    return NettingWindow.objects.all() if sees_everything(user) else NettingWindow.objects.none()


def net_payments_visible_to(user: Any) -> QuerySet[NettedInstruction]:
    qs = NettedInstruction.objects.select_related("participant", "asset")
    return visible_scope(qs, user, "participant")
