"""Fee calculation and the fee side of settlement (see ``settlement.models.fees``).

Fees are charged on the cash (payment) leg of a trade: the buyer pays its fee on top of what it
pays (held in the same ledger lock), the seller's fee comes out of what it receives, and both go
to the asset's fee revenue account in the settlement's own journal. Computation is exact
Decimal: value x bps / 10,000, limited to the rule's minimum and maximum, plus the flat fee, then
rounded once to the asset's precision with ``CLEARHOUSE_FEE_ROUNDING`` (default ROUND_HALF_UP).

The fees of netted payments (one per net payment) are ``netting.fees``; it builds on the public
rule, quote and charge helpers here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from common.choices import Leg as LegKind
from reference.models import Asset, Participant
from settlement.locking import lock_fee_charges
from settlement.models import FeeCharge, FeeRule, SettlementInstruction
from settlement.models.fees import FeeChargeStatus, FeeKind, FeeParty, FeeRail, SettlementType

FEE_REVENUE = "fee-revenue"


@dataclass(frozen=True)
class FeeQuote:
    party: str
    participant: Participant
    asset: Asset
    rule: FeeRule | None
    value: Decimal
    bps: Decimal
    from_bps: Decimal
    limited: str
    flat: Decimal
    fee: Decimal


def _rule_candidates(*, tiers: set[str], asset: Asset, rail: str, settlement_type: str, at: datetime) -> list[FeeRule]:
    """Every rule in force at ``at`` that could apply to a participant of one of ``tiers``."""
    return list(
        FeeRule.objects.filter(
            Q(valid_to__isnull=True) | Q(valid_to__gt=at),
            Q(tier="") | Q(tier__in=tiers),
            Q(asset__isnull=True) | Q(asset=asset),
            Q(asset_kind="") | Q(asset_kind=asset.kind),
            Q(rail="") | Q(rail=rail),
            Q(settlement_type="") | Q(settlement_type=settlement_type),
            valid_from__lte=at,
        )
    )


def fee_rule_pick(candidates: list[FeeRule], participant: Participant) -> FeeRule | None:
    """The most specific, then the newest, of ``candidates`` that applies to ``participant``."""
    fitting = (r for r in candidates if r.tier in ("", participant.tier))
    return max(fitting, key=lambda r: (r.specificity, r.valid_from, r.pk), default=None)


def fee_rule_for(
    *, participant: Participant, asset: Asset, rail: str, settlement_type: str, at: datetime
) -> FeeRule | None:
    """The rule in force at ``at`` for these criteria: the most specific, then the newest."""
    candidates = _rule_candidates(
        tiers={participant.tier}, asset=asset, rail=rail, settlement_type=settlement_type, at=at
    )
    return fee_rule_pick(candidates, participant)


def fee_compute(*, rule: FeeRule, value: Decimal, asset: Asset) -> tuple[Decimal, str, Decimal]:
    """(value x bps / 10,000, which limit applied, the fee rounded to the asset's precision)."""
    from_bps = value * rule.bps / Decimal(10_000)
    part, limited = from_bps, ""
    if part < rule.minimum:
        part, limited = rule.minimum, "minimum"
    if rule.maximum is not None and part > rule.maximum:
        part, limited = rule.maximum, "maximum"
    fee = (part + rule.flat).quantize(Decimal(1).scaleb(-asset.precision), rounding=settings.CLEARHOUSE_FEE_ROUNDING)
    return from_bps, limited, fee


def fee_quote_of_rule(
    *, party: str, participant: Participant, asset: Asset, amount: Decimal, rule: FeeRule | None
) -> FeeQuote | None:
    """What ``rule`` charges ``participant`` as ``party`` on ``amount`` (None without a rule); a
    payee's fee never exceeds what it receives."""
    if rule is None:
        return None
    from_bps, limited, fee = fee_compute(rule=rule, value=amount, asset=asset)
    if party == FeeParty.PAYEE:
        fee = min(fee, amount)
    return FeeQuote(party, participant, asset, rule, amount, rule.bps, from_bps, limited, rule.flat, fee)


def fee_quote(
    *,
    party: str,
    participant: Participant,
    asset: Asset,
    amount: Decimal,
    rail: str,
    settlement_type: str,
    at: datetime,
) -> FeeQuote | None:
    """What ``participant`` would be charged as ``party`` on a cash movement of ``amount`` (None
    when no rule applies); a payee's fee never exceeds what it receives."""
    rule = fee_rule_for(participant=participant, asset=asset, rail=rail, settlement_type=settlement_type, at=at)
    return fee_quote_of_rule(party=party, participant=participant, asset=asset, amount=amount, rule=rule)


def fee_quotes(
    *,
    payer: Participant,
    payee: Participant,
    asset: Asset,
    amount: Decimal,
    rail: str = FeeRail.LEDGER,
    settlement_type: str = SettlementType.GROSS,
    at: datetime | None = None,
) -> list[FeeQuote]:
    """What payer and payee would be charged on a cash movement of ``amount`` (the rules of
    both parties read in one query)."""
    at = at or timezone.now()
    candidates = _rule_candidates(
        tiers={payer.tier, payee.tier}, asset=asset, rail=rail, settlement_type=settlement_type, at=at
    )
    quotes = [
        fee_quote_of_rule(party=party, participant=participant, asset=asset, amount=amount,
               rule=fee_rule_pick(candidates, participant))
        for party, participant in ((FeeParty.PAYER, payer), (FeeParty.PAYEE, payee))
    ]  # fmt: skip
    return [q for q in quotes if q is not None]


def fee_charge_new(quote: FeeQuote, **target: Any) -> FeeCharge:
    """An unsaved pending charge of ``quote`` on ``target`` (instruction or netted, attempt)."""
    return FeeCharge(
        party=quote.party,
        participant=quote.participant,
        asset=quote.asset,
        rule=quote.rule,
        value=quote.value,
        bps=quote.bps,
        from_bps=quote.from_bps,
        limited=quote.limited,
        flat=quote.flat,
        fee=quote.fee,
        **target,
    )


def _charged(instruction: SettlementInstruction) -> bool:
    return instruction.leg == LegKind.PAYMENT and instruction.netting_window_id is None


def fees_hold(*, instruction: SettlementInstruction) -> Decimal:
    """Compute and record this attempt's fees (once); returns what the payer must hold on top
    of the amount. Called when the payer's funds are locked, inside that transaction."""
    if not _charged(instruction):
        return Decimal(0)
    existing = list(
        FeeCharge.objects.filter(instruction=instruction, attempt=instruction.attempt, kind=FeeKind.SCHEDULE)
    )
    if not existing:
        quotes = fee_quotes(
            payer=instruction.payer, payee=instruction.payee, asset=instruction.asset, amount=instruction.amount
        )
        existing = bulk_create_with_history(
            [fee_charge_new(q, instruction=instruction, attempt=instruction.attempt) for q in quotes if q.fee > 0],
            FeeCharge,
            default_change_reason=f"computed when {instruction} was locked",
        )
    return sum((c.fee for c in existing if c.party == FeeParty.PAYER), Decimal(0))


def fees_pending(instruction: SettlementInstruction) -> list[FeeCharge]:
    """This attempt's pending schedule fees; only a cash (payment) leg is ever charged
    (``fees_hold``), so a delivery leg costs no query."""
    if instruction.leg != LegKind.PAYMENT:
        return []
    return list(
        FeeCharge.objects.filter(
            instruction=instruction, attempt=instruction.attempt, status=FeeChargeStatus.PENDING, kind=FeeKind.SCHEDULE
        )
    )


def fee_revenue_account(asset: Asset):
    from ledger.services.ledger import system_account_for

    return system_account_for(code=FEE_REVENUE, asset=asset, allow_negative=False)


def fee_charges_mark(
    *,
    charges: list[FeeCharge],
    status: str,
    actor: Any,
    reason: str,
    journal: Any = None,
    log_entries: list[Any] | None = None,
) -> None:
    """Move charges to ``status`` by their django-fsm transitions (history and transition log,
    with actor and reason); ``journal`` is the one that posted them, or for a reversal the one
    that returned them. Runs after the caller's ledger work (accounts before the log head). The
    charges are locked in one query (pk order); with ``log_entries`` their log entries are added
    to that list for the caller to append with its own, else appended here."""
    from ledger.services.audit import transition_log_append, transition_run

    if not charges:
        return
    locked = lock_fee_charges([c.pk for c in charges])
    entries = []
    for charge in locked:
        method = {
            FeeChargeStatus.POSTED: charge.mark_posted,
            FeeChargeStatus.VOIDED: charge.mark_voided,
            FeeChargeStatus.REVERSED: charge.mark_reversed,
        }[status]
        if journal is not None and status == FeeChargeStatus.REVERSED:
            charge.reversal_journal = journal
        elif journal is not None:
            charge.journal, charge.posted_at = journal, timezone.now()
        metadata = {"fee": str(charge.fee), "journal": journal.pk if journal is not None else None}
        entries.append(
            transition_run(charge, method, entity="feecharge", actor=actor, reason=reason, metadata=metadata, log=False)
        )
    if log_entries is not None:
        log_entries.extend(entries)
    else:
        transition_log_append(entries=entries, actor=actor)


def lock_post_with_fees(
    *,
    lock: Any,
    to_account: Any,
    amount: Decimal,
    charges: list[FeeCharge],
    actor: Any,
    reason: str,
    log_entries: list[Any] | None = None,
) -> Decimal:
    """Post ``lock`` to ``to_account``: ``amount`` less the payee's fee, and every charge to the
    fee revenue account, in one journal; the charges are marked posted with it. Serves gross
    cash legs and netted payments alike. Returns the fees posted. With ``log_entries`` the
    transition-log entries (lock, charges) are added to that list for the caller to append."""
    from ledger.services.ledger import Leg, ledger_post, ledger_post_journal

    total = sum((c.fee for c in charges), Decimal(0))
    payee_fee = sum((c.fee for c in charges if c.party == FeeParty.PAYEE), Decimal(0))
    fee_legs = [Leg(fee_revenue_account(lock.asset), total)] if total else []
    posted = ledger_post(
        lock=lock,
        to_account=to_account,
        actor=actor,
        reason=reason,
        amount=amount - payee_fee,
        extra_legs=fee_legs,
        log_entries=log_entries,
    )
    if charges:
        fee_charges_mark(
            charges=charges,
            status=FeeChargeStatus.POSTED,
            journal=ledger_post_journal(posted),
            actor=actor,
            reason=reason,
            log_entries=log_entries,
        )
    return total


# --- pass-through costs -------------------------------------------------------------------------
# A cost the house actually paid on a participant's behalf, charged to it at cost: network gas
# (booked with the chain settlement, see settlement.crypto.pipeline) and the charges a bank
# reported on the booking of a netted payment (``netting.fees.bank_charge_pass_on``, applied by
# reconciliation.services.bank_charges_pass_on).
BANK_CHARGES = "bank-charges"


def gas_charge_record(*, instruction: SettlementInstruction, fee: Decimal, journal: Any, tx_hash: str) -> None:
    """Show the gas a chain leg's sender paid in its fee breakdown (posted in ``journal``)."""
    if fee <= 0:
        return
    FeeCharge.objects.get_or_create(
        instruction=instruction,
        attempt=instruction.attempt,
        kind=FeeKind.PASS_THROUGH,
        defaults={
            "party": FeeParty.PAYER,
            "participant_id": instruction.payer_id,
            "asset": instruction.asset,
            "value": instruction.amount,
            "from_bps": Decimal(0),
            "fee": fee,
            "status": FeeChargeStatus.POSTED,
            "journal": journal,
            "posted_at": timezone.now(),
            "cost_source": f"network gas of {tx_hash}"[:255],
        },
    )
