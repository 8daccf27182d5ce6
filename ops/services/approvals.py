"""Four-eyes requests: propose, then a different approver approves (it is applied in the same
transaction) or rejects. See ``ops.models.approvals``."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from common.actors import Actor, actor_user, stamp_history
from common.exceptions import DomainError, IllegalTransition, NotPermitted, ValidationFailed
from ledger.services.audit import transition_run
from ops.locking import lock_approval_request
from ops.models import ApprovalKind, ApprovalRequest
from settlement.models import SettlementHalt, Trade

APPROVE_PERMISSION = "ops.approve_approvalrequest"


def permission_require(actor: Actor, permission: str, what: str) -> Any:
    """The person behind ``actor``, who must hold ``permission`` (services check it too, so the
    admin and the API cannot drift apart)."""
    user = actor_user(actor)
    if user is None or not user.is_active or not user.has_perm(permission):
        raise NotPermitted(f"{what} needs the permission {permission}")
    return user


def approver_require(actor: Actor, *, proposed_by_id: int | None, what: str) -> Any:
    """The person deciding a four-eyes request: holds the approver permission, is not the
    proposer, is no administrator (no superuser, no permission to manage users, groups or
    permissions: else they could make themselves a second account), and the proposer neither
    created nor changed their account (the admin's log of user changes)."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType

    from ops.roles import user_management

    user = permission_require(actor, APPROVE_PERMISSION, what)
    if user.pk == proposed_by_id:
        raise NotPermitted("four-eyes: the proposer cannot approve or reject their own request")
    if user.is_superuser or any(user_management(perm) for perm in user.get_all_permissions()):
        raise NotPermitted("four-eyes: an administrator (who manages users) does not approve")
    users = ContentType.objects.get_for_model(get_user_model())
    if LogEntry.objects.filter(user_id=proposed_by_id, content_type=users, object_id=str(user.pk)).exists():
        raise NotPermitted("four-eyes: the proposer created or changed the approver's account")
    return user


def _target(kind: str, target_id: int, payload: dict[str, Any]) -> str:
    """Check the target exists and the request makes sense now; returns its label."""
    from ops.services.changes import CHANGE_KINDS, change_target

    if kind in CHANGE_KINDS:
        return change_target(kind, target_id, payload)
    if kind == ApprovalKind.REVERSAL:
        trade = Trade.objects.filter(pk=target_id).first()
        if trade is None:
            raise ValidationFailed(f"no trade {target_id}")
        if set(trade.instructions.values_list("status", flat=True)) != {"settled"}:
            raise IllegalTransition(f"trade {trade.external_id} is not settled: only a settled trade is reversed")
        return f"trade {trade.external_id}"
    if kind == ApprovalKind.HALT_LIFT:
        halt = SettlementHalt.objects.filter(pk=target_id).select_related("asset").first()
        if halt is None:
            raise ValidationFailed(f"no halt {target_id}")
        if halt.lifted_at is not None:
            raise IllegalTransition(f"halt {halt.pk} was already lifted")
        return f"halt {halt.pk} of {halt.asset.code}"
    if kind == ApprovalKind.METHOD_OVERRIDE:
        from netting.models import NettedInstruction, RailMethod

        ni = NettedInstruction.objects.filter(pk=target_id).select_related("participant", "asset").first()
        if ni is None:
            raise ValidationFailed(f"no netted instruction {target_id}")
        if ni.status != "review":
            raise IllegalTransition(f"netted instruction {ni.pk} is {ni.status}: a method is overridden in review")
        method = payload.get("method")
        if method not in RailMethod.values or method == RailMethod.LEDGER:
            raise ValidationFailed(f"method must be one of the rails, not {method!r}", detail={"method": method})
        return f"{ni} by {method}"
    if kind == ApprovalKind.NETTED_RELEASE:
        from netting.models import NettedInstruction

        ni = NettedInstruction.objects.filter(pk=target_id).first()
        if ni is None:
            raise ValidationFailed(f"no netted instruction {target_id}")
        if ni.status != "held":
            raise IllegalTransition(f"netted instruction {ni.pk} is {ni.status}: only a held payment is released")
        return f"release of {ni}"
    raise ValidationFailed(f"unknown request kind {kind!r}")


def approval_propose(
    *, kind: str, target_id: int, actor: Actor, reason: str, payload: dict[str, Any] | None = None
) -> ApprovalRequest:
    user = permission_require(actor, "ops.add_approvalrequest", "proposing a four-eyes request")
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("a proposal needs a reason")
    payload = payload or {}
    with transaction.atomic():
        label = _target(kind, target_id, payload)
        if ApprovalRequest.objects.filter(kind=kind, target_id=target_id, status="pending").exists():
            raise IllegalTransition(f"{label} already has a request waiting for approval")
        request = ApprovalRequest(
            kind=kind, target_id=target_id, target_label=label, payload=payload, reason=reason, proposed_by=user
        )
        stamp_history(request, actor=actor, reason=reason)
        request.save()
        from ledger.services.audit import LogEntry, transition_log_append

        transition_log_append(
            entries=[LogEntry("approval", request.pk, "", "pending", reason, {"kind": kind, "target": target_id})],
            actor=actor,
        )
        from ops.services.alerts import ops_alert

        ops_alert(
            title=f"Approval needed: {request.get_kind_display().lower()} of {label}",
            body=f"Proposed by {user.get_username()}: {reason}",
            link=f"/admin/ops/approvalrequest/{request.pk}/change/",
            level="warning",
            roles=("approver",),
        )
        return request


def _apply(request: ApprovalRequest, actor: Actor) -> str:
    from ops.services.changes import CHANGE_KINDS, change_apply

    reason = f"{request.reason} (approved: {request.decision_reason})"
    if request.kind in CHANGE_KINDS:
        return change_apply(request, actor=actor, reason=reason)
    if request.kind == ApprovalKind.REVERSAL:
        from settlement.services.instructions import trade_reverse

        legs = trade_reverse(trade=Trade.objects.get(pk=request.target_id), actor=actor, reason=reason)
        return f"reversed {len(legs)} legs"
    if request.kind == ApprovalKind.HALT_LIFT:
        from settlement.services.halts import halt_lift

        halt_lift(halt=SettlementHalt.objects.get(pk=request.target_id), actor=actor, reason=reason)
        return "halt lifted"
    from netting.models import NettedInstruction
    from netting.pipeline import netted_release, netted_retry

    ni = NettedInstruction.objects.get(pk=request.target_id)
    if request.kind == ApprovalKind.NETTED_RELEASE:
        netted_release(ni=ni, actor=actor, reason=reason, approval=request)
        return "released"
    netted_retry(ni=ni, actor=actor, reason=reason, method=request.payload["method"])
    return f"retried by {request.payload['method']}"


def approval_decide(*, request: ApprovalRequest, actor: Actor, approve: bool, reason: str) -> ApprovalRequest:
    """A different person with the approver role approves (the operation is applied now, in
    this transaction; if it can no longer be applied the request ends failed with the reason)
    or rejects. See ``approver_require`` for who may decide."""
    permission_require(actor, APPROVE_PERMISSION, "approving a four-eyes request")
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("a decision needs a reason")
    with transaction.atomic():
        request = lock_approval_request(request.pk).get()
        if request.status != "pending":
            raise IllegalTransition(f"request {request.pk} was already decided ({request.status})")
        user = approver_require(actor, proposed_by_id=request.proposed_by_id, what="approving a four-eyes request")
        request.decided_by, request.decided_at, request.decision_reason = user, timezone.now(), reason
        if not approve:
            transition_run(request, request.reject, entity="approval", actor=actor, reason=reason)
            return request
        try:
            with transaction.atomic():
                request.outcome = _apply(request, actor)
        except DomainError as exc:
            request.outcome = f"could not be applied: {exc.message}"
            transition_run(request, request.fail, entity="approval", actor=actor, reason=request.outcome)
            return request
        transition_run(request, request.approve, entity="approval", actor=actor, reason=reason)
        return request
