"""In-app notifications for operations staff (the participants' own notifications and webhooks
are ``Notification``). Each alert is addressed to roles; people mark what they have read."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from common.choices import AlertLevel

__all__ = ["AlertLevel", "OpsAlert"]


class OpsAlert(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    level = models.CharField(max_length=16, choices=AlertLevel.choices, default=AlertLevel.INFO)
    link = models.CharField(max_length=300, blank=True, help_text="Admin page to act on it.")
    roles = models.CharField(max_length=100, help_text="Comma-separated roles it is for.")
    dedupe_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    emailed = models.PositiveIntegerField(default=0, help_text="People it was emailed to.")
    # The e-mail outbox: pending until sent (or given up); a sweep re-sends what a dead mail
    # server or a lost task left behind, from ``email_next_at`` on.
    email_pending = models.BooleanField(default=False)
    email_attempts = models.PositiveIntegerField(default=0)
    email_next_at = models.DateTimeField(null=True, blank=True)
    email_error = models.TextField(blank=True)
    read_by = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", db_table="settlement_opsalert_read_by"
    )

    class Meta:
        db_table = "settlement_opsalert"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["email_next_at"], name="opsalert_email_due_idx", condition=Q(email_pending=True))
        ]

    def __str__(self) -> str:
        return f"[{self.level}] {self.title}"
