"""Celery tasks: thin wrappers that call one service. Safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from settlement.services.audit import transition_log_verify
from settlement.services.instructions import locks_void_expired

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def ledger_void_expired_locks_task(limit: int = 500) -> int:
    """Beat, every minute: void ledger locks past their expiry. Re-running finds nothing left to do."""
    return locks_void_expired(limit=limit)


@shared_task(acks_late=True)
def transition_log_verify_task() -> bool:
    """Beat, hourly: walk the transition-log hash chain and log loudly if it is broken."""
    report = transition_log_verify()
    if not report.ok:
        logger.error("transition log chain broken after %s rows: %s", report.checked, report.problems[:5])
    return report.ok
