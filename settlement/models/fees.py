"""Fees: effective-dated schedules and the charges computed from them.

A ``FeeRule`` applies to instructions matching all of its criteria (a blank criterion matches
anything): participant tier, asset or asset kind, rail, settlement type. Among the rules in
force at the moment (``valid_from`` <= t < ``valid_to``), the most specific wins, then the most
recent. A change of schedule is a new rule from its start time; the old one is closed (its
``valid_to`` set), never edited in place (history keeps both).

A ``FeeCharge`` is what one party pays on one attempt of an instruction: computed when the
payer's funds are locked, posted in the same journal as the settlement, reversed with it.
A pass-through charge passes on a cost the house actually paid: network gas of a chain transfer
(posted with the settlement, not refunded by a reversal: the network keeps it) or a bank's
charges reported in a camt.053/054 booking of a netted payment (posted when the booking is
imported, once per booking, whichever report brings it first).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from common.choices import AssetKind
from ledger.models.ledger import amount_field


class SettlementType(models.TextChoices):
    GROSS = "gross", "Gross (one instruction at a time)"
    NETTED = "netted", "Netted (through a netting window)"


class FeeRail(models.TextChoices):
    LEDGER = "ledger", "Internal ledger"
    CHAIN = "chain", "Blockchain"
    BANK = "bank", "Bank (ACH, wire, SEPA, SWIFT)"
    CUSTODY = "custody", "Custodian"


class FeeRule(models.Model):
    name = models.CharField(max_length=100)
    tier = models.CharField(max_length=32, blank=True, help_text="Participant tier; blank = every tier.")
    asset = models.ForeignKey(
        "reference.Asset", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Blank = any."
    )
    asset_kind = models.CharField(max_length=16, choices=AssetKind.choices, blank=True, help_text="Blank = any.")
    rail = models.CharField(max_length=16, choices=FeeRail.choices, blank=True, help_text="Blank = any.")
    settlement_type = models.CharField(max_length=16, choices=SettlementType.choices, blank=True)
    bps = models.DecimalField(max_digits=9, decimal_places=4, default=0, help_text="Basis points of the value.")
    minimum = amount_field(default=0, help_text="Least fee from the basis points part.")
    maximum = amount_field(null=True, blank=True, help_text="Most fee from the basis points part (blank = no cap).")
    flat = amount_field(default=0, help_text="Added per instruction.")
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True, help_text="Blank = until replaced.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(bps__gte=0, minimum__gte=0, flat__gte=0), name="fee_rule_non_negative"),
            models.CheckConstraint(
                condition=Q(maximum__isnull=True) | Q(maximum__gte=models.F("minimum")), name="fee_rule_max_ge_min"
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")), name="fee_rule_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.bps} bp, from {self.valid_from:%Y-%m-%d %H:%M})"

    @property
    def specificity(self) -> int:
        return sum(bool(v) for v in (self.tier, self.asset_id, self.asset_kind, self.rail, self.settlement_type))


class FeeParty(models.TextChoices):
    PAYER = "payer", "Payer (on top of what it pays)"
    PAYEE = "payee", "Payee (out of what it receives)"


class FeeKind(models.TextChoices):
    SCHEDULE = "schedule", "Schedule (our fee, to fee revenue)"
    PASS_THROUGH = "pass_through", "Pass-through (a cost the house paid: gas, bank charges)"


class FeeChargeStatus(models.TextChoices):
    PENDING = "pending", "Computed, funds held"
    POSTED = "posted", "Posted with the settlement"
    VOIDED = "voided", "Voided (the attempt did not settle)"
    REVERSED = "reversed", "Reversed with the settlement"


class FeeCharge(ConcurrentTransitionMixin, models.Model):
    """Charged either on a gross instruction's cash leg (``instruction``) or on a netted payment
    (``netted``: the participant's net pay-in or pay-out of a window)."""

    instruction = models.ForeignKey(
        "settlement.SettlementInstruction", null=True, blank=True, on_delete=models.PROTECT, related_name="fee_charges"
    )
    netted = models.ForeignKey(
        "netting.NettedInstruction", null=True, blank=True, on_delete=models.PROTECT, related_name="fee_charges"
    )
    attempt = models.PositiveIntegerField(help_text="The instruction's attempt, or the netted payment's lock number.")
    kind = models.CharField(max_length=16, choices=FeeKind.choices, default=FeeKind.SCHEDULE)
    cost_source = models.CharField(max_length=255, blank=True, help_text="Where a pass-through cost was reported.")
    external_key = models.CharField(
        max_length=255, blank=True, help_text="The bank booking a pass-through charge came from (its natural key)."
    )
    party = models.CharField(max_length=8, choices=FeeParty.choices)
    participant = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="+")
    rule = models.ForeignKey(FeeRule, null=True, blank=True, on_delete=models.PROTECT, related_name="charges")
    value = amount_field(help_text="What the fee is computed on.")
    bps = models.DecimalField(max_digits=9, decimal_places=4, default=0)
    from_bps = amount_field(help_text="value x bps / 10,000, before min/max and rounding.")
    limited = models.CharField(max_length=8, blank=True, help_text="'minimum' or 'maximum' when a limit applied.")
    flat = amount_field(default=0)
    fee = amount_field(help_text="Charged, rounded to the asset's precision.")
    status = FSMField(max_length=16, choices=FeeChargeStatus.choices, default=FeeChargeStatus.PENDING, protected=True)
    journal = models.ForeignKey(
        "ledger.Journal", null=True, blank=True, on_delete=models.PROTECT, related_name="fee_charges"
    )
    reversal_journal = models.ForeignKey(
        "ledger.Journal", null=True, blank=True, on_delete=models.PROTECT, related_name="fee_refunds",
        help_text="The reversal's journal that returned this fee.",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)
    posted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["instruction", "attempt", "party"]
        constraints = [
            models.UniqueConstraint(
                fields=["instruction", "attempt", "party"], condition=Q(kind="schedule"), name="fee_charge_unique"
            ),
            models.UniqueConstraint(
                fields=["netted", "attempt", "party"], condition=Q(kind="schedule"), name="fee_charge_netted_unique"
            ),
            models.UniqueConstraint(
                fields=["instruction", "attempt"],
                condition=Q(kind="pass_through", instruction__isnull=False),
                name="fee_charge_gas_unique",
            ),
            models.UniqueConstraint(
                fields=["external_key"], condition=~Q(external_key=""), name="fee_charge_external_unique"
            ),
            models.CheckConstraint(condition=Q(fee__gte=0), name="fee_charge_non_negative"),
            models.CheckConstraint(
                condition=Q(instruction__isnull=True, netted__isnull=False)
                | Q(instruction__isnull=False, netted__isnull=True),
                name="fee_charge_one_target",
            ),
        ]

    def __str__(self) -> str:
        target = f"SI{self.instruction_id}" if self.instruction_id else f"netted #{self.netted_id}"
        return f"{self.party} fee {self.fee} {self.asset_id} on {target}"

    @transition(field=status, source=FeeChargeStatus.PENDING, target=FeeChargeStatus.POSTED)
    def mark_posted(self) -> None:
        pass

    @transition(field=status, source=FeeChargeStatus.PENDING, target=FeeChargeStatus.VOIDED)
    def mark_voided(self) -> None:
        pass

    @transition(field=status, source=FeeChargeStatus.POSTED, target=FeeChargeStatus.REVERSED)
    def mark_reversed(self) -> None:
        pass
