"""Fees on netted payments (the gross legs' fees are ``settlement.services.fees``).

One fee per net payment, charged to its participant on the net amount (settlement type "netted",
rail bank / custody / ledger by the payment's method); cash assets only. A pay-in holds the fee
with the amount; a pay-out's fee comes out of what the participant receives. Either way it reaches
the fee revenue account in the payment's own settlement journal (``lock_post_with_fees``).

Pass-through: the charges a bank reported on the booking of a netted payment are charged to its
participant at cost (``bank_charge_pass_on``, applied by reconciliation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.actors import Actor
from common.choices import AccountKind, AssetKind
from common.exceptions import InsufficientFunds
from ledger.services.ledger import account_for, ledger_charge, system_account_for
from netting.models import Direction, NettedInstruction, RailMethod
from reference.models import Asset, Participant
from settlement.locking import lock_fee_charges
from settlement.models import FeeCharge, FeeRule
from settlement.models.fees import FeeChargeStatus, FeeKind, FeeParty, FeeRail, SettlementType
from settlement.services.fees import (
    BANK_CHARGES,
    fee_charge_new,
    fee_charges_mark,
    fee_quote_of_rule,
    fee_rule_for,
    fee_rule_pick,
)


def _netted_rail(method: str) -> str:
    if method == RailMethod.CUSTODY:
        return FeeRail.CUSTODY
    if method in ("ach", "wire", "sepa", "swift"):
        return FeeRail.BANK
    return FeeRail.LEDGER


@dataclass(frozen=True)
class NettedFeeBook:
    """What a batch of netted payments needs for their fees, read once for the batch (issue 19:
    was a rule query and a charge query per payment): the rules that may be in force while the
    batch runs, and the schedule charges the payments already have, by (payment, attempt)."""

    rules: tuple[FeeRule, ...]
    charges: dict[tuple[int, int], FeeCharge]

    def rule_for(self, *, participant: Participant, asset: Asset, rail: str, at: datetime) -> FeeRule | None:
        """``fee_rule_for`` for settlement type netted, in memory: the same filter, then the most
        specific, then the newest rule."""
        fitting = [
            r
            for r in self.rules
            if r.valid_from <= at
            and (r.valid_to is None or r.valid_to > at)
            and (r.asset_id is None or r.asset_id == asset.pk)
            and r.asset_kind in ("", asset.kind)
            and r.rail in ("", rail)
            and r.settlement_type in ("", SettlementType.NETTED)
        ]
        return fee_rule_pick(fitting, participant)


def netted_fee_book(*, netted_ids: list[int], at: datetime | None = None) -> NettedFeeBook:
    """The fee book of a batch of netted payments (two queries, whatever the batch size)."""
    at = at or timezone.now()
    rules = FeeRule.objects.filter(
        Q(valid_to__isnull=True) | Q(valid_to__gt=at), Q(settlement_type="") | Q(settlement_type=SettlementType.NETTED)
    )
    charges = FeeCharge.objects.filter(netted_id__in=netted_ids, kind=FeeKind.SCHEDULE).order_by("pk")
    found: dict[tuple[int, int], FeeCharge] = {}
    for charge in charges:
        if charge.netted_id is not None:  # always (filtered on it): for the type checker
            found.setdefault((charge.netted_id, charge.attempt), charge)
    return NettedFeeBook(rules=tuple(rules), charges=found)


def netted_fee_hold(*, ni: NettedInstruction, attempt: int, book: NettedFeeBook | None = None) -> Decimal:
    """Compute and record the fee of this lock of a netted payment (once); returns what a pay-in
    must hold on top of its amount (a pay-out holds nothing extra: its fee is deducted). With
    ``book`` (read before the payment's row was locked) the rules and the existing charge come
    from it: a charge is only ever created together with the lock that moves the payment out of
    pending, so one created after the book was read is seen as a locked payment, never here."""
    if ni.asset.kind == AssetKind.SECURITY:
        return Decimal(0)
    if book is None:
        charge = FeeCharge.objects.filter(netted=ni, attempt=attempt, kind=FeeKind.SCHEDULE).first()
    else:
        charge = book.charges.get((ni.pk, attempt))
    if charge is None:
        party = FeeParty.PAYER if ni.direction == Direction.PAY_IN else FeeParty.PAYEE
        rail, at = _netted_rail(ni.method), timezone.now()
        if book is None:
            rule = fee_rule_for(
                participant=ni.participant, asset=ni.asset, rail=rail, settlement_type=SettlementType.NETTED, at=at
            )
        else:
            rule = book.rule_for(participant=ni.participant, asset=ni.asset, rail=rail, at=at)
        quote = fee_quote_of_rule(party=party, participant=ni.participant, asset=ni.asset, amount=ni.amount, rule=rule)
        if quote is None or quote.fee <= 0:
            return Decimal(0)
        charge = fee_charge_new(quote, netted=ni, attempt=attempt)
        charge.save()
    return charge.fee if charge.party == FeeParty.PAYER and charge.status == FeeChargeStatus.PENDING else Decimal(0)


def netted_fees_pending(ni: NettedInstruction) -> list[FeeCharge]:
    return list(
        FeeCharge.objects.filter(
            netted=ni, attempt=ni.locks_taken, status=FeeChargeStatus.PENDING, kind=FeeKind.SCHEDULE
        )
    )


def netted_fees_pending_many(nis: list[NettedInstruction]) -> dict[int, list[FeeCharge]]:
    """``netted_fees_pending`` of many payments in one query (a batch of settlements)."""
    wanted = {ni.pk: ni.locks_taken for ni in nis}
    found: dict[int, list[FeeCharge]] = {pk: [] for pk in wanted}
    for charge in FeeCharge.objects.filter(
        netted_id__in=list(wanted), status=FeeChargeStatus.PENDING, kind=FeeKind.SCHEDULE
    ).order_by("pk"):
        if charge.netted_id is not None and charge.attempt == wanted[charge.netted_id]:
            found[charge.netted_id].append(charge)
    return found


# --- pass-through costs -------------------------------------------------------------------------


class ChargeOutcome:
    POSTED = "posted"
    ALREADY = "already"
    SHORT = "short"  # the participant does not hold it yet: stays pending, retried by the sweep


def bank_charge_pass_on(*, ni: NettedInstruction, fee: Decimal, external_key: str, source: str, actor: Actor) -> str:
    """Charge a bank's charges on netted payment ``ni`` to its participant, once per booking
    (``external_key``): its available cash to the house's bank-charges account, in one journal
    (kind fee). A participant short of the amount leaves the charge pending and raises an alert;
    the next sweep tries again."""
    from common.ports import ops_alert

    with transaction.atomic():
        charge, _ = FeeCharge.objects.get_or_create(
            external_key=external_key,
            defaults={
                "netted": ni,
                "attempt": ni.locks_taken,
                "kind": FeeKind.PASS_THROUGH,
                "party": FeeParty.PAYER,
                "participant": ni.participant,
                "asset": ni.asset,
                "value": ni.amount,
                "from_bps": Decimal(0),
                "fee": fee,
                "cost_source": source[:255],
            },
        )
        charge = lock_fee_charges([charge.pk]).get()
        if charge.status == FeeChargeStatus.POSTED:
            return ChargeOutcome.ALREADY
        try:
            with transaction.atomic():
                journal = ledger_charge(
                    debit=account_for(owner=ni.participant, asset=ni.asset, kind=AccountKind.AVAILABLE),
                    credit=system_account_for(code=BANK_CHARGES, asset=ni.asset),
                    amount=charge.fee,
                    reference=f"bank-charges:{external_key}"[:255],
                    actor=actor,
                    memo=source,
                )
        except InsufficientFunds as exc:
            ops_alert(
                title=f"Bank charges of {charge.fee} {ni.asset.code} on netted payment #{ni.pk} wait for funds",
                body=f"{ni.participant} does not hold the charges reported by {source}: {exc.message}. "
                "The charge stays pending and is posted by the next reconciliation sweep once funds arrive.",
                level="warning",
                dedupe_key=f"bank-charges-short:{external_key}"[:255],
            )
            return ChargeOutcome.SHORT
        fee_charges_mark(
            charges=[charge], status=FeeChargeStatus.POSTED, journal=journal, actor=actor, reason=f"passed on: {source}"
        )
        return ChargeOutcome.POSTED
