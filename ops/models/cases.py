"""Review cases and notifications: how the pipelines tell participants and operations."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from common.choices import CaseKind, CaseStatus

__all__ = ["Audience", "CaseKind", "CaseStatus", "DeliveryStatus", "Notification", "ReviewCase"]


class ReviewCase(ConcurrentTransitionMixin, models.Model):
    """Work for operations staff: an escalated instruction or an investigation (e.g. double spend)."""

    kind = models.CharField(max_length=16, choices=CaseKind.choices)
    status = FSMField(max_length=16, choices=CaseStatus.choices, default=CaseStatus.OPEN, protected=True)
    instruction = models.ForeignKey(
        "settlement.SettlementInstruction", null=True, blank=True, on_delete=models.PROTECT, related_name="cases"
    )
    asset = models.ForeignKey("reference.Asset", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    dedupe_key = models.CharField(max_length=200, unique=True, help_text="One case per problem, however often seen.")
    opened_at = models.DateTimeField(auto_now_add=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="assigned_cases"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution = models.TextField(blank=True)
    history = HistoricalRecords(table_name="settlement_historicalreviewcase")

    class Meta:
        db_table = "settlement_reviewcase"
        permissions = [("resolve_reviewcase", "Can take and resolve review cases")]
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["status", "opened_at"], name="review_case_status_idx")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} {self.status}"

    @transition(field=status, source=CaseStatus.OPEN, target=CaseStatus.RESOLVED)
    def mark_resolved(self) -> None:
        pass


class Audience(models.TextChoices):
    PARTICIPANT = "participant", "Participant"
    OPS = "ops", "Operations"


class DeliveryStatus(models.TextChoices):
    NONE = "none", "No webhook"
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Gave up"


class Notification(models.Model):
    """A message to a participant or to operations, stored first and delivered afterwards."""

    audience = models.CharField(max_length=16, choices=Audience.choices)
    participant = models.ForeignKey(
        "reference.Participant", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    event = models.CharField(max_length=32)
    instruction = models.ForeignKey(
        "settlement.SettlementInstruction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    message = models.TextField()
    payload = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Webhook delivery (participant notifications whose participant has a webhook URL)
    delivery_status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.NONE)
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # When the next attempt is due (empty: right away). An attempt under way pushes it past its
    # own timeout first, so a second task for the same notification does not post it again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "settlement_notification"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["delivery_status", "created_at"], name="notification_delivery_idx"),
            models.Index(
                fields=["next_attempt_at"],
                name="notification_due_idx",
                condition=Q(delivery_status=DeliveryStatus.PENDING),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.audience}:{self.participant_id or 'ops'} {self.event}"
