"""Stage 2, the lock: pay-in, the participant's funds are locked on the ledger; pay-out, the
CSA's. A pay-out waits until the participant's own pay-ins of the window and date have settled
(delivery versus payment on the net: nobody receives before delivering what they owe) and until
the CSA holds the value (its ledger account may not go negative)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from common.actors import Actor
from common.choices import LockStatus
from common.exceptions import InsufficientFunds
from ledger.services.audit import LogEntry, transition_run
from ledger.services.ledger import ledger_lock, ledger_lock_system
from netting.fees import netted_fee_hold
from netting.models import Direction, NettedInstruction
from netting.pipeline.base import CSA, N
from netting.pipeline.booking import review
from netting.pipeline.routes import Batch, participant_route
from rails.fiat.routing import NoRoute


def lock_funds(ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None) -> None:
    """Pay-in: lock the participant's funds; pay-out: lock the CSA's. Raises InsufficientFunds."""
    if ni.lock is not None and ni.lock.status == LockStatus.PENDING:
        return  # kept from before a review (value may be in flight)
    reference = f"{ni.reference}:L{ni.locks_taken + 1}"
    book = batch.fees if batch is not None else None
    fee = netted_fee_hold(ni=ni, attempt=ni.locks_taken + 1, book=book)  # a pay-in holds its fee with the amount
    if ni.direction == Direction.PAY_IN:
        lock = ledger_lock(
            owner=ni.participant,
            asset=ni.asset,
            amount=ni.amount + fee,
            reference=reference,
            actor=actor,
            expires_at=timezone.now() + timedelta(days=3650),
        )
    else:
        lock = ledger_lock_system(
            code=CSA,
            asset=ni.asset,
            amount=ni.amount,
            reference=reference,
            actor=actor,
            expires_at=timezone.now() + timedelta(days=3650),
        )
    ni.lock = lock
    ni.locks_taken += 1


def _owes_pay_ins(ni: NettedInstruction) -> bool:
    """Whether the participant of a pay-out still has unsettled pay-ins of its window and date."""
    return (
        NettedInstruction.objects.filter(
            window_id=ni.window_id,
            settlement_date=ni.settlement_date,
            participant_id=ni.participant_id,
            direction=Direction.PAY_IN,
        )
        .exclude(status=N.SETTLED)
        .exists()
    )


def lock_step(
    ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None, log_entries: list[LogEntry] | None = None
) -> str:
    """pending → locked (funds locked, method chosen). With ``log_entries`` the lock's log entry
    is added to that list for the caller to append at the end of its transaction."""
    if ni.direction == Direction.PAY_OUT and _owes_pay_ins(ni):
        return "waiting"
    try:
        route = participant_route(ni, batch)
    except NoRoute as exc:
        review(ni, actor=actor, reason=str(exc), release_funds=False)
        return "review"
    ni.method = route.method  # the fee depends on the rail
    try:
        with transaction.atomic():
            lock_funds(ni, actor=actor, batch=batch)
    except InsufficientFunds as exc:
        if ni.direction == Direction.PAY_OUT:
            return "waiting"  # the CSA does not hold it yet: other pay-ins are still on their way
        review(ni, actor=actor, reason=f"insufficient funds for the pay-in: {exc.message}", release_funds=False)
        return "review"
    ni.method = route.method
    lock = ni.lock
    if lock is None:  # pragma: no cover - lock_funds sets it or raises
        raise RuntimeError(f"{ni} has no lock after locking its funds")
    entry = transition_run(
        ni,
        ni.mark_locked,
        entity="nettedinstruction",
        actor=actor,
        reason=f"funds locked; method {route.method}",
        metadata={"lock": lock.reference},
        update_fields=("status", "updated_at", "lock", "locks_taken", "method"),
        log=log_entries is None,
    )
    if log_entries is not None:
        log_entries.append(entry)
    return "locked"
