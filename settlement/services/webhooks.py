"""Webhook delivery of participant notifications: JSON POST signed with HMAC-SHA256.

Headers sent with each delivery:

* ``X-Clearhouse-Event``: the event name (``settled``, ``failed``, ...)
* ``X-Clearhouse-Delivery``: the notification id (the receiver's idempotency key; a retry repeats it)
* ``X-Clearhouse-Timestamp``: Unix seconds when this attempt was signed
* ``X-Clearhouse-Signature``: ``sha256=<hex HMAC of "<timestamp>.<body>" with the participant's secret>``

A 2xx answer is a delivery; anything else (a redirect too: none is followed, or no answer) is
retried with backoff by the task. The target is checked before every attempt and every connection
(``settlement.webhook_targets``); ``last_error`` keeps our own short account of a failure (status
code or error kind), never the receiver's answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from settlement.models import Notification
from settlement.models.pipeline import DeliveryStatus
from settlement.webhook_targets import WebhookTargetRefused, webhook_post


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


def webhook_deliver(*, notification_id: int) -> DeliveryOutcome:
    """One delivery attempt. The HTTP call happens outside any database transaction."""
    notification = Notification.objects.select_related("participant").filter(pk=notification_id).first()
    if notification is None or notification.delivery_status != DeliveryStatus.PENDING:
        return DeliveryOutcome(delivered=False, final=True)
    participant = notification.participant
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
        notification = Notification.objects.select_for_update().get(pk=notification.pk)
        if notification.delivery_status != DeliveryStatus.PENDING:
            return DeliveryOutcome(delivered=False, final=True)
        notification.delivery_attempts = F("delivery_attempts") + 1
        if not error:
            notification.delivery_status = DeliveryStatus.DELIVERED
            notification.delivered_at = timezone.now()
            notification.last_error = ""
            notification.save(update_fields=("delivery_status", "delivered_at", "delivery_attempts", "last_error"))
            return DeliveryOutcome(delivered=True, final=True)
        notification.last_error = error[:2000]
        notification.save(update_fields=("delivery_attempts", "last_error"))
        notification.refresh_from_db(fields=("delivery_attempts",))
        if notification.delivery_attempts >= settings.CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS:
            notification.delivery_status = DeliveryStatus.FAILED
            notification.save(update_fields=("delivery_status",))
            return DeliveryOutcome(delivered=False, final=True, error=error)
        return DeliveryOutcome(delivered=False, final=False, error=error)


def webhooks_pending(*, older_than_seconds: int, limit: int = 500) -> list[int]:
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    return list(
        Notification.objects.filter(delivery_status=DeliveryStatus.PENDING, created_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
