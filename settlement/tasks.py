"""Celery tasks: thin wrappers that call one service. Safe to run twice."""

from __future__ import annotations

import logging
import os
import random

from celery import shared_task
from django.conf import settings

from common.ports import escalate, ops_alert
from ledger.services.audit import transition_log_anchor, transition_log_anchor_head, transition_log_verify
from ledger.services.integrity import ledger_verify_balances, ledger_verify_balances_alert
from ops.models.alerts import AlertLevel
from ops.services.alerts import ops_alert_email_send, ops_alerts_email_due
from ops.services.webhooks import webhook_deliver, webhooks_due
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


@shared_task(acks_late=True, singleton=True)
def transition_log_verify_task() -> bool:
    """Beat, hourly: walk the transition-log hash chain; anchor an intact head outside the
    database, or alert the auditors and operators loudly when it is broken."""
    report = transition_log_verify()
    if report.ok:
        transition_log_anchor(report=report)
        return True
    logger.error("transition log chain broken after %s rows: %s", report.checked, report.problems[:5])
    ops_alert(
        title=f"Transition log chain BROKEN ({len(report.problems)} problem(s))",
        body="\n".join(report.problems[:20]),
        level=AlertLevel.CRITICAL,
        roles=("auditor", "operator"),
        dedupe_key=f"transition-log-broken:{report.checked}:{report.problems[0][:120]}",
    )
    return False


@shared_task(acks_late=True)
def transition_log_anchor_task() -> None:
    """Beat, every minute: copy the chain head outside the database (see services/anchors.py)."""
    transition_log_anchor_head()


@shared_task(acks_late=True)
def ledger_verify_balances_task() -> bool:
    """Beat, hourly: every balance equals the sum of its postings; a critical alert otherwise."""
    report = ledger_verify_balances()
    if not report.ok:
        logger.error("ledger integrity check failed: %s", report.problems()[:5])
        ledger_verify_balances_alert(report=report)
    return report.ok


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


@shared_task(acks_late=True, bind=True)
def crypto_advance_task(self, trade_ids: list[int], rail_attempt: int = 0) -> dict:  # type: ignore[no-untyped-def]
    """Lock, sign and broadcast a batch of crypto T+0 trades; then watch their transfers."""
    try:
        result = crypto_trades_advance(trade_ids=trade_ids)
    except RailTransientError as exc:  # the chain could not quote a fee: try again later
        if rail_attempt >= settings.CLEARHOUSE_BROADCAST_MAX_RETRIES:
            logger.error("chain unreachable for trades %s: %s; the sweeper will retry", trade_ids, exc)
            return {"error": str(exc)}
        crypto_advance_task.apply_async(
            (trade_ids,), {"rail_attempt": rail_attempt + 1}, countdown=backoff_seconds(rail_attempt)
        )
        return {"retry": rail_attempt + 1}
    _crash_point("broadcast")
    for transfer_id in result.retry:
        crypto_broadcast_task.apply_async((transfer_id,), {"attempt": 1}, countdown=backoff_seconds(0))
    _schedule_checks(result.broadcast)
    return {
        "broadcast": len(result.broadcast),
        "retry": len(result.retry),
        "failed": result.failed,
        "halted": result.halted,
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
    for transfer_id in transfer_ids:
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
    stuck = stuck_crypto_work(older_than_seconds=older_than_seconds)
    dispatch_crypto_trades(stuck.trades)
    for transfer_id in stuck.signed:
        crypto_broadcast_task.delay(transfer_id)
    if stuck.broadcast:
        crypto_check_task.delay(stuck.broadcast)
    return {"trades": len(stuck.trades), "signed": len(stuck.signed), "broadcast": len(stuck.broadcast)}


# --- webhooks --------------------------------------------------------------------------------------


@shared_task(acks_late=True)
def webhook_deliver_task(notification_id: int, attempt: int = 0) -> str:
    """One delivery attempt if one is due (a duplicate task does nothing). A retry due soon is
    queued with a countdown; a later one is left to the sweep, which reads the time from the
    database, so no long countdown sits in the broker (or is lost with it)."""
    outcome = webhook_deliver(notification_id=notification_id)
    if outcome.final:
        return "delivered" if outcome.delivered else "final"
    if outcome.retry_in is None:
        return "not_due"
    if not settings.CELERY_TASK_ALWAYS_EAGER and outcome.retry_in <= settings.CLEARHOUSE_COUNTDOWN_MAX_SECONDS:
        webhook_deliver_task.apply_async((notification_id,), {"attempt": attempt + 1}, countdown=outcome.retry_in)
    return "retry"


@shared_task(acks_late=True)
def webhooks_retry_task() -> int:
    """Beat, every CLEARHOUSE_SWEEP_EVERY_SECONDS: dispatch the webhook attempts that are due
    (scheduled retries, and first attempts whose task was lost)."""
    ids = webhooks_due()
    for pk in ids:
        webhook_deliver_task.delay(pk)
    return len(ids)


# --- operations alert e-mails ------------------------------------------------------------------


@shared_task(acks_late=True)
def ops_alert_email_task(alert_id: int) -> str:
    """Send one alert's e-mail (outbox row); a failure leaves it pending for the sweep."""
    return ops_alert_email_send(alert_id=alert_id)


@shared_task(acks_late=True)
def ops_alerts_email_sweep_task() -> int:
    """Beat, every CLEARHOUSE_SWEEP_EVERY_SECONDS: re-send alert e-mails still pending."""
    ids = ops_alerts_email_due()
    for pk in ids:
        ops_alert_email_task.delay(pk)
    return len(ids)


@shared_task(acks_late=True, singleton=True)
def daily_report_task(day: str | None = None) -> int:
    """Beat, at the end of each day (UTC): the daily settlement report. Safe to run twice: the
    report of a day is regenerated in place."""
    from datetime import date

    from django.utils import timezone

    from common.actors import SystemActor
    from ops.daily_report import daily_report_build

    on = date.fromisoformat(day) if day else timezone.now().date()
    return daily_report_build(day=on, actor=SystemActor("beat")).pk
