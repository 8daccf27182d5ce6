"""Alerts for operations staff: an in-app notification and an email to the people of the
addressed roles (Django's email backend; the console backend in the demo). The email goes
after the transaction commits, so a rolled-back operation alerts nobody."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction

from settlement.models.alerts import OpsAlert

logger = logging.getLogger(__name__)


def ops_alert(
    *,
    title: str,
    body: str = "",
    link: str = "",
    level: str = "info",
    roles: Iterable[str] = ("operator",),
    dedupe_key: str | None = None,
) -> OpsAlert:
    """Record an alert (once per ``dedupe_key``) and email it to the roles' people."""
    roles = tuple(roles)
    if dedupe_key:
        alert, created = OpsAlert.objects.get_or_create(
            dedupe_key=dedupe_key,
            defaults={"title": title[:200], "body": body, "link": link, "level": level, "roles": ",".join(roles)},
        )
        if not created:
            return alert
    else:
        alert = OpsAlert.objects.create(title=title[:200], body=body, link=link, level=level, roles=",".join(roles))
    transaction.on_commit(lambda: _email(alert.pk))
    return alert


def _email(alert_id: int) -> None:
    alert = OpsAlert.objects.get(pk=alert_id)
    recipients = sorted(
        set(
            get_user_model()
            .objects.filter(is_active=True, groups__name__in=alert.roles.split(","))
            .exclude(email="")
            .values_list("email", flat=True)
        )
    )
    if not recipients:
        return
    link = f"{settings.CLEARHOUSE_ADMIN_BASE_URL}{alert.link}" if alert.link else ""
    try:
        sent = send_mail(
            subject=f"[Clearhouse {alert.level}] {alert.title}",
            message="\n\n".join(part for part in (alert.body, link) if part),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except OSError as exc:  # the mail server is down: the in-app alert stands
        logger.warning("alert %s not emailed: %s", alert.pk, exc)
        return
    OpsAlert.objects.filter(pk=alert.pk).update(emailed=len(recipients) if sent else 0)
