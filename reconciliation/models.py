"""Reconciliation: what the outside world says happened, kept as it came.

``ImportedFile`` is one file or page from an external source, with its raw content; its
(source, sha256) is the natural key, so importing the same file again changes nothing.
``ExternalRecord`` is one line of it (a bank booking, a payment status, a custody confirmation,
a chain transaction, a CSV row), with the natural key the source gives it (entry reference, end
to end id + status, transaction hash, ...): the same line arriving in another file is recognised
and not counted twice. Matching these against the ledger comes with the rest of its issue.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from ledger.models.ledger import amount_field


class Source(models.TextChoices):
    CAMT053 = "camt053", "Bank statement (camt.053)"
    CAMT054 = "camt054", "Bank notification (camt.054)"
    PAIN002 = "pain002", "Payment status report (pain.002 / pacs.002)"
    SESE025 = "sese025", "Custody confirmation (sese.025)"
    CHAIN = "chain", "Chain transaction list (JSON)"
    CSV = "csv", "Generic CSV (documented column mapping)"


class ImportedFile(models.Model):
    source = models.CharField(max_length=16, choices=Source.choices)
    name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    content = models.TextField(help_text="The file exactly as received.")
    records = models.PositiveIntegerField(default=0, help_text="New records this file brought.")
    repeated = models.PositiveIntegerField(default=0, help_text="Lines already known from an earlier file.")
    imported_at = models.DateTimeField(auto_now_add=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    imported_by_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["source", "sha256"], name="recon_file_unique")]

    def __str__(self) -> str:
        return f"{self.get_source_display()}: {self.name}"


class ExternalRecord(models.Model):
    source = models.CharField(max_length=16, choices=Source.choices)
    natural_key = models.CharField(max_length=255, help_text="The source's own identity of this line.")
    file = models.ForeignKey(ImportedFile, on_delete=models.PROTECT, related_name="lines")
    line = models.PositiveIntegerField(help_text="Position in the file (1-based), for people.")
    reference = models.CharField(
        max_length=255, blank=True, db_index=True, help_text="End-to-end id / tx hash / our reference, if carried."
    )
    account = models.CharField(max_length=64, blank=True)
    counterparty = models.CharField(max_length=140, blank=True)
    asset_code = models.CharField(max_length=16)
    amount = amount_field(help_text="Signed: positive = credit / received, negative = debit / sent.")
    value_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=16, blank=True, help_text="BOOK, ACSC, RJCT, confirmed, ...")
    reason_code = models.CharField(max_length=8, blank=True)
    charges = amount_field(default=0, help_text="What the bank charged on this booking (camt Chrgs).")
    charges_included = models.BooleanField(
        default=False, help_text="The amount includes the charges (matched on the amount without them)."
    )
    detail = models.JSONField(default=dict, blank=True, help_text="Everything else the line said.")

    class Meta:
        ordering = ["file", "line"]
        constraints = [
            models.UniqueConstraint(fields=["source", "natural_key"], name="recon_record_unique"),
        ]
        indexes = [
            models.Index(fields=["asset_code", "value_date"], name="recon_record_asset_date_idx"),
            # the bank-charges sweep reads only the few bookings that carry charges
            models.Index(fields=["natural_key"], condition=Q(charges__gt=0), name="recon_record_charged_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.natural_key} {self.amount} {self.asset_code}"


class InternalRecord(models.Model):
    """What the outside world should show for something we did: a booking on a house account
    for a bank payment, a custody movement for a delivery. Snapshotted set-based from the rails'
    tables before each run (``natural_key`` = "attempt:<id>")."""

    natural_key = models.CharField(max_length=64, unique=True)
    rail = models.CharField(max_length=16, help_text="bank / custodian / chain")
    reference = models.CharField(max_length=255, db_index=True)
    account = models.CharField(max_length=64, help_text="The account (or address) the movement must show on.")
    counterparty = models.CharField(max_length=140, blank=True, help_text="The other side's account or address.")
    asset_code = models.CharField(max_length=16)
    amount = amount_field(help_text="Signed, as that account sees it.")
    value_date = models.DateField()
    state = models.CharField(max_length=16, help_text="The attempt's status when snapshotted.")
    since = models.DateTimeField(help_text="When the network took it.")
    due_at = models.DateTimeField(
        null=True, help_text="When the rail should have confirmed it (value date and the rail's completion time)."
    )
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.natural_key} {self.amount} {self.asset_code}"


class ChainScan(models.Model):
    """How far the chain's transaction list has been imported: the next block to read. Only
    blocks deep enough to be final are read, so each page, once imported, never changes."""

    chain = models.CharField(max_length=16, unique=True)
    next_block = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.chain} from block {self.next_block}"


class ReconciliationRun(models.Model):
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    started_by = models.CharField(max_length=150)
    totals = models.JSONField(default=dict, blank=True, help_text="internal, external, matched, breaks by kind")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"run #{self.pk} {self.started_at:%Y-%m-%d %H:%M}"


class BreakKind(models.TextChoices):
    AMOUNT = "amount", "Amount differs"
    CURRENCY = "currency", "Currency differs"
    DATE = "date", "Value date differs"
    DUPLICATE = "duplicate", "Booked more than once"
    MISSING = "missing", "Missing confirmation"
    UNEXPECTED = "unexpected", "Unexpected settlement"
    COUNTERPARTY = "counterparty", "Counterparty differs"
    STATUS = "status", "Status differs (booked though rejected, or rejected though booked)"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class BreakStatus(models.TextChoices):
    OPEN = "open", "Open"
    INVESTIGATING = "investigating", "Investigating"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting a second person's approval"
    RESOLVED = "resolved", "Resolved"
    WRITTEN_OFF = "written_off", "Written off"


class Break(ConcurrentTransitionMixin, models.Model):
    """A discrepancy or an unmatched record found by a run - a case with a lifecycle.
    ``dedupe_key`` makes a later run of the same period find it again instead of opening it
    twice; a break a later run no longer finds (a late confirmation arrived) resolves itself."""

    dedupe_key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=16, choices=BreakKind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    internal = models.ForeignKey(InternalRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reference = models.CharField(max_length=255, blank=True)
    account = models.CharField(max_length=64, blank=True)
    asset_code = models.CharField(max_length=16, blank=True)
    expected = amount_field(null=True, blank=True)
    found = amount_field(null=True, blank=True)
    difference = amount_field(null=True, blank=True)
    external_ids = models.JSONField(default=list, blank=True)
    first_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    last_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="breaks")
    status = FSMField(max_length=20, choices=BreakStatus.choices, default=BreakStatus.OPEN, protected=True)
    resolution = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        permissions = [("work_break", "Can investigate, confirm, escalate and propose on breaks")]
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "severity"], name="recon_break_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.reference} ({self.severity})"

    @transition(field=status, source=BreakStatus.OPEN, target=BreakStatus.INVESTIGATING)
    def mark_investigating(self) -> None:
        pass

    @transition(
        field=status, source=[BreakStatus.OPEN, BreakStatus.INVESTIGATING], target=BreakStatus.AWAITING_APPROVAL
    )
    def mark_proposed(self) -> None:
        pass

    @transition(field=status, source=BreakStatus.AWAITING_APPROVAL, target=BreakStatus.INVESTIGATING)
    def mark_proposal_rejected(self) -> None:
        pass

    @transition(
        field=status,
        source=[BreakStatus.OPEN, BreakStatus.INVESTIGATING, BreakStatus.AWAITING_APPROVAL],
        target=BreakStatus.RESOLVED,
    )
    def mark_resolved(self) -> None:
        pass

    @transition(field=status, source=BreakStatus.AWAITING_APPROVAL, target=BreakStatus.WRITTEN_OFF)
    def mark_written_off(self) -> None:
        pass


class ProposalAction(models.TextChoices):
    ADJUST = "adjust", "Post an adjusting journal"
    WRITE_OFF = "write_off", "Write off"


class BreakProposal(models.Model):
    """An adjusting journal or a write-off proposed for a break; it is posted only when a second
    person (not the proposer) approves it (four-eyes)."""

    brk = models.ForeignKey(Break, on_delete=models.PROTECT, related_name="proposals")
    action = models.CharField(max_length=16, choices=ProposalAction.choices)
    debit_account = models.ForeignKey("ledger.LedgerAccount", on_delete=models.PROTECT, related_name="+")
    credit_account = models.ForeignKey("ledger.LedgerAccount", on_delete=models.PROTECT, related_name="+")
    amount = amount_field()
    reason = models.TextField()
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    approved = models.BooleanField(null=True)
    decision_reason = models.TextField(blank=True)
    journal = models.ForeignKey("ledger.Journal", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="recon_proposal_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True) | ~models.Q(decided_by=models.F("proposed_by")),
                name="recon_proposal_four_eyes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.amount} for break {self.brk_id}"
