"""Webhook delivery of participant notifications: JSON POST signed with HMAC-SHA256.

Headers sent with each delivery:

* ``X-Clearhouse-Event``: the event name (``settled``, ``failed``, ...)
* ``X-Clearhouse-Delivery``: the notification id (the receiver's idempotency key; a retry repeats it)
* ``X-Clearhouse-Timestamp``: Unix seconds when this attempt was signed
* ``X-Clearhouse-Signature``: ``sha256=<hex HMAC of "<timestamp>.<body>" with the participant's secret>``

A 2xx answer is a delivery; anything else (a redirect too: none is followed, or no answer) is
retried on the schedule ``CLEARHOUSE_WEBHOOK_RETRY_SCHEDULE`` (spanning hours, so a receiver that
is down for a while loses nothing), by the task for a short wait and by beat's sweep otherwise;
after ``CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS`` the notification is given up and operations are alerted.
The target is checked before every attempt and every connection (``common.webhook_targets``);
``last_error`` keeps our own short account of a failure (status code or error kind), never the
receiver's answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.webhook_targets import WebhookTargetRefused, webhook_post
from ops.locking import lock_notification
from ops.models import Notification
from ops.models.cases import DeliveryStatus


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook_body(notification: Notification) -> bytes:
    document = {
        "id": notification.pk,
        "event": notification.event,
        "participant": notification.participant.code if notification.participant else None,
        "message": notification.message,
        "data": notification.payload,
        "created_at": notification.created_at.isoformat(),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class DeliveryOutcome:
    delivered: bool
    final: bool  # no more attempts (delivered, given up, or nothing to deliver)
    error: str = ""
    retry_in: float | None = None  # seconds until the next attempt is due (not final)


def webhook_retry_delay(attempts: int) -> float:
    """Seconds after the ``attempts``-th failed attempt before the next one (the schedule's last
    step repeats)."""
    schedule = settings.CLEARHOUSE_WEBHOOK_RETRY_SCHEDULE
    return float(schedule[min(max(attempts, 1), len(schedule)) - 1])


def _claim(notification_id: int) -> Notification | None:
    """Take the notification for one attempt: pending and due, its next attempt moved past this
    attempt's timeout so a duplicate task (sweep and retry at once, a redelivered task) leaves it
    alone; a worker killed mid-attempt leaves a claim that simply expires."""
    now = timezone.now()
    with transaction.atomic():
        notification = lock_notification(notification_id).first()
        if notification is None or notification.delivery_status != DeliveryStatus.PENDING:
            return None
        if notification.next_attempt_at is not None and notification.next_attempt_at > now:
            return None
        lease = settings.CLEARHOUSE_WEBHOOK_TIMEOUT_SECONDS + settings.CLEARHOUSE_STUCK_AFTER_SECONDS
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=now + timedelta(seconds=lease))
        return notification


def _give_up_alert(notification: Notification, error: str) -> None:
    from ops.services.alerts import ops_alert

    participant = notification.participant  # set: only a participant's notification has a webhook
    url = participant.webhook_url if participant is not None else ""
    ops_alert(
        title=f"Webhook to {notification.participant} given up: notification #{notification.pk} ({notification.event})",
        body=f"{notification.delivery_attempts} attempts to {url} failed since "
        f"{notification.created_at:%Y-%m-%d %H:%M:%S} UTC; the last: {error}. The participant has not been told: "
        "tell it another way, or have the receiver fixed and the notification re-sent.",
        link=f"/admin/ops/notification/{notification.pk}/change/",
        level="warning",
        roles=("operator",),
        dedupe_key=f"webhook-given-up:{notification.pk}",
    )


def webhook_deliver(*, notification_id: int) -> DeliveryOutcome:
    """One delivery attempt, if one is due. The HTTP call happens outside any database
    transaction. A failure schedules the next attempt (``next_attempt_at``, which the sweep
    acts on); the last failure gives the notification up and raises an ops alert."""
    notification = _claim(notification_id)
    if notification is None:
        current = Notification.objects.filter(pk=notification_id).values_list("delivery_status", flat=True).first()
        return DeliveryOutcome(delivered=False, final=current != DeliveryStatus.PENDING)
    participant = notification.participant
    if participant is None:  # never: notifications are pending only for a participant's webhook
        raise ValueError(f"notification #{notification.pk} is pending without a participant")
    body = webhook_body(notification)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Clearhouse-Event": notification.event,
        "X-Clearhouse-Delivery": str(notification.pk),
        "X-Clearhouse-Timestamp": str(timestamp),
        "X-Clearhouse-Signature": webhook_signature(secret=participant.webhook_secret, timestamp=timestamp, body=body),
    }
    error = ""
    try:
        response = webhook_post(
            participant.webhook_url, data=body, headers=headers, timeout=settings.CLEARHOUSE_WEBHOOK_TIMEOUT_SECONDS
        )
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
    except WebhookTargetRefused as exc:
        error = f"target refused: {exc}"
    except requests.RequestException as exc:
        error = f"no answer ({type(exc).__name__})"
    with transaction.atomic():
        notification = lock_notification(notification.pk).get()
        if notification.delivery_status != DeliveryStatus.PENDING:
            return DeliveryOutcome(delivered=False, final=True)
        notification.delivery_attempts += 1
        if not error:
            notification.delivery_status = DeliveryStatus.DELIVERED
            notification.delivered_at = timezone.now()
            notification.last_error = ""
            notification.next_attempt_at = None
            notification.save(
                update_fields=("delivery_status", "delivered_at", "delivery_attempts", "last_error", "next_attempt_at")
            )
            return DeliveryOutcome(delivered=True, final=True)
        notification.last_error = error[:2000]
        if notification.delivery_attempts >= settings.CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS:
            notification.delivery_status = DeliveryStatus.FAILED
            notification.next_attempt_at = None
            notification.save(update_fields=("delivery_attempts", "last_error", "delivery_status", "next_attempt_at"))
            _give_up_alert(notification, error)
            return DeliveryOutcome(delivered=False, final=True, error=error)
        delay = webhook_retry_delay(notification.delivery_attempts)
        notification.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        notification.save(update_fields=("delivery_attempts", "last_error", "next_attempt_at"))
        return DeliveryOutcome(delivered=False, final=False, error=error, retry_in=delay)


def webhooks_due(*, limit: int = 500) -> list[int]:
    """Pending notifications an attempt is due for: a retry whose time has come, or a first
    attempt whose task never ran (created longer than the stuck threshold ago)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CLEARHOUSE_STUCK_AFTER_SECONDS)
    return list(
        Notification.objects.filter(delivery_status=DeliveryStatus.PENDING)
        .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lt=stale))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
