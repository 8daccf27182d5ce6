"""Fee calculation and the fee side of settlement (see ``settlement.models.fees``).

Fees are charged on the cash (payment) leg of a trade: the buyer pays its fee on top of what it
pays (held in the same ledger lock), the seller's fee comes out of what it receives, and both go
to the asset's fee revenue account in the settlement's own journal. Computation is exact
Decimal: value x bps / 10,000, limited to the rule's minimum and maximum, plus the flat fee, then
rounded once to the asset's precision with ``CLEARHOUSE_FEE_ROUNDING`` (default ROUND_HALF_UP).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from common.choices import Leg as LegKind
from reference.models import Asset, Participant
from settlement.locking import lock_fee_charges
from settlement.models import FeeCharge, FeeRule, SettlementInstruction
from settlement.models.fees import FeeChargeStatus, FeeKind, FeeParty, FeeRail, SettlementType

if TYPE_CHECKING:
    from ledger.models import LedgerAccount

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


def _rule_pick(candidates: list[FeeRule], participant: Participant) -> FeeRule | None:
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
    return _rule_pick(candidates, participant)


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


def _quote(
    *, party: str, participant: Participant, asset: Asset, amount: Decimal, rule: FeeRule | None
) -> FeeQuote | None:
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
    return _quote(party=party, participant=participant, asset=asset, amount=amount, rule=rule)


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
        _quote(party=party, participant=participant, asset=asset, amount=amount,
               rule=_rule_pick(candidates, participant))
        for party, participant in ((FeeParty.PAYER, payer), (FeeParty.PAYEE, payee))
    ]  # fmt: skip
    return [q for q in quotes if q is not None]


def _charge(quote: FeeQuote, **target: Any) -> FeeCharge:
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
            [_charge(q, instruction=instruction, attempt=instruction.attempt) for q in quotes if q.fee > 0],
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


def fee_revenue_account(asset: Asset) -> LedgerAccount:
    from ledger.services.ledger import system_account_for

    return system_account_for(code=FEE_REVENUE, asset=asset, allow_negative=False)


# --- netted payments ----------------------------------------------------------------------------
# One fee per net payment, charged to its participant on the net amount (settlement type
# "netted", rail bank / custody / ledger by the payment's method); cash assets only. A pay-in
# holds the fee with the amount; a pay-out's fee comes out of what the participant receives.
# Either way it reaches the fee revenue account in the payment's own settlement journal.


def _netted_rail(method: str) -> str:
    if method == "custody":
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
        return _rule_pick(fitting, participant)


def netted_fee_book(*, netted_ids: list[int], at: datetime | None = None) -> NettedFeeBook:
    """The fee book of a batch of netted payments (two queries, whatever the batch size)."""
    at = at or timezone.now()
    rules = FeeRule.objects.filter(
        Q(valid_to__isnull=True) | Q(valid_to__gt=at), Q(settlement_type="") | Q(settlement_type=SettlementType.NETTED)
    )
    charges = FeeCharge.objects.filter(netted_id__in=netted_ids, kind=FeeKind.SCHEDULE).order_by("pk")
    found: dict[tuple[int, int], FeeCharge] = {}
    for charge in charges:
        found.setdefault((charge.netted_id, charge.attempt), charge)
    return NettedFeeBook(rules=tuple(rules), charges=found)


def netted_fee_hold(*, ni: Any, attempt: int, book: NettedFeeBook | None = None) -> Decimal:
    """Compute and record the fee of this lock of a netted payment (once); returns what a pay-in
    must hold on top of its amount (a pay-out holds nothing extra: its fee is deducted). With
    ``book`` (read before the payment's row was locked) the rules and the existing charge come
    from it: a charge is only ever created together with the lock that moves the payment out of
    pending, so one created after the book was read is seen as a locked payment, never here."""
    from common.choices import AssetKind

    if ni.asset.kind == AssetKind.SECURITY:
        return Decimal(0)
    if book is None:
        charge = FeeCharge.objects.filter(netted=ni, attempt=attempt, kind=FeeKind.SCHEDULE).first()
    else:
        charge = book.charges.get((ni.pk, attempt))
    if charge is None:
        party = FeeParty.PAYER if ni.direction == "pay_in" else FeeParty.PAYEE
        rail, at = _netted_rail(ni.method), timezone.now()
        if book is None:
            rule = fee_rule_for(
                participant=ni.participant, asset=ni.asset, rail=rail, settlement_type=SettlementType.NETTED, at=at
            )
        else:
            rule = book.rule_for(participant=ni.participant, asset=ni.asset, rail=rail, at=at)
        quote = _quote(party=party, participant=ni.participant, asset=ni.asset, amount=ni.amount, rule=rule)
        if quote is None or quote.fee <= 0:
            return Decimal(0)
        charge = _charge(quote, netted=ni, attempt=attempt)
        charge.save()
    return charge.fee if charge.party == FeeParty.PAYER and charge.status == FeeChargeStatus.PENDING else Decimal(0)


def netted_fees_pending(ni: Any) -> list[FeeCharge]:
    return list(
        FeeCharge.objects.filter(
            netted=ni, attempt=ni.locks_taken, status=FeeChargeStatus.PENDING, kind=FeeKind.SCHEDULE
        )
    )


def netted_fees_pending_many(nis: list[Any]) -> dict[int, list[FeeCharge]]:
    """``netted_fees_pending`` of many payments in one query (a batch of settlements)."""
    wanted = {ni.pk: ni.locks_taken for ni in nis}
    found: dict[int, list[FeeCharge]] = {pk: [] for pk in wanted}
    for charge in FeeCharge.objects.filter(
        netted_id__in=list(wanted), status=FeeChargeStatus.PENDING, kind=FeeKind.SCHEDULE
    ).order_by("pk"):
        if charge.attempt == wanted[charge.netted_id]:
            found[charge.netted_id].append(charge)
    return found


def fee_charges_mark(
    *,
    charges: list[FeeCharge],
    status: FeeChargeStatus,
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
# reported on the booking of a netted payment (reconciliation.services.bank_charges_pass_on).
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


class ChargeOutcome:
    POSTED = "posted"
    ALREADY = "already"
    SHORT = "short"  # the participant does not hold it yet: stays pending, retried by the sweep


def bank_charge_pass_on(*, ni: Any, fee: Decimal, external_key: str, source: str, actor: Any) -> str:
    """Charge a bank's charges on netted payment ``ni`` to its participant, once per booking
    (``external_key``): its available cash to the house's bank-charges account, in one journal
    (kind fee). A participant short of the amount leaves the charge pending and raises an alert;
    the next sweep tries again."""
    from django.db import transaction

    from common.choices import AccountKind
    from common.exceptions import InsufficientFunds
    from common.ports import ops_alert
    from ledger.services.ledger import account_for, ledger_charge, system_account_for

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
        charge = FeeCharge.objects.select_for_update().get(pk=charge.pk)
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
