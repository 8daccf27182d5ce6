"""Celery tasks of the batch engine: thin wrappers, one task per batch per stage, safe to run
twice (every stage is a compare-and-set on the batch row's status) and re-dispatched by the
sweeper (``crypto_sweep_task``) when a task is lost."""

from __future__ import annotations

import logging
from decimal import Decimal

from celery import shared_task
from django.conf import settings

from rails.base import RailTransientError
from rails.crypto.registry import chain_rail_of
from settlement.crypto.batch_chain import batch_broadcast, batch_sign
from settlement.crypto.batch_form import batch_assets, batches_form, stuck_batches
from settlement.crypto.batch_lock import batch_lock
from settlement.crypto.batch_settle import batch_check
from settlement.crypto.trades import on_chain, quantize_up
from settlement.models import BatchStatus, CryptoBatch

logger = logging.getLogger(__name__)


def _crash_point(step: str) -> None:
    from settlement.tasks import _crash_point as crash

    crash(step)


def _fee_reserves(batch: CryptoBatch) -> dict[int, Decimal]:
    """Per-payout network-fee reserve of each on-chain asset of the batch (asked of the chain)."""
    rail = chain_rail_of(batch.chain)
    return {a.pk: quantize_up(rail.payout_fee_reserve(), a.precision) for a in batch_assets(batch) if on_chain(a)}


@shared_task(acks_late=True)
def crypto_batch_form_task() -> dict:
    """Claim the waiting crypto T+0 trades into batches and start each."""
    formed = batches_form()
    for batch_id in formed.batches:
        crypto_batch_advance_task.delay(batch_id)
    if formed.skipped:
        from settlement.tasks import crypto_advance_task

        crypto_advance_task.delay(formed.skipped)
    return {"batches": len(formed.batches), "trades": formed.trades}


@shared_task(acks_late=True, bind=True, max_retries=None)
def crypto_batch_advance_task(self: object, batch_id: int, attempt: int = 0) -> str:
    """Lock, sign and broadcast one batch, then hand it to the confirmation watch."""
    from settlement.tasks import backoff_seconds

    batch = CryptoBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        return "missing"
    try:
        if batch.status == BatchStatus.OPEN:
            batch_lock(batch_id=batch_id, fee_reserves=_fee_reserves(batch))
            _crash_point("lock")
        signed = batch_sign(batch_id=batch_id)
        if signed == "signed":
            _crash_point("sign")
        outcome = "halted" if signed == "halted" else batch_broadcast(batch_id=batch_id)
    except RailTransientError as exc:
        logger.warning("batch %s: chain unreachable (%s), retrying", batch_id, exc)
        outcome = "retry"
    if outcome in ("retry", "halted"):
        if attempt < settings.CLEARHOUSE_BROADCAST_MAX_RETRIES and not settings.CELERY_TASK_ALWAYS_EAGER:
            crypto_batch_advance_task.apply_async((batch_id, attempt + 1), countdown=backoff_seconds(attempt))
        return outcome  # else the sweeper comes back to it
    _crash_point("broadcast")
    crypto_batch_check_task.apply_async((batch_id,), countdown=0)
    return "broadcast"


@shared_task(acks_late=True)
def crypto_batch_check_task(batch_id: int, poll: int = 0) -> dict:
    """Check a broadcast batch's chain transactions once; come back later while not done."""
    try:
        result = batch_check(batch_id=batch_id)
    except RailTransientError as exc:
        logger.warning("batch %s: status check failed (%s)", batch_id, exc)
        result = None
    if result is not None and result.settled:
        _crash_point("confirm")
    done = result is not None and result.done
    if not done and poll + 1 < settings.CLEARHOUSE_CONFIRM_MAX_POLLS and not settings.CELERY_TASK_ALWAYS_EAGER:
        crypto_batch_check_task.apply_async((batch_id, poll + 1), countdown=settings.CLEARHOUSE_BATCH_POLL_SECONDS)
    if result is None:
        return {"error": 1}
    return {"settled": result.settled, "failed": result.failed, "waiting": result.waiting, "done": int(done)}


def batches_sweep(*, older_than_seconds: int) -> dict[str, int]:
    """Form what is waiting, and re-dispatch the batches whose row has not moved for a while."""
    formed = batches_form()
    for batch_id in formed.batches:
        crypto_batch_advance_task.delay(batch_id)
    stuck = stuck_batches(older_than_seconds=older_than_seconds)
    for batch_id in stuck:
        status = CryptoBatch.objects.filter(pk=batch_id).values_list("status", flat=True).first()
        if status == BatchStatus.BROADCAST:
            crypto_batch_check_task.delay(batch_id)
        else:
            crypto_batch_advance_task.delay(batch_id)
    return {"formed": len(formed.batches), "stuck_batches": len(stuck)}
