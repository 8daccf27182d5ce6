"""The batch engine's records: a batch of crypto T+0 trades on one chain, and the chain
transactions that move many of its settlements at once.

A batch is the unit of work: its trades are locked, signed, broadcast and settled together, each
stage one short database transaction over every item (set-based), and each stage a
compare-and-set on the batch row's status, so a duplicate or crashed task changes nothing. One
``ChainTransaction`` pays many legs (a multisend call, a multi-output Bitcoin transaction, up to
20 Solana transfers); each leg keeps its own ``ChainTransfer`` row (the movement with its
settlement reference and its position in the chain transaction), so reconciliation and
operations still see every settlement on its own.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django_fsm import FSMField, transition
from simple_history.models import HistoricalRecords

from ledger.models.ledger import amount_field
from settlement.models.pipeline import TransferStatus


class BatchStatus(models.TextChoices):
    OPEN = "open", "Open (trades claimed, nothing held yet)"
    LOCKED = "locked", "Locked (funds and fee reserves held; short trades failed)"
    SIGNED = "signed", "Signed (chain transactions stored, not yet sent)"
    BROADCAST = "broadcast", "Broadcast (waiting for confirmations)"
    DONE = "done", "Done (every trade settled or failed)"


class CryptoBatch(models.Model):
    chain = models.CharField(max_length=16)
    status = FSMField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.OPEN, protected=True)
    size = models.PositiveIntegerField(default=0, help_text="Trades claimed by the batch.")
    settled = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "updated_at"], name="crypto_batch_status_idx")]
        verbose_name_plural = "crypto batches"

    def __str__(self) -> str:
        return f"batch {self.pk} {self.chain} {self.status} ({self.size})"

    @transition(field=status, source=BatchStatus.OPEN, target=BatchStatus.LOCKED)
    def mark_locked(self) -> None:
        pass

    @transition(field=status, source=BatchStatus.LOCKED, target=BatchStatus.SIGNED)
    def mark_signed(self) -> None:
        pass

    @transition(field=status, source=BatchStatus.SIGNED, target=BatchStatus.BROADCAST)
    def mark_broadcast(self) -> None:
        pass

    @transition(
        field=status,
        source=[BatchStatus.OPEN, BatchStatus.LOCKED, BatchStatus.SIGNED, BatchStatus.BROADCAST],
        target=BatchStatus.DONE,
    )
    def mark_done(self) -> None:
        pass


class ChainTransaction(models.Model):
    """One signed chain transaction of a batch, paying one or more legs from one house wallet.

    Its bytes are stored before the first broadcast; every later broadcast sends the same bytes."""

    batch = models.ForeignKey(CryptoBatch, on_delete=models.PROTECT, related_name="chain_txs")
    chain = models.CharField(max_length=16)
    from_address = models.CharField(max_length=128)
    nonce = models.BigIntegerField()
    tx_hash = models.CharField(max_length=130, unique=True)
    raw_tx = models.TextField(help_text="Signed transaction (contains no key).")
    payouts = models.PositiveIntegerField(help_text="Legs this transaction pays.")
    wallet_state_before = models.JSONField(default=dict, blank=True)
    fee_cap = amount_field()
    fee = amount_field(null=True, blank=True)
    status = FSMField(max_length=16, choices=TransferStatus.choices, default=TransferStatus.SIGNED, protected=True)
    confirmations = models.PositiveIntegerField(default=0)
    block_number = models.BigIntegerField(null=True, blank=True)
    broadcast_count = models.PositiveIntegerField(default=0)
    unseen_checks = models.PositiveIntegerField(default=0)
    resign_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["chain", "from_address", "nonce"],
                condition=~Q(status=TransferStatus.FAILED),
                name="chain_tx_nonce_unique",
            ),
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="chain_tx_status_idx")]

    def __str__(self) -> str:
        return f"{self.chain} {self.tx_hash[:14]}… ({self.payouts} payouts) {self.status}"

    @transition(field=status, source=TransferStatus.SIGNED, target=TransferStatus.BROADCAST)
    def mark_broadcast(self) -> None:
        pass

    @transition(field=status, source=TransferStatus.BROADCAST, target=TransferStatus.CONFIRMED)
    def mark_confirmed(self) -> None:
        pass

    @transition(field=status, source=[TransferStatus.SIGNED, TransferStatus.BROADCAST], target=TransferStatus.FAILED)
    def mark_failed(self) -> None:
        pass
