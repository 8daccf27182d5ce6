"""Double-entry ledger.

* ``LedgerAccount`` holds a running balance per (owner, asset, kind); system accounts have no
  owner. A CHECK constraint keeps non-overdraft balances at or above zero, so PostgreSQL itself
  refuses an overspend whatever the Python code does.
* ``Journal`` + ``Posting``: every movement is a journal whose postings sum to zero per asset
  (checked by the service and, on PostgreSQL, by a trigger on every INSERT of postings).
  Both tables are append-only (a trigger refuses UPDATE and DELETE).
* ``LedgerLock`` is a pending transfer: lock (available → locked), then post or void.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from common.choices import AccountKind, JournalKind, LockStatus
from common.money import DECIMAL_PLACES, MAX_DIGITS


def amount_field(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs)  # type: ignore[arg-type]


class LedgerAccount(models.Model):
    owner = models.ForeignKey(
        "reference.Participant", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    system_code = models.CharField(max_length=64, blank=True, help_text="Name of a system account (no owner).")
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="ledger_accounts")
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    allow_negative = models.BooleanField(default=False)
    balance = amount_field(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "settlement_ledgeraccount"
        constraints = [
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance__gte=0), name="ledger_account_no_overdraft"
            ),
            models.UniqueConstraint(
                fields=["owner", "asset", "kind"], condition=Q(owner__isnull=False), name="ledger_account_owner_unique"
            ),
            models.UniqueConstraint(
                fields=["system_code", "asset"], condition=Q(owner__isnull=True), name="ledger_account_system_unique"
            ),
            models.CheckConstraint(
                condition=(Q(owner__isnull=True, kind=AccountKind.SYSTEM) & ~Q(system_code=""))
                | (Q(owner__isnull=False, system_code="") & ~Q(kind=AccountKind.SYSTEM)),
                name="ledger_account_owner_or_system",
            ),
        ]

    def __str__(self) -> str:
        owner = self.owner.code if self.owner_id else f"system:{self.system_code}"  # type: ignore[union-attr]
        return f"{owner}/{self.asset.code}/{self.kind}"


class Journal(models.Model):
    kind = models.CharField(max_length=16, choices=JournalKind.choices)
    reference = models.CharField(max_length=200, unique=True, help_text="Idempotency key of the movement.")
    memo = models.CharField(max_length=255, blank=True)
    lock = models.ForeignKey("ledger.LedgerLock", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "settlement_journal"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"J{self.pk} {self.kind} {self.reference}"


class Posting(models.Model):
    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings")
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="+")
    amount = amount_field(help_text="Signed: positive credits the account's balance, negative debits it.")

    class Meta:
        db_table = "settlement_posting"
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="posting_amount_nonzero")]
        indexes = [models.Index(fields=["account", "id"], name="posting_account_idx")]

    def __str__(self) -> str:
        return f"{self.account} {self.amount:+}"


class LedgerLock(ConcurrentTransitionMixin, models.Model):
    """A pending transfer: value held in the payer's locked account until posted or voided."""

    reference = models.CharField(max_length=200, unique=True)
    asset = models.ForeignKey("reference.Asset", on_delete=models.PROTECT, related_name="+")
    available_account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    locked_account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    amount = amount_field()
    status = FSMField(max_length=16, choices=LockStatus.choices, default=LockStatus.PENDING, protected=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords(table_name="settlement_historicalledgerlock")
    # Not a column: set on the lock that ledger_post / ledger_void return, to the journal they wrote.
    resolved_journal: Journal

    class Meta:
        db_table = "settlement_ledgerlock"
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_lock_amount_positive")]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="ledger_lock_pending_exp_idx"),
        ]

    def __str__(self) -> str:
        return f"lock {self.reference} {self.amount} {self.status}"

    @transition(field=status, source=LockStatus.PENDING, target=LockStatus.POSTED)
    def mark_posted(self) -> None:
        pass

    @transition(field=status, source=LockStatus.PENDING, target=LockStatus.VOIDED)
    def mark_voided(self) -> None:
        pass
