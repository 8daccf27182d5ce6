"""Settlement instruction services: each status change is one small transaction that locks the
instruction row, re-checks its state, moves value through the ledger, saves (simple-history
records it) and appends to the transition log."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from common.actors import Actor, SystemActor
from common.choices import AccountKind, InstructionStatus, LockStatus
from common.exceptions import IllegalTransition, InsufficientFunds, WindowNotOpen
from common.ports import window_hold_open
from ledger.locking import lock_accounts_where, lock_ledger_locks
from ledger.models import LedgerAccount, LedgerLock
from ledger.services.audit import LogEntry, transition_log_append, transition_run
from ledger.services.ledger import Leg, account_for, ledger_lock, ledger_post, ledger_post_journal, ledger_void
from settlement.dispatch import dispatch_crypto_trades
from settlement.locking import lock_instructions, lock_trade_legs
from settlement.models import SettlementInstruction, Trade
from settlement.models.fees import FeeChargeStatus, FeeKind, FeeParty
from settlement.routing import settles_gross
from settlement.services.fees import (
    fee_charges_mark,
    fee_revenue_account,
    fees_hold,
    fees_pending,
    lock_post_with_fees,
)

S = InstructionStatus
_OWNER_KINDS = (AccountKind.AVAILABLE, AccountKind.LOCKED)
ENTITY = "instruction"


def _for_update(instruction: SettlementInstruction) -> SettlementInstruction:
    """The instruction row locked, with what its transitions read (the lock row is only read
    here: the ledger locks it itself)."""
    return lock_instructions(related=("asset", "payer", "payee", "lock__asset"), pk=instruction.pk).get()


def _apply(
    instruction: SettlementInstruction,
    method: Callable[[], None],
    *,
    actor: Actor,
    reason: str,
    metadata: Mapping[str, Any] | None = None,
    update_fields: tuple[str, ...] = (),
) -> SettlementInstruction:
    """Run one FSM transition on a row already locked by the caller, save it and log it."""
    transition_run(
        instruction,
        method,
        entity=ENTITY,
        actor=actor,
        reason=reason,
        metadata=metadata,
        update_fields=("status", "updated_at", *update_fields),
    )
    return instruction


def _lock_reference(instruction: SettlementInstruction) -> str:
    return f"{instruction.reference}:a{instruction.attempt}"


def _lock_funds(instruction: SettlementInstruction, *, actor: Actor, expires_at: datetime | None) -> LedgerLock:
    """Hold what the payer owes: the amount and, on a cash leg, its fee (computed now)."""
    lock = ledger_lock(
        owner=instruction.payer,
        asset=instruction.asset,
        amount=instruction.amount + fees_hold(instruction=instruction),
        reference=_lock_reference(instruction),
        actor=actor,
        expires_at=expires_at,
        accounts=_known_accounts(instruction, instruction.payer_id),
    )
    instruction.lock = lock
    return lock


def _hold_and_lock(
    instruction: SettlementInstruction, *, actor: Actor, reason: str, expires_at: datetime | None
) -> SettlementInstruction:
    """Hold the payer's funds and move pending → locked (row already locked by the caller)."""
    lock = _lock_funds(instruction, actor=actor, expires_at=expires_at)
    return _apply(
        instruction,
        instruction.mark_locked,
        actor=actor,
        reason=reason,
        metadata={"lock": lock.reference},
        update_fields=("lock",),
    )


def _settle_locked(
    instruction: SettlementInstruction, *, actor: Actor, reason: str, metadata: Mapping[str, Any] | None = None
) -> SettlementInstruction:
    """Post the held funds to the payee, and the fees to the fee revenue account in the same
    journal, and move processing → settled (row already locked). The lock's, the fee charges' and
    the instruction's log entries go to the chain together, in that order (one head lock)."""
    known = _known_accounts(instruction, instruction.payee_id)
    payee_account = (
        known[0] if known else account_for(owner=instruction.payee, asset=instruction.asset, kind=AccountKind.AVAILABLE)
    )
    entries: list[LogEntry] = []
    fees = lock_post_with_fees(
        lock=instruction.lock,
        to_account=payee_account,
        amount=instruction.amount,
        charges=fees_pending(instruction),
        actor=actor,
        reason=f"settle {instruction}",
        log_entries=entries,
    )
    if fees:
        metadata = {**(metadata or {}), "fees": str(fees)}
    entries.append(
        transition_run(
            instruction,
            instruction.mark_settled,
            entity=ENTITY,
            actor=actor,
            reason=reason,
            metadata=metadata,
            update_fields=("status", "updated_at"),
            log=False,
        )
    )
    transition_log_append(entries=entries, actor=actor)
    return instruction


def instruction_lock(
    *, instruction: SettlementInstruction, actor: Actor, reason: str = "lock funds", expires_at: datetime | None = None
) -> SettlementInstruction:
    """pending → locked: hold the payer's funds. ``InsufficientFunds`` leaves the instruction pending."""
    with transaction.atomic():
        instruction = _for_update(instruction)
        if instruction.status != S.PENDING:
            raise IllegalTransition(f"instruction {instruction.pk} is {instruction.status}, not pending")
        return _hold_and_lock(instruction, actor=actor, reason=reason, expires_at=expires_at)


def instruction_start_processing(
    *, instruction: SettlementInstruction, actor: Actor, reason: str = "handed to rail"
) -> SettlementInstruction:
    with transaction.atomic():
        instruction = _for_update(instruction)
        return _apply(instruction, instruction.mark_processing, actor=actor, reason=reason)


def instruction_settle(
    *,
    instruction: SettlementInstruction,
    actor: Actor,
    reason: str = "settled",
    metadata: Mapping[str, Any] | None = None,
) -> SettlementInstruction:
    """processing → settled: post the locked funds to the payee's available account."""
    with transaction.atomic():
        instruction = _for_update(instruction)
        if instruction.status != S.PROCESSING or instruction.lock is None:
            raise IllegalTransition(f"instruction {instruction.pk} is {instruction.status}, not processing")
        return _settle_locked(instruction, actor=actor, reason=reason, metadata=metadata)


def _void_if_pending(instruction: SettlementInstruction, *, actor: Actor, reason: str) -> None:
    """Release what the instruction holds: its funds lock and any network-fee reserve."""
    for lock in (instruction.lock, instruction.fee_lock):
        if lock is not None and lock.status == LockStatus.PENDING:
            ledger_void(lock=lock, actor=actor, reason=reason)
    fee_charges_mark(charges=fees_pending(instruction), status=FeeChargeStatus.VOIDED, actor=actor, reason=reason)


def instruction_fail(
    *, instruction: SettlementInstruction, actor: Actor, reason: str, metadata: Mapping[str, Any] | None = None
) -> SettlementInstruction:
    """pending/locked/processing → failed; a held lock is voided back to the payer."""
    with transaction.atomic():
        instruction = _for_update(instruction)
        instruction.failure_reason = reason
        _void_if_pending(instruction, actor=actor, reason=f"void: {reason}")
        return _apply(
            instruction,
            instruction.mark_failed,
            actor=actor,
            reason=reason,
            metadata=metadata,
            update_fields=("failure_reason",),
        )


def instruction_retry(*, instruction: SettlementInstruction, actor: Actor, reason: str) -> SettlementInstruction:
    """failed → pending, as a new attempt (the next lock gets a new reference). A crypto T+0
    trade goes back to the pipeline once its legs are all pending again (after commit)."""
    with transaction.atomic():
        instruction = _for_update(instruction)
        if instruction.status == S.FAILED:
            instruction.attempt += 1
        instruction.batch = None  # a new attempt goes into a new batch (batch engine)
        if settles_gross(instruction.trade.instrument):
            transaction.on_commit(partial(dispatch_crypto_trades, [instruction.trade_id]))
        return _apply(
            instruction,
            instruction.mark_retry,
            actor=actor,
            reason=reason,
            metadata={"attempt": instruction.attempt},
            update_fields=("attempt", "batch"),
        )


def instruction_cancel(*, instruction: SettlementInstruction, actor: Actor, reason: str) -> SettlementInstruction:
    """Cancel the trade this leg belongs to: both legs or neither (see ``trade_cancel``)."""
    trade_cancel(trade=instruction.trade, actor=actor, reason=reason)
    instruction.refresh_from_db()
    return instruction


def instruction_reverse(*, instruction: SettlementInstruction, actor: Actor, reason: str) -> SettlementInstruction:
    """settled → reversed with a compensating movement payee → payer (never a deletion).

    The compensation is itself two-phase: lock the payee's funds, post them to the payer.
    If the payee no longer holds them, ``InsufficientFunds`` and nothing changes.
    """
    with transaction.atomic():
        instruction = _for_update(instruction)
        if instruction.status != S.SETTLED:
            raise IllegalTransition(f"instruction {instruction.pk} is {instruction.status}, not settled")
        # Our fees come back; a pass-through cost (gas) does not: the network kept it.
        charges = list(instruction.fee_charges.filter(status=FeeChargeStatus.POSTED, kind=FeeKind.SCHEDULE))
        payee_fee = sum((c.fee for c in charges if c.party == FeeParty.PAYEE), Decimal(0))
        total_fees = sum((c.fee for c in charges), Decimal(0))
        compensation = ledger_lock(
            owner=instruction.payee,
            asset=instruction.asset,
            amount=instruction.amount - payee_fee,  # what the payee received
            reference=f"{instruction.reference}:reversal",
            actor=actor,
        )
        payer_account = account_for(owner=instruction.payer, asset=instruction.asset, kind=AccountKind.AVAILABLE)
        fee_legs = []
        if total_fees:  # the fees come back from revenue to the payer in the same journal
            fee_legs = [Leg(fee_revenue_account(instruction.asset), -total_fees), Leg(payer_account, total_fees)]
        ledger_post(
            lock=compensation,
            to_account=payer_account,
            actor=actor,
            reason=f"reverse {instruction}: {reason}",
            extra_legs=fee_legs,
        )
        fee_charges_mark(
            charges=charges,
            status=FeeChargeStatus.REVERSED,
            actor=actor,
            reason=f"reversed with {instruction}: {reason}",
            journal=ledger_post_journal(compensation) if charges else None,
        )
        return _apply(
            instruction,
            instruction.mark_reversed,
            actor=actor,
            reason=reason,
            metadata={"compensation": compensation.reference},
        )


def _trade_legs_for_update(trade: Trade) -> list[SettlementInstruction]:
    """Lock a trade's legs, then every ledger account they can touch.

    Lock order everywhere: (netting window row →) instruction rows → ledger accounts (by pk) →
    transition-log head. A
    trade-level service moves value on several legs, and the first leg's log entry takes the head;
    if the second leg then had to wait for an account another transaction holds while that one
    waits for the head, the two would deadlock. Taking all accounts first keeps the order.
    """
    # Any, as before the helper: the rows carry ``_accounts`` (set below) for their ledger calls
    legs: list[Any] = list(lock_trade_legs(trade, related=("asset", "payer", "payee", "lock", "fee_lock", "trade")))
    wanted = {
        (party.pk, leg.asset_id, kind): (party, leg.asset)
        for leg in legs
        for party in (leg.payer, leg.payee)
        for kind in (AccountKind.AVAILABLE, AccountKind.LOCKED)
    }
    if not wanted:
        return legs
    pairs = Q()
    for owner_id, asset_id in {(owner_id, asset_id) for owner_id, asset_id, _ in wanted}:
        pairs |= Q(owner_id=owner_id, asset_id=asset_id)
    # one statement locks them all, in primary-key order (they are created with the trade)
    found = lock_accounts_where(pairs, kinds=_OWNER_KINDS)
    have = {(a.owner_id, a.asset_id, a.kind): a for a in found}
    if any(key not in have for key in wanted):  # accounts missing (older data): create, lock again
        for key in sorted(k for k in wanted if k not in have):
            party, asset = wanted[key]
            account_for(owner=party, asset=asset, kind=key[2])
        have = {(a.owner_id, a.asset_id, a.kind): a for a in found.all()}
    for leg in legs:  # the rows just locked, for the leg's own ledger calls (no second lookup)
        leg._accounts = {(o, k): a for (o, asset_id, k), a in have.items() if asset_id == leg.asset_id}
        for account in leg._accounts.values():
            account.asset = leg.asset
    return legs


def _known_accounts(instruction: SettlementInstruction, owner_id: int) -> tuple[LedgerAccount, LedgerAccount] | None:
    """The owner's (available, locked) accounts of the leg's asset as ``_trade_legs_for_update``
    locked them, or None (the ledger looks them up)."""
    known: dict[tuple[int, str], LedgerAccount] = getattr(instruction, "_accounts", {})
    available = known.get((owner_id, AccountKind.AVAILABLE))
    locked = known.get((owner_id, AccountKind.LOCKED))
    return None if available is None or locked is None else (available, locked)


def trade_cancel(*, trade: Trade, actor: Actor, reason: str) -> list[SettlementInstruction]:
    """pending/locked/failed → cancelled for every leg of the trade together, voiding what they
    hold (delivery versus payment: one leg never settles without the other).

    A netted trade is cancelled only while its window is open, under the window's row lock taken
    first (lock order: netting window row → instruction rows → ledger accounts → log head): a
    close waits for the cancel, or the cancel sees the window closed and is refused with
    ``WindowNotOpen`` (the legs are in the plan: reverse the trade once settled). Refused as a
    whole, nothing changed, if any leg is past cancelling (processing, settled, reversed).
    """
    with transaction.atomic():
        window_ids = sorted(
            set(trade.instructions.exclude(netting_window=None).values_list("netting_window_id", flat=True))
        )
        for window_id in window_ids:
            if not window_hold_open(window_id=window_id):
                raise WindowNotOpen(
                    f"trade {trade.pk} is netted in window {window_id}, which is closing or closed: its value moves "
                    "with the window's payments; reverse the trade once settled"
                )
        legs = _trade_legs_for_update(trade)
        if any(leg.netting_window_id is not None and leg.netting_window_id not in window_ids for leg in legs):
            raise IllegalTransition(f"trade {trade.pk} changed window while being cancelled; try again")
        live = [leg for leg in legs if leg.status != S.CANCELLED]
        if not live:
            raise IllegalTransition(f"trade {trade.pk} is already cancelled")
        stuck = [leg for leg in live if leg.status not in (S.PENDING, S.LOCKED, S.FAILED)]
        if stuck:
            states = ", ".join(f"{leg.leg} {leg.status}" for leg in stuck)
            raise IllegalTransition(f"trade {trade.pk} cannot be cancelled ({states}): both legs go or neither")
        for leg in live:
            _void_if_pending(leg, actor=actor, reason=f"void: {reason}")
            _apply(leg, leg.mark_cancelled, actor=actor, reason=reason, metadata={"trade": trade.pk})
        return legs


def trade_settle_internal(*, trade: Trade, actor: Actor) -> list[SettlementInstruction]:
    """Delivery versus payment on the internal ledger: both legs settle, or neither does.

    Locks both legs; if either payer is short, every lock taken is voided and both legs fail
    with the reason. Otherwise both legs post. One transaction for the whole trade.
    """
    with transaction.atomic():
        legs = _trade_legs_for_update(trade)
        if any(leg.status != S.PENDING for leg in legs):
            return legs  # already handled (idempotent)
        try:
            with transaction.atomic():
                for leg in legs:
                    _hold_and_lock(leg, actor=actor, reason="lock funds (DvP)", expires_at=None)
        except InsufficientFunds as exc:
            legs = _trade_legs_for_update(trade)  # state rolled back to pending with the savepoint
            for leg in legs:
                leg.failure_reason = f"insufficient funds: {exc.message}"
                _apply(leg, leg.mark_failed, actor=actor, reason=leg.failure_reason, update_fields=("failure_reason",))
            return legs
        for leg in legs:
            _apply(leg, leg.mark_processing, actor=actor, reason="internal ledger DvP")
        for leg in legs:
            _settle_locked(leg, actor=actor, reason="settled on the internal ledger (DvP)")
        return legs


def trade_reverse(*, trade: Trade, actor: Actor, reason: str) -> list[SettlementInstruction]:
    """Reverse both settled legs of a trade together, or neither."""
    with transaction.atomic():
        legs = _trade_legs_for_update(trade)
        return [instruction_reverse(instruction=leg, actor=actor, reason=reason) for leg in legs]


def _in_flight_holder(lock_ref: Any) -> Exists:
    """An instruction on its way over a rail (processing) holds the lock, as its funds lock or
    as its network-fee reserve: that value may be on the rail, so the lock never expires by time."""
    return Exists(SettlementInstruction.objects.filter(Q(lock=lock_ref) | Q(fee_lock=lock_ref), status=S.PROCESSING))


def locks_void_expired(*, now: datetime | None = None, limit: int = 500) -> int:
    """Void pending locks past their expiry (the scheduled sweeper).

    Every lock of in-flight work is left alone alike, the funds lock and the network-fee reserve:
    while its instruction is ``processing`` value may be on its way over a rail, and that
    instruction belongs to the stuck-work sweepers, not to this one. An expired lock of a
    ``locked`` instruction fails the instruction (voiding its locks); on a crypto T+0 trade the
    whole trade fails, both parties are told and a case is opened. The instruction row is locked
    before the ledger lock and its state re-read under it (the documented lock order), so a leg
    that went on its way meanwhile is never touched.
    """
    now = now or timezone.now()
    actor = SystemActor("lock-expiry-sweeper")
    candidates = list(
        LedgerLock.objects.filter(status=LockStatus.PENDING, expires_at__lt=now)
        .exclude(_in_flight_holder(OuterRef("pk")))
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    voided = 0
    for lock_id in candidates:
        holder = (
            SettlementInstruction.objects.filter(Q(lock_id=lock_id) | Q(fee_lock_id=lock_id))
            .select_related("trade__instrument__base")
            .first()
        )
        if holder is not None and settles_gross(holder.trade.instrument):
            from settlement.crypto.pipeline import crypto_trade_expire  # the crypto pipeline sits above

            voided += crypto_trade_expire(trade=holder.trade, now=now, actor=actor)
            continue
        with transaction.atomic():
            if holder is not None:
                holder = _for_update(holder)
                if holder.status == S.PROCESSING:
                    continue
            lock = lock_ledger_locks(pk=lock_id, status=LockStatus.PENDING, expires_at__lt=now).first()
            if lock is None:
                continue
            if holder is not None and holder.status == S.LOCKED:
                instruction_fail(instruction=holder, actor=actor, reason="lock expired before settlement")
            else:
                ledger_void(lock=lock, actor=actor, reason="lock expired")
            voided += 1
    return voided


def trades_settle_due_internal(*, on_date: date, actor: Actor, limit: int = 10_000) -> dict[str, int]:
    """Settle on the internal ledger every trade whose legs are pending and due by ``on_date``.

    For trades without a rail: each trade is its own DvP transaction. On PostgreSQL, legs in a
    netting window are left to the window's settlement plan (``netting.pipeline``).
    """
    due = Trade.objects.filter(settlement_date__lte=on_date, instructions__status=S.PENDING)
    if connection.vendor == "postgresql":  # netted legs settle with their window's payments
        due = due.filter(instructions__netting_window__isnull=True)
    trade_ids = list(due.order_by("pk").values_list("pk", flat=True).distinct()[:limit])
    outcome = {"settled": 0, "failed": 0}
    for trade in Trade.objects.filter(pk__in=trade_ids).order_by("pk"):
        legs = trade_settle_internal(trade=trade, actor=actor)
        key = "settled" if all(leg.status == S.SETTLED for leg in legs) else "failed"
        outcome[key] += 1
    return outcome
