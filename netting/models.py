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

from common.choices import AssetClass
from ledger.models.ledger import amount_field


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
    participant = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="+")
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

    participant = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="net_debit_caps")
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="+")
    cap = amount_field()
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "asset"], name="netting_cap_unique"),
            models.CheckConstraint(condition=Q(cap__gte=0), name="netting_cap_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} cap {self.cap} {self.asset_id}"


class Direction(models.TextChoices):
    PAY_IN = "pay_in", "Pay-in (participant → central settlement account)"
    PAY_OUT = "pay_out", "Pay-out (central settlement account → participant)"


class NettedStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    HELD = "held", "Held (net debit cap)"
    LOCKED = "locked", "Funds locked"
    SUBMITTED = "submitted", "Submitted to the rail"
    SETTLED = "settled", "Settled"
    REVIEW = "review", "Manual review"


class RailMethod(models.TextChoices):
    LEDGER = "ledger", "Book transfer (internal ledger)"
    ACH = "ach", "ACH (NACHA)"
    WIRE = "wire", "Wire (pacs.008, Fedwire)"
    SEPA = "sepa", "SEPA credit transfer (pain.001)"
    SWIFT = "swift", "SWIFT cross-border (pacs.008)"
    CUSTODY = "custody", "Custody (sese.023)"


class NettedInstruction(ConcurrentTransitionMixin, models.Model):
    """One payment of the settlement plan: a participant's net obligation for one asset and
    settlement date, paid into (pay-in) or out of (pay-out) the central settlement account.

    Its legs are the trade legs of the same window, asset and settlement date that the
    participant pays or receives (``legs()``); each leg is therefore covered by exactly two netted
    instructions (payer's side and payee's side) or by a zero net obligation.
    """

    window = models.ForeignKey(NettingWindow, on_delete=models.PROTECT, related_name="netted_instructions")
    obligation = models.OneToOneField(NetObligation, on_delete=models.PROTECT, related_name="netted_instruction")
    participant = models.ForeignKey("reference.Participant", on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="+")
    settlement_date = models.DateField()
    direction = models.CharField(max_length=8, choices=Direction.choices)
    amount = amount_field()
    status = FSMField(max_length=16, choices=NettedStatus.choices, default=NettedStatus.PENDING, protected=True)
    method = models.CharField(max_length=8, choices=RailMethod.choices, blank=True)
    lock = models.ForeignKey(
        "ledger.LedgerLock", null=True, blank=True, on_delete=models.PROTECT, related_name="netted_instructions"
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Rail attempts made (messages built).")
    locks_taken = models.PositiveIntegerField(default=0, help_text="Ledger locks taken (part of the lock reference).")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateField(null=True, blank=True, help_text="Custody: first day the delivery failed.")
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        permissions = [
            ("release_nettedinstruction", "Can release held payments"),
            ("retry_nettedinstruction", "Can retry payments in review"),
        ]
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="netted_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="netted_status_next_idx"),
            models.Index(fields=["window", "settlement_date", "status"], name="netted_group_idx"),
        ]

    def __str__(self) -> str:
        from common.money import format_amount

        amount = format_amount(self.amount, self.asset.precision)
        return f"N{self.pk} {self.get_direction_display().split(' ')[0]} {amount} {self.asset.code}"

    @property
    def reference(self) -> str:
        return f"N{self.pk}"

    def legs(self) -> models.QuerySet:
        from settlement.models import SettlementInstruction

        return SettlementInstruction.objects.filter(
            netting_window_id=self.window_id, asset_id=self.asset_id, settlement_date=self.settlement_date
        ).filter(Q(payer_id=self.participant_id) | Q(payee_id=self.participant_id))

    # --- transitions: state only; netting.pipeline does the I/O and the logging ---------------
    @transition(field=status, source=NettedStatus.PENDING, target=NettedStatus.HELD)
    def mark_held(self) -> None:
        pass

    @transition(field=status, source=NettedStatus.HELD, target=NettedStatus.PENDING)
    def mark_released(self) -> None:
        pass

    @transition(field=status, source=NettedStatus.PENDING, target=NettedStatus.LOCKED)
    def mark_locked(self) -> None:
        pass

    @transition(field=status, source=NettedStatus.LOCKED, target=NettedStatus.SUBMITTED)
    def mark_submitted(self) -> None:
        pass

    @transition(field=status, source=NettedStatus.SUBMITTED, target=NettedStatus.LOCKED)
    def mark_rerouted(self) -> None:
        """Rejected by one method, to be sent by the next (funds stay locked)."""

    @transition(
        field=status,
        source=[NettedStatus.SUBMITTED, NettedStatus.LOCKED, NettedStatus.REVIEW, NettedStatus.PENDING],
        target=NettedStatus.SETTLED,
    )
    def mark_settled(self) -> None:
        """From review (and pending again after a retry) too: a payment whose network stopped
        answering may still have been made; the network's confirmation is final."""

    @transition(
        field=status,
        source=[NettedStatus.PENDING, NettedStatus.LOCKED, NettedStatus.SUBMITTED],
        target=NettedStatus.REVIEW,
    )
    def mark_review(self) -> None:
        pass

    @transition(field=status, source=NettedStatus.REVIEW, target=NettedStatus.PENDING)
    def mark_retry(self) -> None:
        pass


class AttemptStatus(models.TextChoices):
    SENDING = "sending", "Sending"
    ACCEPTED = "accepted", "Accepted by the network"
    TIMED_OUT = "timed_out", "No answer (will be resent)"
    REJECTED = "rejected", "Rejected"
    FAILING = "failing", "Failing (custody: not enough securities yet)"
    SETTLED = "settled", "Settled"


class RailAttempt(ConcurrentTransitionMixin, models.Model):
    """One message sent for a netted instruction over one method. Every attempt is kept: a
    rejection is followed by a new attempt (next method), a timeout by a resend of the same
    message (the network deduplicates it by its message id, so it pays once)."""

    instruction = models.ForeignKey(NettedInstruction, on_delete=models.PROTECT, related_name="rail_attempts")
    number = models.PositiveIntegerField()
    method = models.CharField(max_length=8, choices=RailMethod.choices)
    message_type = models.CharField(max_length=32)
    message_id = models.CharField(max_length=35, unique=True)
    end_to_end_id = models.CharField(max_length=35, unique=True)
    payload = models.TextField(help_text="The message exactly as sent.")
    status = FSMField(max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.SENDING, protected=True)
    sends = models.PositiveIntegerField(default=0, help_text="How many times the message went out.")
    max_sends = models.PositiveIntegerField(
        default=0, help_text="Sends allowed before review (0: the setting); raised when ops retry from review."
    )
    reason_code = models.CharField(max_length=8, blank=True)
    reason_text = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["instruction", "number"]
        constraints = [
            models.UniqueConstraint(fields=["instruction", "number"], name="rail_attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.message_id} ({self.status})"

    @transition(field=status, source=[AttemptStatus.SENDING, AttemptStatus.TIMED_OUT], target=AttemptStatus.ACCEPTED)
    def mark_accepted(self) -> None:
        pass

    @transition(field=status, source=[AttemptStatus.SENDING, AttemptStatus.TIMED_OUT], target=AttemptStatus.TIMED_OUT)
    def mark_timed_out(self) -> None:
        pass

    @transition(
        field=status,
        source=[AttemptStatus.SENDING, AttemptStatus.TIMED_OUT, AttemptStatus.ACCEPTED, AttemptStatus.FAILING],
        target=AttemptStatus.REJECTED,
    )
    def mark_rejected(self) -> None:
        pass

    @transition(
        field=status,
        source=[AttemptStatus.SENDING, AttemptStatus.TIMED_OUT, AttemptStatus.ACCEPTED, AttemptStatus.FAILING],
        target=AttemptStatus.FAILING,
    )
    def mark_failing(self) -> None:
        pass

    @transition(
        field=status,
        source=[AttemptStatus.SENDING, AttemptStatus.TIMED_OUT, AttemptStatus.ACCEPTED, AttemptStatus.FAILING],
        target=AttemptStatus.SETTLED,
    )
    def mark_settled(self) -> None:
        pass


class RailReport(models.Model):
    """A report received from a network (status report, booking notification, custody
    confirmation or fail advice), kept with its raw content. (network, epoch, sequence) is its
    natural key: fetching the same report twice stores it once and applies it once, and a network
    that restarts its sequence numbers (a new epoch, numbered from 1 again) is not mistaken for
    reports already received."""

    network = models.CharField(max_length=16)
    epoch = models.CharField(
        max_length=64, blank=True, default="", help_text="The network's numbering of its reports (new on a restart)."
    )
    sequence = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=32)
    content = models.TextField()
    received_at = models.DateTimeField(auto_now_add=True)
    applied = models.BooleanField(default=False)
    outcome = models.CharField(max_length=255, blank=True)
    recorded = models.BooleanField(default=False, help_text="Imported into reconciliation's external records.")
    record_error = models.TextField(
        blank=True,
        help_text="Why reconciliation could not import it (an import failure, alerted): it stays unrecorded "
        "and is not tried again until someone clears this.",
    )

    class Meta:
        ordering = ["network", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["network", "epoch", "sequence"], name="rail_report_epoch_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.network} #{self.epoch + ':' if self.epoch else ''}{self.sequence} {self.kind}"
