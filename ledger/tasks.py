"""Celery tasks of the ledger: the transition log's chain walk and anchor, the balance check.
Thin wrappers that call one service; safe to run twice. Their names stay ``settlement.tasks.*``
(beat's database rows and messages already queued name them so)."""

from __future__ import annotations

import logging

from celery import shared_task

from common.choices import AlertLevel
from common.ports import ops_alert
from ledger.services.audit import transition_log_anchor, transition_log_anchor_head, transition_log_verify
from ledger.services.integrity import ledger_verify_balances, ledger_verify_balances_alert

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, singleton=True, name="settlement.tasks.transition_log_verify_task")
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


@shared_task(acks_late=True, name="settlement.tasks.transition_log_anchor_task")
def transition_log_anchor_task() -> None:
    """Beat, every minute: copy the chain head outside the database (see services/anchors.py)."""
    transition_log_anchor_head()


@shared_task(acks_late=True, name="settlement.tasks.ledger_verify_balances_task")
def ledger_verify_balances_task() -> bool:
    """Beat, hourly: every balance equals the sum of its postings; a critical alert otherwise."""
    report = ledger_verify_balances()
    if not report.ok:
        logger.error("ledger integrity check failed: %s", report.problems()[:5])
        ledger_verify_balances_alert(report=report)
    return report.ok
