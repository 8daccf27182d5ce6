from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from common.choices import InstructionStatus, Leg
from common.money import format_amount
from ledger.models.ledger import amount_field

S = InstructionStatus


class Trade(models.Model):
    """An executed trade as reported by an upstream system. Immutable once stored."""

    source = models.CharField(max_length=64, help_text="Upstream system that reported the trade.")
    external_id = models.CharField(max_length=100, help_text="The trade id in the source system.")
    instrument = models.ForeignKey("reference.Instrument", on_delete=models.PROTECT, related_name="trades")
    # buyer/seller/trade/asset/payer/payee: no single-column index, the composite indexes below
    # (trade_buyer_idx, instruction_payer_idx, instruction_trade_leg_unique, ...) start with them;
    # every index is written once per row of every ingest batch (issue 19).
    buyer = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="+", db_index=False)
    seller = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="+", db_index=False)
    quantity = amount_field()
    price = amount_field()
    notional = amount_field(help_text="quantity x price in the quote currency, rounded half-even to its precision")
    executed_at = models.DateTimeField()
    settlement_date = models.DateField()
    payload_hash = models.CharField(max_length=64, help_text="Hash of the submitted content, to detect conflicts.")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    # History rows are read by the trade's id and date, never joined on their foreign keys.
    history = HistoricalRecords(no_db_index=["instrument", "buyer", "seller", "submitted_by"])

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="trade_source_external_id_unique"),
            models.CheckConstraint(condition=~Q(buyer=models.F("seller")), name="trade_buyer_ne_seller"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="trade_quantity_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="trade_price_positive"),
            models.CheckConstraint(condition=Q(notional__gt=0), name="trade_notional_positive"),
        ]
        indexes = [
            models.Index(fields=["buyer", "id"], name="trade_buyer_idx"),
            models.Index(fields=["seller", "id"], name="trade_seller_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


class SettlementInstruction(ConcurrentTransitionMixin, models.Model):
    """One leg of a trade to settle: ``amount`` of ``asset`` from ``payer`` to ``payee``.

    Status changes only through the transitions below, called by the services in
    ``settlement.services.instructions`` which also write the transition log.
    """

    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, related_name="instructions", db_index=False)
    leg = models.CharField(max_length=16, choices=Leg.choices)
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="+", db_index=False)
    payer = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="+", db_index=False)
    payee = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="+", db_index=False)
    amount = amount_field()
    settlement_date = models.DateField()
    status = FSMField(max_length=16, choices=S.choices, default=S.PENDING, protected=True)
    lock = models.ForeignKey(
        "ledger.LedgerLock", null=True, blank=True, on_delete=models.PROTECT, related_name="instructions"
    )
    fee_lock = models.ForeignKey(
        "ledger.LedgerLock",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Network-fee reserve held from the payer for an on-chain transfer.",
    )
    netting_window = models.ForeignKey(
        "netting.NettingWindow",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="legs",
        help_text="The netting window this leg settles in (fiat and securities); empty for gross T+0 crypto.",
    )
    batch = models.ForeignKey(
        "settlement.CryptoBatch",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="legs",
        db_index=False,
        help_text="The crypto batch settling this leg (batch engine); empty otherwise.",
    )
    attempt = models.PositiveIntegerField(default=1, help_text="Incremented by each retry; part of the lock reference.")
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(
        no_db_index=["trade", "asset", "payer", "payee", "lock", "fee_lock", "netting_window", "batch"]
    )

    class Meta:
        permissions = [
            ("retry_settlementinstruction", "Can retry failed instructions"),
            ("cancel_settlementinstruction", "Can cancel instructions"),
            ("escalate_settlementinstruction", "Can escalate instructions to the review queue"),
        ]
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["trade", "leg"], name="instruction_trade_leg_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="instruction_amount_positive"),
            models.CheckConstraint(condition=~Q(payer=models.F("payee")), name="instruction_payer_ne_payee"),
        ]
        indexes = [
            models.Index(fields=["status", "settlement_date"], name="instruction_status_date_idx"),
            models.Index(fields=["payer", "id"], name="instruction_payer_idx"),
            models.Index(fields=["payee", "id"], name="instruction_payee_idx"),
            models.Index(fields=["asset", "status"], name="instruction_asset_status_idx"),
            # the dashboard: per-minute settled/failed and the oldest stuck instruction per status
            models.Index(fields=["status", "updated_at"], name="instruction_status_updated_idx"),
            models.Index(fields=["batch", "id"], name="instruction_batch_idx", condition=Q(batch__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"SI{self.pk} {self.leg} {format_amount(self.amount, self.asset.precision)} {self.asset.code}"

    @property
    def reference(self) -> str:
        """Idempotency reference carried by every external call made for this leg."""
        return f"SI{self.pk}:{self.trade_id}:{self.leg}"

    # --- transitions: conditions and state only; services do the I/O and the logging ---------
    @transition(field=status, source=S.PENDING, target=S.LOCKED)
    def mark_locked(self) -> None:
        pass

    @transition(field=status, source=S.LOCKED, target=S.PROCESSING)
    def mark_processing(self) -> None:
        pass

    @transition(field=status, source=S.PROCESSING, target=S.SETTLED)
    def mark_settled(self) -> None:
        pass

    @transition(field=status, source=S.PENDING, target=S.SETTLED)
    def mark_settled_netted(self) -> None:
        """A netted leg: settled when every payment of its window and date has settled (its value
        moved through the central settlement account, not on its own)."""

    @transition(field=status, source=[S.PENDING, S.LOCKED, S.PROCESSING], target=S.FAILED)
    def mark_failed(self) -> None:
        pass

    @transition(field=status, source=S.FAILED, target=S.PENDING)
    def mark_retry(self) -> None:
        pass

    @transition(field=status, source=[S.PENDING, S.LOCKED, S.FAILED], target=S.CANCELLED)
    def mark_cancelled(self) -> None:
        pass

    @transition(field=status, source=S.SETTLED, target=S.REVERSED)
    def mark_reversed(self) -> None:
        pass
