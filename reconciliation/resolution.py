"""Operations resolve breaks: every action needs a reason and is audited (simple-history on the
break and the proposal, and the transition log with actor and reason). Posting an adjusting
journal or writing off needs a second person: one proposes, another approves (four-eyes, also a
CHECK constraint on ``BreakProposal``); only the approval moves value."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from common.actors import Actor, actor_user, stamp_history
from common.exceptions import IllegalTransition, ValidationFailed
from common.ports import APPROVE_PERMISSION, approver_require, permission_require
from ledger.models import LedgerAccount
from ledger.services.audit import transition_run
from ledger.services.ledger import ledger_adjust
from reconciliation.locking import lock_break, lock_proposal
from reconciliation.models import Break, BreakProposal, ProposalAction


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a reason is required")
    return reason


def _locked(brk: Break) -> Break:
    return lock_break(brk.pk).get()


def _apply(brk: Break, method: Callable[[], None], *, actor: Actor, reason: str, metadata: dict | None = None) -> Break:
    transition_run(brk, method, entity="break", actor=actor, reason=reason, metadata=metadata)
    return brk


def break_investigate(*, brk: Break, actor: Actor, reason: str) -> Break:
    with transaction.atomic():
        brk = _locked(brk)
        return _apply(brk, brk.mark_investigating, actor=actor, reason=_reason(reason))


def break_confirm(*, brk: Break, actor: Actor, reason: str) -> Break:
    """The records do agree (e.g. matched by hand): resolved, nothing posted."""
    with transaction.atomic():
        brk = _locked(brk)
        brk.resolution = f"confirmed: {_reason(reason)}"
        return _apply(brk, brk.mark_resolved, actor=actor, reason=brk.resolution)


def break_escalate(*, brk: Break, actor: Actor, reason: str) -> Break:
    from common.choices import CaseKind
    from common.ports import case_open

    with transaction.atomic():
        brk = _locked(brk)
        reason = _reason(reason)
        if brk.status == "open":
            _apply(brk, brk.mark_investigating, actor=actor, reason=f"escalated: {reason}")
        case_open(
            kind=CaseKind.ESCALATION,
            reason=f"reconciliation break {brk.pk} ({brk.get_kind_display()}, {brk.reference}): {reason}",
            dedupe_key=f"break:{brk.pk}",
        )
        return brk


def break_propose(
    *,
    brk: Break,
    actor: Actor,
    action: str,
    debit_account: LedgerAccount,
    credit_account: LedgerAccount,
    amount: Decimal,
    reason: str,
) -> BreakProposal:
    """Propose an adjusting journal (debit → credit) or a write-off; nothing moves yet."""
    if action not in ProposalAction.values:
        raise ValidationFailed(f"unknown action {action!r}")
    if actor_user(actor) is None:
        raise ValidationFailed("a proposal is made by a person (four-eyes needs two)")
    permission_require(actor, "reconciliation.work_break", "proposing an adjustment or write-off")
    if debit_account.asset_id != credit_account.asset_id:
        raise ValidationFailed("both accounts must hold the same asset")
    if amount <= 0:
        raise ValidationFailed("the amount must be positive")
    with transaction.atomic():
        brk = _locked(brk)
        reason = _reason(reason)
        if brk.proposals.filter(approved__isnull=True).exists():
            raise IllegalTransition(f"break {brk.pk} already has a proposal waiting for approval")
        proposal = BreakProposal(
            brk=brk,
            action=action,
            debit_account=debit_account,
            credit_account=credit_account,
            amount=amount,
            reason=reason,
            proposed_by=actor_user(actor),
        )
        stamp_history(proposal, actor=actor, reason=reason)
        proposal.save()
        _apply(
            brk,
            brk.mark_proposed,
            actor=actor,
            reason=f"proposed {action} of {amount}: {reason}",
            metadata={"proposal": proposal.pk},
        )
        return proposal


def proposal_decide(*, proposal: BreakProposal, actor: Actor, approve: bool, reason: str) -> BreakProposal:
    """A second person approves (the journal is posted, the break resolved or written off) or
    rejects (the break goes back to investigating). The proposer cannot decide."""
    reason = _reason(reason)
    user = permission_require(actor, APPROVE_PERMISSION, "approving an adjustment or write-off")
    with transaction.atomic():
        proposal = lock_proposal(proposal.pk).get()
        if proposal.approved is not None:
            raise IllegalTransition(f"proposal {proposal.pk} was already decided")
        if user is None or user.pk == proposal.proposed_by_id:
            raise ValidationFailed("four-eyes: a proposal is approved or rejected by someone other than its proposer")
        approver_require(actor, proposed_by_id=proposal.proposed_by_id, what="approving an adjustment or write-off")
        brk = _locked(proposal.brk)
        proposal.decided_by = user
        proposal.decided_at = timezone.now()
        proposal.approved = approve
        proposal.decision_reason = reason
        if approve:
            proposal.journal = ledger_adjust(
                debit=proposal.debit_account,
                credit=proposal.credit_account,
                amount=proposal.amount,
                reference=f"recon:proposal:{proposal.pk}",
                actor=actor,
                memo=f"reconciliation break {brk.pk}: {proposal.reason} (approved: {reason})",
            )
        stamp_history(proposal, actor=actor, reason=reason)
        proposal.save()
        if not approve:
            _apply(brk, brk.mark_proposal_rejected, actor=actor, reason=f"proposal rejected: {reason}")
        elif proposal.action == ProposalAction.WRITE_OFF:
            brk.resolution = f"written off: {proposal.reason} (approved: {reason})"
            _apply(brk, brk.mark_written_off, actor=actor, reason=brk.resolution, metadata={"proposal": proposal.pk})
        else:
            brk.resolution = f"adjusted: {proposal.reason} (approved: {reason})"
            _apply(brk, brk.mark_resolved, actor=actor, reason=brk.resolution, metadata={"proposal": proposal.pk})
        return proposal
