"""Crypto settlement pipeline records: on-chain transfers, halts (circuit breakers), review cases
and notifications."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from settlement.models.ledger import amount_field


class TransferStatus(models.TextChoices):
    SIGNED = "signed", "Signed (stored, not yet broadcast)"
    BROADCAST = "broadcast", "Broadcast"
    CONFIRMED = "confirmed", "Confirmed"
    FAILED = "failed", "Failed"


class ChainTransfer(ConcurrentTransitionMixin, models.Model):
    """One on-chain transaction for one attempt of an instruction.

    The signed transaction, its hash and nonce are stored before the first broadcast, so every
    later broadcast sends the very same bytes: a retry or rebroadcast cannot pay twice.
    """

    instruction = models.ForeignKey(
        "settlement.SettlementInstruction", on_delete=models.PROTECT, related_name="chain_transfers"
    )
    attempt = models.PositiveIntegerField()
    chain = models.CharField(max_length=16)
    from_address = models.CharField(max_length=128)
    to_address = models.CharField(max_length=128)
    amount = amount_field()
    nonce = models.BigIntegerField()
    tx_hash = models.CharField(max_length=130, unique=True)
    raw_tx = models.TextField(help_text="Signed transaction (contains no key).")
    wallet_state_before = models.JSONField(
        default=dict, blank=True, help_text="The sender wallet's rail state this transaction spent from."
    )
    resign_count = models.PositiveIntegerField(
        default=0, help_text="Times replaced by a new signature after the previous one expired unlanded (Solana)."
    )
    fee_cap = amount_field()
    fee = amount_field(null=True, blank=True)
    status = FSMField(max_length=16, choices=TransferStatus.choices, default=TransferStatus.SIGNED, protected=True)
    confirmations = models.PositiveIntegerField(default=0)
    block_number = models.BigIntegerField(null=True, blank=True)
    broadcast_count = models.PositiveIntegerField(default=0)
    unseen_checks = models.PositiveIntegerField(default=0, help_text="Checks in a row the node did not know it.")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["instruction", "attempt"], name="chain_transfer_attempt_unique"),
            # a failed transfer never reached the chain and gave its nonce back: it may be reused
            models.UniqueConstraint(
                fields=["chain", "from_address", "nonce"],
                condition=~models.Q(status=TransferStatus.FAILED),
                name="chain_transfer_nonce_unique",
            ),
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="chain_transfer_status_idx")]

    def __str__(self) -> str:
        return f"{self.chain} {self.tx_hash[:14]}… {self.status}"

    @transition(field=status, source=TransferStatus.SIGNED, target=TransferStatus.BROADCAST)
    def mark_broadcast(self) -> None:
        pass

    @transition(field=status, source=TransferStatus.BROADCAST, target=TransferStatus.CONFIRMED)
    def mark_confirmed(self) -> None:
        pass

    @transition(field=status, source=[TransferStatus.SIGNED, TransferStatus.BROADCAST], target=TransferStatus.FAILED)
    def mark_failed(self) -> None:
        pass


class SettlementHalt(models.Model):
    """Circuit breaker: while open, nothing is broadcast for the asset."""

    asset = models.ForeignKey("settlement.Asset", on_delete=models.PROTECT, related_name="halts")
    reason = models.TextField()
    opened_at = models.DateTimeField(auto_now_add=True)
    opened_by = models.CharField(max_length=150)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    lift_reason = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset"], condition=Q(lifted_at__isnull=True), name="one_open_halt_per_asset"
            ),
        ]

    def __str__(self) -> str:
        return f"halt {self.asset} ({'open' if self.lifted_at is None else 'lifted'})"


class CaseKind(models.TextChoices):
    ESCALATION = "escalation", "Escalation (manual review)"
    INVESTIGATION = "investigation", "Investigation"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class ReviewCase(ConcurrentTransitionMixin, models.Model):
    """Work for operations staff: an escalated instruction or an investigation (e.g. double spend)."""

    kind = models.CharField(max_length=16, choices=CaseKind.choices)
    status = FSMField(max_length=16, choices=CaseStatus.choices, default=CaseStatus.OPEN, protected=True)
    instruction = models.ForeignKey(
        "settlement.SettlementInstruction", null=True, blank=True, on_delete=models.PROTECT, related_name="cases"
    )
    asset = models.ForeignKey("settlement.Asset", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
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
    history = HistoricalRecords()

    class Meta:
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
        "settlement.Participant", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
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
