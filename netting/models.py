"""Netting windows, the legs they hold, net obligations and net debit caps.

A fiat or securities leg is put in the open window of its trade's asset class when it is ingested
(``SettlementInstruction.netting_window``): a leg is in exactly one window by construction. The
ingest reads the window row ``FOR SHARE`` and the closer takes it ``FOR UPDATE``, so a window
closes only after every transaction that was adding legs to it has committed, and nothing is
added once it is closed. Closing computes every net obligation of the window in one aggregate
query; a closed window is never changed again (its totals and obligations are the record).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from settlement.models.ledger import amount_field


class AssetClass(models.TextChoices):
    FIAT = "fiat", "Fiat currency"
    SECURITY = "security", "Securities"
    CRYPTO = "crypto", "Crypto (T+n)"


class WindowStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class NettingWindow(ConcurrentTransitionMixin, models.Model):
    asset_class = models.CharField(max_length=16, choices=AssetClass.choices)
    status = FSMField(max_length=16, choices=WindowStatus.choices, default=WindowStatus.OPEN, protected=True)
    opened_at = models.DateTimeField()
    closes_at = models.DateTimeField(help_text="Scheduled close; Celery beat closes the window once this has passed.")
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=150, blank=True)
    # the settlement plan's headline figures, written once at close
    gross_legs = models.PositiveIntegerField(default=0)
    net_payments = models.PositiveIntegerField(default=0)
    summary = models.JSONField(
        default=dict, blank=True, help_text="Per asset: gross legs, gross value, net payments, net value."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset_class"], condition=Q(status="open"), name="netting_one_open_window_per_class"
            ),
        ]
        indexes = [models.Index(fields=["status", "closes_at"], name="netting_window_due_idx")]

    def __str__(self) -> str:
        return f"{self.get_asset_class_display()} window #{self.pk} ({self.status})"

    @transition(field=status, source=WindowStatus.OPEN, target=WindowStatus.CLOSED)
    def mark_closed(self) -> None:
        pass

    @property
    def reduction(self) -> float | None:
        """Share of gross legs saved by netting (0.9 = ten legs became one payment)."""
        if not self.gross_legs:
            return None
        return 1 - self.net_payments / self.gross_legs


class NetObligation(models.Model):
    """What one participant pays into (net < 0) or receives from (net > 0) the central settlement
    account for one asset and settlement date of a window. Sums to zero per asset and date."""

    window = models.ForeignKey(NettingWindow, on_delete=models.PROTECT, related_name="obligations")
    participant = models.ForeignKey("settlement.Participant", on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey("settlement.Asset", on_delete=models.PROTECT, related_name="+")
    settlement_date = models.DateField()
    pays = amount_field(help_text="Gross amount of the participant's paying legs.")
    receives = amount_field(help_text="Gross amount of the participant's receiving legs.")
    net = amount_field(help_text="receives - pays: positive = paid out to the participant.")
    legs = models.PositiveIntegerField()
    held = models.BooleanField(default=False, help_text="Over the participant's net debit cap: held for review.")

    class Meta:
        ordering = ["window", "asset", "participant"]
        constraints = [
            models.UniqueConstraint(
                fields=["window", "participant", "asset", "settlement_date"], name="netting_obligation_unique"
            ),
            models.CheckConstraint(
                condition=Q(net=models.F("receives") - models.F("pays")), name="netting_net_is_diff"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} {self.net} {self.asset_id} (window {self.window_id})"


class NetDebitCap(models.Model):
    """The most a participant may owe net in one window for one asset (a liquidity limit)."""

    participant = models.ForeignKey("settlement.Participant", on_delete=models.PROTECT, related_name="net_debit_caps")
    asset = models.ForeignKey("settlement.Asset", on_delete=models.PROTECT, related_name="+")
    cap = amount_field()
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "asset"], name="netting_cap_unique"),
            models.CheckConstraint(condition=Q(cap__gte=0), name="netting_cap_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} cap {self.cap} {self.asset_id}"
