"""Crypto settlement pipeline records: on-chain transfers and halts (circuit breakers). Review cases
and notifications are operations' (ops.models.cases)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from ledger.models.ledger import amount_field


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
    tx_hash = models.CharField(max_length=130)
    raw_tx = models.TextField(
        blank=True, help_text="Signed transaction (contains no key); empty when ``chain_tx`` holds it."
    )
    chain_tx = models.ForeignKey(
        "settlement.ChainTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="transfers",
        help_text="The batch chain transaction that pays this leg among others (batch engine).",
    )
    output_index = models.PositiveIntegerField(
        default=0, help_text="Position of this payment in its chain transaction (event, output or instruction)."
    )
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
            models.UniqueConstraint(fields=["tx_hash", "output_index"], name="chain_transfer_tx_output_unique"),
            # a failed transfer never reached the chain and gave its nonce back: it may be reused;
            # the payments of one batch chain transaction share its nonce (``ChainTransaction``)
            models.UniqueConstraint(
                fields=["chain", "from_address", "nonce"],
                condition=~models.Q(status=TransferStatus.FAILED) & models.Q(chain_tx__isnull=True),
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

    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="halts")
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
