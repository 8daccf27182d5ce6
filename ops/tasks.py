"""Celery tasks of operations: webhook deliveries, alert e-mails, the daily report. Thin
wrappers that call one service; safe to run twice. Their names stay ``settlement.tasks.*`` (beat's
database rows and messages already queued name them so)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from ops.services.alerts import ops_alert_email_send, ops_alerts_email_due
from ops.services.webhooks import webhook_deliver, webhooks_due

logger = logging.getLogger(__name__)


def dispatch_webhooks(*, dedupe_keys: list[str]) -> None:
    """Enqueue the deliveries of these notifications (called from ``transaction.on_commit``; a
    broker that is down loses nothing: the retry sweep finds them)."""
    from ops.models import Notification

    for pk in Notification.objects.filter(dedupe_key__in=dedupe_keys).values_list("pk", flat=True):
        try:
            webhook_deliver_task.delay(pk)
        except Exception:
            logger.exception("could not enqueue webhook %s; the retry sweeper will", pk)


@shared_task(acks_late=True, name="settlement.tasks.webhook_deliver_task")
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


@shared_task(acks_late=True, name="settlement.tasks.webhooks_retry_task")
def webhooks_retry_task() -> int:
    """Beat, every CLEARHOUSE_SWEEP_EVERY_SECONDS: dispatch the webhook attempts that are due
    (scheduled retries, and first attempts whose task was lost)."""
    ids = webhooks_due()
    for pk in ids:
        webhook_deliver_task.delay(pk)
    return len(ids)


@shared_task(acks_late=True, name="settlement.tasks.ops_alert_email_task")
def ops_alert_email_task(alert_id: int) -> str:
    """Send one alert's e-mail (outbox row); a failure leaves it pending for the sweep."""
    return ops_alert_email_send(alert_id=alert_id)


@shared_task(acks_late=True, name="settlement.tasks.ops_alerts_email_sweep_task")
def ops_alerts_email_sweep_task() -> int:
    """Beat, every CLEARHOUSE_SWEEP_EVERY_SECONDS: re-send alert e-mails still pending."""
    ids = ops_alerts_email_due()
    for pk in ids:
        ops_alert_email_task.delay(pk)
    return len(ids)


@shared_task(acks_late=True, singleton=True, name="settlement.tasks.daily_report_task")
def daily_report_task(day: str | None = None) -> int:
    """Beat, at the end of each day (UTC): the daily settlement report. Safe to run twice: the
    report of a day is regenerated in place."""
    from datetime import date

    from django.utils import timezone

    from common.actors import SystemActor
    from ops.daily_report import daily_report_build

    on = date.fromisoformat(day) if day else timezone.now().date()
    return daily_report_build(day=on, actor=SystemActor("beat")).pk
