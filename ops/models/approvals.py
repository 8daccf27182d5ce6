"""Four-eyes (maker-checker) approvals for sensitive operations.

One person proposes (with a reason); the operation takes effect only when a different person
with the approver role approves it (with a reason) - someone who manages no users and whose
account the proposer neither created nor changed (``approver_require``). The database refuses a
decision by the proposer (CHECK constraint), and at most one request per operation and target
is pending (for a participant's accounts: one per participant and kind of account).
Adjusting journals and write-offs of reconciliation breaks have their own proposals
(``reconciliation.BreakProposal``) under the same rule.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from common.ports import NETTED_RELEASE


class ApprovalKind(models.TextChoices):
    REVERSAL = "reversal", "Reverse a settled trade"
    HALT_LIFT = "halt_lift", "Lift a settlement halt"
    METHOD_OVERRIDE = "method_override", "Override a payment's rail method"
    NETTED_RELEASE = NETTED_RELEASE, "Release a payment held over its net debit cap"
    BANK_ACCOUNT = "bank_account", "Add or change a participant's bank account"
    WALLET = "wallet", "Add or change a participant's wallet"
    CUSTODY_ACCOUNT = "custody_account", "Add or change a participant's custody account"
    NET_DEBIT_CAP = "net_debit_cap", "Add or change a participant's net debit cap"
    BEAT_TASK = "beat_task", "Change, enable or disable a scheduled task"
    ASSET = "asset", "Change an asset's kind, chain, cycle or precision while it settles"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved and applied"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Approved, but could not be applied"


class ApprovalRequest(ConcurrentTransitionMixin, models.Model):
    kind = models.CharField(max_length=20, choices=ApprovalKind.choices)
    target_id = models.BigIntegerField(
        help_text="Trade (reversal), halt (lift), netted instruction (override, release), participant (its bank, "
        "custody and wallet accounts, its net debit caps), periodic task or asset."
    )
    target_label = models.CharField(max_length=200)
    payload = models.JSONField(
        default=dict, blank=True, help_text="What is to be done (the method; a record's values before and after)."
    )
    reason = models.TextField()
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(auto_now_add=True)
    status = FSMField(max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING, protected=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    outcome = models.TextField(blank=True, help_text="What applying it did, or why it could not be applied.")
    history = HistoricalRecords(table_name="settlement_historicalapprovalrequest")

    class Meta:
        db_table = "settlement_approvalrequest"
        ordering = ["-id"]
        permissions = [("approve_approvalrequest", "Can approve or reject four-eyes requests")]
        constraints = [
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("proposed_by")),
                name="approval_not_by_proposer",
            ),
            models.UniqueConstraint(
                fields=["kind", "target_id"], condition=Q(status="pending"), name="approval_one_pending"
            ),
        ]
        indexes = [models.Index(fields=["status", "proposed_at"], name="approval_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.target_label} ({self.status})"

    @transition(field=status, source=ApprovalStatus.PENDING, target=ApprovalStatus.APPROVED)
    def approve(self) -> None:
        pass

    @transition(field=status, source=ApprovalStatus.PENDING, target=ApprovalStatus.FAILED)
    def fail(self) -> None:
        pass

    @transition(field=status, source=ApprovalStatus.PENDING, target=ApprovalStatus.REJECTED)
    def reject(self) -> None:
        pass
