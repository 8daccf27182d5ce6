"""Alerts for operations staff: an in-app notification and an email to the people of the
addressed roles (Django's email backend; the console backend in the demo).

The email goes through an outbox: the alert row is marked ``email_pending`` in the same
transaction, a task sends it after commit (never inside the caller's request or task, so a dead
mail server holds up nothing but that task, for at most ``EMAIL_TIMEOUT``), and a beat sweep
re-sends what a failed attempt or a lost task left pending, a bounded number of times with
backoff. A rolled-back operation alerts nobody."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ops.locking import lock_alert
from ops.models.alerts import OpsAlert

logger = logging.getLogger(__name__)

# What a mail server that is down, slow or refusing looks like (socket errors and timeouts are
# OSError; the SMTP protocol's own errors are smtplib.SMTPException).
MAIL_ERRORS: tuple[type[Exception], ...] = (OSError, smtplib.SMTPException)


def ops_alert(
    *,
    title: str,
    body: str = "",
    link: str = "",
    level: str = "info",
    roles: Iterable[str] = ("operator",),
    dedupe_key: str | None = None,
) -> OpsAlert:
    """Record an alert (once per ``dedupe_key``) and queue its email to the roles' people."""
    roles = tuple(roles)
    fields = {"title": title[:200], "body": body, "link": link, "level": level, "roles": ",".join(roles)}
    if dedupe_key:
        alert, created = OpsAlert.objects.get_or_create(
            dedupe_key=dedupe_key, defaults=fields | {"email_pending": True}
        )
        if not created:
            return alert
    else:
        alert = OpsAlert.objects.create(**fields, email_pending=True)
    transaction.on_commit(lambda: _dispatch_email(alert.pk))
    return alert


def _dispatch_email(alert_id: int) -> None:
    from ops.tasks import ops_alert_email_task

    try:
        ops_alert_email_task.delay(alert_id)
    except Exception:  # broker unreachable: the outbox sweep sends it
        logger.exception("could not enqueue the e-mail of alert %s; the sweep will", alert_id)


def _email_backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(600, 10 * 2 ** max(attempts - 1, 0)))


def ops_alert_email_send(*, alert_id: int) -> str:
    """Send one pending alert e-mail (safe to run twice: a sent or not yet due one is left alone).
    The row is claimed first (``email_next_at`` moved past the mail timeout), so two tasks for
    the same alert do not both send; the SMTP call runs outside any transaction."""
    now = timezone.now()
    with transaction.atomic():
        alert = lock_alert(alert_id).first()
        if alert is None or not alert.email_pending:
            return "done"
        if alert.email_next_at is not None and alert.email_next_at > now:
            return "not_due"
        lease = timedelta(seconds=(settings.EMAIL_TIMEOUT or 10) + settings.CLEARHOUSE_STUCK_AFTER_SECONDS)
        OpsAlert.objects.filter(pk=alert.pk).update(email_next_at=now + lease)
    recipients = sorted(
        set(
            get_user_model()
            .objects.filter(is_active=True, groups__name__in=alert.roles.split(","))
            .exclude(email="")
            .values_list("email", flat=True)
        )
    )
    if not recipients:
        OpsAlert.objects.filter(pk=alert.pk).update(email_pending=False, email_next_at=None)
        return "no_recipients"
    link = f"{settings.CLEARHOUSE_ADMIN_BASE_URL}{alert.link}" if alert.link else ""
    try:
        sent = send_mail(
            subject=f"[Clearhouse {alert.level}] {alert.title}",
            message="\n\n".join(part for part in (alert.body, link) if part),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except MAIL_ERRORS as exc:  # the mail server is down: the in-app alert stands, the sweep re-sends
        attempts = alert.email_attempts + 1
        gave_up = attempts >= settings.CLEARHOUSE_ALERT_EMAIL_MAX_ATTEMPTS
        OpsAlert.objects.filter(pk=alert.pk).update(
            email_attempts=attempts,
            email_error=f"{type(exc).__name__}: {exc}"[:2000],
            email_pending=not gave_up,
            email_next_at=None if gave_up else timezone.now() + _email_backoff(attempts),
        )
        log = logger.error if gave_up else logger.warning
        log("alert %s not emailed (attempt %s%s): %s", alert.pk, attempts, ", gave up" if gave_up else "", exc)
        return "gave_up" if gave_up else "retry"
    OpsAlert.objects.filter(pk=alert.pk).update(
        emailed=len(recipients) if sent else 0,
        email_pending=False,
        email_next_at=None,
        email_attempts=alert.email_attempts + 1,
        email_error="",
    )
    return "sent"


def ops_alerts_email_due(*, limit: int = 200) -> list[int]:
    """Pending alert e-mails due for a (re)send: a retry whose time has come, or one whose task
    never ran (queued longer than the stuck threshold ago)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CLEARHOUSE_STUCK_AFTER_SECONDS)
    return list(
        OpsAlert.objects.filter(email_pending=True)
        .filter(Q(email_next_at__lte=now) | Q(email_next_at__isnull=True, created_at__lt=stale))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
