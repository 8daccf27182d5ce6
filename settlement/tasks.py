"""Celery tasks: thin wrappers that call one service. Safe to run twice."""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

from celery import shared_task
from django.conf import settings

from common.ports import escalate
from rails.base import RailRejected, RailTransientError
from settlement.crypto.pipeline import (
    TRANSIENT_DB_ERRORS,
    SettlementHalted,
    crypto_trades_advance,
    stuck_crypto_work,
    transfer_broadcast,
    transfer_check,
    transfer_give_up,
    transfer_record_error,
    transfer_reject,
)
from settlement.dispatch import dispatch_crypto_trades
from settlement.models import ChainTransfer
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.instructions import locks_void_expired

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def ledger_void_expired_locks_task(limit: int = 500) -> int:
    """Beat, every minute: void ledger locks past their expiry. Re-running finds nothing left to do."""
    return locks_void_expired(limit=limit)


# --- crypto T+0 pipeline ---------------------------------------------------------------------------


def backoff_seconds(attempt: int, *, base: float = 1.0, cap: float | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base x 2^attempt)], at least
    a tenth of the window so retries never stampede at zero. The cap defaults to the longest
    countdown the broker can hold without redelivering it (below the visibility timeout)."""
    if cap is None:
        cap = settings.CLEARHOUSE_COUNTDOWN_MAX_SECONDS
    window = min(cap, base * (2**attempt))
    return random.uniform(window / 10, window)  # noqa: S311 - jitter, not a secret


def _crash_point(step: str) -> None:
    """Crash-test hook: exit the worker process hard right after ``step`` (never set in production)."""
    if step == settings.CLEARHOUSE_CRASH_AFTER:
        logger.error("CLEARHOUSE_CRASH_AFTER=%s: worker exits now", step)
        os._exit(17)


def _schedule_checks(transfer_ids: list[int], *, poll: int = 0) -> None:
    if not transfer_ids:
        return
    if settings.CELERY_TASK_ALWAYS_EAGER and poll > 0:
        return  # in-process mode: no timers; the sweeper (or `manage.py crypto_sweep`) polls again
    delay = min(settings.CLEARHOUSE_CONFIRM_POLL_SECONDS * (1.5**poll), settings.CLEARHOUSE_COUNTDOWN_MAX_SECONDS)
    crypto_check_task.apply_async((transfer_ids,), {"poll": poll}, countdown=delay if poll else 0)


def task_deadline() -> float:
    """When a long task (crypto here, netting too) stops taking new work and hands the rest on as a new task: well
    below the visibility timeout, after which Redis would hand the still-running task to a
    second worker (duplicate work contending for the same rows, rebroadcasts)."""
    return time.monotonic() + settings.CELERY_VISIBILITY_TIMEOUT / 3


@shared_task(acks_late=True, bind=True)
def crypto_advance_task(self: Any, trade_ids: list[int], rail_attempt: int = 0) -> dict:
    """Lock, sign and broadcast a batch of crypto T+0 trades; then watch their transfers.
    Trades not started within the task's time budget go on as a new task (queued before this
    one is acknowledged: a crash in between leaves duplicates, which are harmless)."""
    try:
        result = crypto_trades_advance(trade_ids=trade_ids, deadline=task_deadline())
    except RailTransientError as exc:  # the chain could not quote a fee: try again later
        if rail_attempt >= settings.CLEARHOUSE_BROADCAST_MAX_RETRIES:
            logger.error("chain unreachable for trades %s: %s; the sweeper will retry", trade_ids, exc)
            return {"error": str(exc)}
        crypto_advance_task.apply_async(
            (trade_ids,), {"rail_attempt": rail_attempt + 1}, countdown=backoff_seconds(rail_attempt)
        )
        return {"retry": rail_attempt + 1}
    if result.rest:
        crypto_advance_task.delay(result.rest)
    _crash_point("broadcast")
    for transfer_id in result.retry:
        crypto_broadcast_task.apply_async((transfer_id,), {"attempt": 1}, countdown=backoff_seconds(0))
    _schedule_checks(result.broadcast)
    return {
        "broadcast": len(result.broadcast),
        "retry": len(result.retry),
        "failed": result.failed,
        "halted": result.halted,
        "handed_on": len(result.rest),
    }


@shared_task(acks_late=True)
def crypto_broadcast_task(transfer_id: int, attempt: int = 0) -> str:
    """(Re)broadcast one stored transaction; transient failures back off exponentially with
    jitter; after CLEARHOUSE_BROADCAST_MAX_RETRIES the trade is escalated (and fails if the chain
    says the transaction can never land). A refusal for good (RailRejected) fails the trade
    with its funds released and opens a case: nothing is left for the sweeper to loop on."""
    transfer = ChainTransfer.objects.filter(pk=transfer_id).first()
    if transfer is None or transfer.status not in (TS.SIGNED, TS.BROADCAST):
        return "done"
    try:
        transfer_broadcast(transfer=transfer)
    except SettlementHalted:
        return "halted"
    except RailRejected as exc:
        transfer_reject(transfer=transfer, reason=str(exc))
        return "rejected"
    except RailTransientError as exc:
        transfer_record_error(transfer=transfer, error=f"attempt {attempt}: {exc}")
        if attempt >= settings.CLEARHOUSE_BROADCAST_MAX_RETRIES:
            transfer_give_up(transfer=transfer, reason=f"broadcast failed {attempt + 1} times: {exc}")
            return "gave_up"
        crypto_broadcast_task.apply_async((transfer_id,), {"attempt": attempt + 1}, countdown=backoff_seconds(attempt))
        return "retry"
    _crash_point("broadcast")
    _schedule_checks([transfer_id])
    return "broadcast"


@shared_task(acks_late=True)
def crypto_check_task(transfer_ids: list[int], poll: int = 0) -> dict:
    """Check many broadcast transfers in one go; re-schedule (countdown) those still waiting.
    No worker is held while waiting for blocks."""
    outcome: dict[str, int] = {}
    waiting: list[int] = []
    deadline = task_deadline()
    for index, transfer_id in enumerate(transfer_ids):
        if index and time.monotonic() > deadline:  # the rest now, as a new task (see task_deadline)
            crypto_check_task.apply_async((transfer_ids[index:],), {"poll": poll})
            outcome["handed_on"] = len(transfer_ids) - index
            break
        transfer = ChainTransfer.objects.filter(pk=transfer_id).first()
        if transfer is None:
            continue
        try:
            state = transfer_check(transfer=transfer).state
        except RailTransientError as exc:
            transfer_record_error(transfer=transfer, error=f"check: {exc}")
            state = "waiting"
        except SettlementHalted:
            state = "halted"
        except RailRejected as exc:  # a rebroadcast or re-signature refused: ops decide (it may have landed)
            transfer_reject(transfer=ChainTransfer.objects.get(pk=transfer_id), reason=str(exc))
            state = "rejected"
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:  # one bad transfer must not keep the others of the batch unchecked
            logger.exception("checking chain transfer %s failed unexpectedly", transfer_id)
            escalate(transfer.instruction, reason=f"check failed: {type(exc).__name__}: {exc}"[:500])
            state = "escalated"
        outcome[state] = outcome.get(state, 0) + 1
        if state in ("waiting", "rebroadcast", "resigned", "confirmed"):
            waiting.append(transfer_id)
    if waiting and poll + 1 < settings.CLEARHOUSE_CONFIRM_MAX_POLLS:
        _schedule_checks(waiting, poll=poll + 1)
    return outcome


@shared_task(acks_late=True)
def crypto_sweep_task(older_than_seconds: int | None = None) -> dict:
    """Beat: re-dispatch crypto work stuck in a non-final state (lost task, killed worker,
    broker restart). Every step it triggers is idempotent, so overlapping runs are harmless."""
    if older_than_seconds is None:
        older_than_seconds = settings.CLEARHOUSE_STUCK_AFTER_SECONDS
    batches: dict[str, int] = {}
    if settings.CLEARHOUSE_CRYPTO_ENGINE == "batch":
        from settlement.batch_tasks import batches_sweep

        batches = batches_sweep(older_than_seconds=older_than_seconds)
    stuck = stuck_crypto_work(older_than_seconds=older_than_seconds)
    dispatch_crypto_trades(stuck.trades)
    for transfer_id in stuck.signed:
        crypto_broadcast_task.delay(transfer_id)
    if stuck.broadcast:
        crypto_check_task.delay(stuck.broadcast)
    return {"trades": len(stuck.trades), "signed": len(stuck.signed), "broadcast": len(stuck.broadcast), **batches}


# the batch engine's tasks, registered with the worker with this module's
from settlement.batch_tasks import (  # noqa: E402,F401
    crypto_batch_advance_task,
    crypto_batch_check_task,
    crypto_batch_form_task,
)
