"""Batch stage 1, lock: every trade of the batch holds its funds (both legs) and the network-fee
reserve of its chain leg in one transaction, set-based (``ledger_lock_many``: accounts locked once
in pk order, the holds written in bulk, the balances in one statement). A trade short of funds
fails alone, with the outcome one-by-one locking in pk order would give; the database has the
last word (a refused batch is bisected).

Also here: failing many trades at once (every lock they hold voided, pending fee charges voided,
both legs failed, one notification per participant), shared by the later stages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.actors import Actor
from common.choices import InstructionStatus, LockStatus
from common.ports import notify
from ledger.models import LedgerLock
from ledger.services.audit import transition_log_deferred, transition_run
from ledger.services.batch import HoldRequest, ledger_lock_many, ledger_void_many
from ledger.services.transitions_many import transitions_run_many
from settlement.crypto.batch_fees import batch_fee_charges, batch_fee_charges_save, payer_fee, pending_charges
from settlement.crypto.trades import on_chain
from settlement.locking import lock_batch, lock_batch_legs
from settlement.models import BatchStatus, CryptoBatch, FeeChargeStatus, SettlementInstruction
from settlement.services.fees import fee_charges_mark
from settlement.services.halts import PIPELINE
from settlement.services.instructions import ENTITY, _lock_reference

S = InstructionStatus
LEG_RELATED = ("asset", "payer", "payee", "trade", "lock", "fee_lock")


def held(lock: LedgerLock | None) -> LedgerLock:
    """A locked leg's hold (funds or fee reserve): never missing once the batch is locked."""
    if lock is None:
        raise ValueError("a locked leg of a batch has no hold")
    return lock


def fee_reference(leg: SettlementInstruction) -> str:
    return f"{leg.reference}:a{leg.attempt}:fee"


def by_trade(legs: Iterable[SettlementInstruction]) -> dict[int, list[SettlementInstruction]]:
    out: dict[int, list[SettlementInstruction]] = defaultdict(list)
    for leg in legs:
        out[leg.trade_id].append(leg)
    return dict(sorted(out.items()))


def batch_lock(*, batch_id: int, fee_reserves: dict[int, Decimal], actor: Actor = PIPELINE) -> bool:
    """open → locked. ``fee_reserves``: the chain's per-payout network-fee reserve by asset id,
    asked of the chain before (outside) the transaction. Returns False when the batch was not open (a
    duplicate task, or the stage done already)."""
    with transaction.atomic(), transition_log_deferred():
        batch = lock_batch(batch_id).first()
        if batch is None or batch.status != BatchStatus.OPEN:
            return False
        trades = by_trade(lock_batch_legs(batch, related=LEG_RELATED))
        # a trade an operations action moved on meanwhile (cancelled) is not locked
        live = {t: legs for t, legs in trades.items() if all(leg.status == S.PENDING for leg in legs)}
        charges = batch_fee_charges([leg for legs in live.values() for leg in legs])
        expires_at = timezone.now() + settings.CLEARHOUSE_LOCK_TTL
        requests = []
        for trade_id, legs in live.items():
            for leg in legs:
                amount = leg.amount + payer_fee(charges.get(leg.pk, ()))
                requests.append(
                    HoldRequest(trade_id, leg.payer_id, leg.asset_id, amount, _lock_reference(leg), expires_at)
                )
                if on_chain(leg.asset):
                    requests.append(
                        HoldRequest(
                            trade_id,
                            leg.payer_id,
                            leg.asset_id,
                            fee_reserves[leg.asset_id],
                            fee_reference(leg),
                            expires_at,
                        )
                    )
        outcome = ledger_lock_many(requests=requests, actor=actor, memo=f"batch {batch.pk}")
        locked = [leg for t, legs in live.items() if t not in outcome.failed for leg in legs]
        for leg in locked:
            leg.lock = outcome.locks[_lock_reference(leg)]
            leg.fee_lock = outcome.locks.get(fee_reference(leg))
        batch_fee_charges_save([c for leg in locked for c in charges.get(leg.pk, ())], batch_id=batch.pk)
        transitions_run_many(
            locked,
            "mark_locked",
            entity=ENTITY,
            actor=actor,
            reason=f"lock funds (crypto DvP, batch {batch.pk})",
            fields=("lock", "fee_lock"),
            metadata=lambda leg: {"lock": leg.lock.reference, "batch": batch.pk},
        )
        short = {t: live[t] for t in outcome.failed}
        legs_fail_many(
            short,
            reasons={t: outcome.failed[t] for t in short},  # "insufficient funds: ..."
            batch=batch,
            stage="lock",
            actor=actor,
        )
        batch_move(batch, "mark_locked", actor=actor, reason=f"{len(locked) // 2} locked, {len(short)} short")
        return True


def legs_fail_many(
    trades: dict[int, list[SettlementInstruction]],
    *,
    reasons: dict[int, str],
    batch: CryptoBatch,
    stage: str,
    actor: Actor,
) -> None:
    """Fail whole trades (rows already locked by the caller): every pending lock of both legs
    (funds and fee reserve) voided in bulk, their pending fee charges voided, both legs failed,
    one notification per participant for the batch. Legs already final are left alone."""
    legs = [leg for legs in trades.values() for leg in legs if leg.status in (S.PENDING, S.LOCKED, S.PROCESSING)]
    if not legs:
        return
    reason_of = {leg.pk: reasons[leg.trade_id] for leg in legs}
    locks = locks_pending([lock for leg in legs for lock in (leg.lock, leg.fee_lock) if lock is not None])
    if locks:
        ledger_void_many(locks=locks, actor=actor, reason=f"void: batch {batch.pk} trade failed")
    charges = [c for leg in legs for c in pending_charges(list(leg.fee_charges.all()))] if legs else []
    if charges:
        fee_charges_mark(
            charges=charges, status=FeeChargeStatus.VOIDED, actor=actor, reason=f"void: batch {batch.pk} trade failed"
        )
    for leg in legs:
        leg.failure_reason = reason_of[leg.pk][:2000]
    transitions_run_many(
        legs,
        "mark_failed",
        entity=ENTITY,
        actor=actor,
        reason=lambda leg: reason_of[leg.pk],
        fields=("failure_reason",),
        metadata=lambda leg: {"batch": batch.pk},
    )
    batch.failed += len({leg.trade_id for leg in legs})
    failed = {t: trades[t] for t in sorted({leg.trade_id for leg in legs})}
    batch_notify(event="failed", trades=failed, batch=batch, stage=stage, reasons=reasons)


def locks_pending(locks: Sequence[LedgerLock]) -> list[LedgerLock]:
    """The still-pending ones of ``locks``, read again (one query)."""
    ids = [lock.pk for lock in locks]
    return list(LedgerLock.objects.filter(pk__in=ids, status=LockStatus.PENDING).order_by("pk")) if ids else []


def batch_notify(
    *,
    event: str,
    trades: dict[int, list[SettlementInstruction]],
    batch: CryptoBatch,
    stage: str,
    reasons: dict[int, str] | None = None,
) -> None:
    """One notification (and webhook) per participant per batch and event, listing its trades."""
    per_party: dict[int, list[int]] = defaultdict(list)
    for trade_id, legs in sorted(trades.items()):
        trade = legs[0].trade
        for party in (trade.buyer_id, trade.seller_id):
            per_party[party].append(trade_id)
    for party, trade_ids in sorted(per_party.items()):
        rows = []
        for trade_id in trade_ids:
            legs = trades[trade_id]
            row: dict[str, object] = {"trade": legs[0].trade.external_id, "source": legs[0].trade.source}
            if reasons:
                row["reason"] = reasons[trade_id]
            rows.append(row)
        notify(
            event=event,
            instruction=trades[trade_ids[0]][0],
            message=f"{len(trade_ids)} trade(s) {event} in {batch.chain} batch {batch.pk}",
            dedupe_key=f"batch:{batch.pk}:{event}:{stage}:{party}",
            participant_ids=[party],
            payload={"batch": batch.pk, "chain": batch.chain, "trades": rows},
        )


def batch_move(batch: CryptoBatch, method: str, *, actor: Actor, reason: str) -> None:
    """Move the batch row on by its transition (history and log): the last step of a stage."""
    transition_run(batch, getattr(batch, method), entity="cryptobatch", actor=actor, reason=reason)
