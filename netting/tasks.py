"""Netting's Celery tasks: thin wrappers over ``netting.services`` and ``netting.pipeline``
(which enqueue these by name, ``netting.dispatch``, and never import this module).

The long ones (advancing a batch of netted instructions, applying a batch of reports) stop taking
new work after a third of ``CELERY_VISIBILITY_TIMEOUT`` and hand the rest on as a new task: with
``acks_late`` a task still running when the timeout expires would be handed by Redis to a second
worker as well, and both would work the same rows.
"""

from __future__ import annotations

import logging

from celery import shared_task

from netting.pipeline import (
    attempt_send,
    custody_buy_in_check,
    netted_advance_until,
    netted_sweep,
    plan_start,
    rail_reports_fetch,
    reports_apply_until,
)
from netting.services import windows_close_due
from rails.base import RailError
from settlement.tasks import task_deadline  # the one time budget of long tasks

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def netting_close_windows_task() -> list[int]:
    """Beat, every minute: close the windows past their time. Safe to run twice (a closed window
    is left alone; the window row lock makes two concurrent runs take turns)."""
    return windows_close_due()


@shared_task(acks_late=True)
def netted_advance_task(ids: list[int]) -> dict[str, int]:
    """Lock, build and send the messages of a batch of netted instructions. Safe to run twice:
    each instruction is re-read under its row lock and a resend reuses the message id. The ones
    not started within the time budget go on as a new task (queued before this one is
    acknowledged: a crash in between leaves a duplicate, which is harmless)."""
    outcome, rest = netted_advance_until(ids=ids, deadline=task_deadline())
    if rest:
        netted_advance_task.delay(rest)
        outcome["handed_on"] = len(rest)
    return outcome


@shared_task(acks_late=True)
def plan_start_task(window_id: int) -> int:
    """After a window closed: dispatch its plan's pending instructions. Safe to run twice (each
    instruction is re-read under its row lock when advanced)."""
    return plan_start(window_id=window_id)


@shared_task(acks_late=True)
def attempt_send_task(attempt_id: int) -> str:
    return attempt_send(attempt_id=attempt_id)


@shared_task(acks_late=True)
def rail_reports_fetch_task() -> dict[str, dict[str, int]]:
    """Beat: fetch the bank's and the custodian's new reports (stored once each) and hand them
    to the workers to apply. A network that does not answer is tried again at the next beat."""
    outcome = {}
    for network in ("bank", "custodian"):
        try:
            outcome[network] = rail_reports_fetch(network=network, dispatch=True)
        except RailError as exc:
            logger.warning("reports of %s not fetched: %s", network, exc)
    return outcome


@shared_task(acks_late=True)
def reports_apply_task(report_ids: list[int]) -> dict[str, int]:
    """Apply stored reports (confirmations settle in batches); an applied one is skipped, every
    event is idempotent. The reports not started within the time budget go on as a new task."""
    outcome, rest = reports_apply_until(report_ids=report_ids, deadline=task_deadline())
    if rest:
        reports_apply_task.delay(rest)
        outcome["handed_on"] = len(rest)
    return outcome


@shared_task(acks_late=True)
def netted_sweep_task() -> int:
    """Beat: re-dispatch netted instructions that are pending, due for a resend or stuck."""
    return netted_sweep()


@shared_task(acks_late=True, singleton=True)
def custody_buy_in_check_task() -> int:
    return custody_buy_in_check()
