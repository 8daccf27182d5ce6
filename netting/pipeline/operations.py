"""Operations on netted payments: release one held over its net debit cap (four-eyes), retry one
out of review, and the beat sweeper that re-dispatches what a lost task or enqueue left behind."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.actors import Actor, actor_user
from common.exceptions import IllegalTransition, NotPermitted
from common.ports import NETTED_RELEASE, Approval, approval_pending
from netting.dispatch import REPORTS_APPLY, dispatch_netted, dispatch_netted_after_commit, enqueue
from netting.locking import lock_net_payments
from netting.models import NettedInstruction, RailReport
from netting.pipeline.base import A, N, latest_attempt, netted_apply


def netted_release(*, ni: NettedInstruction, actor: Actor, reason: str, approval: Approval) -> NettedInstruction:
    """Release a payment held over the net debit cap: only as the application of an approved
    four-eyes request (``approval``, being decided by ``actor``, in its transaction). Ops propose
    it with ``approval_propose(kind="netted_release", ...)``."""
    with transaction.atomic():
        stored = approval_pending(approval.pk)  # (kind, target_id, proposed_by_id) of the ops request
        user = actor_user(actor)
        if (
            stored is None
            or stored[:2] != (NETTED_RELEASE, ni.pk)
            or user is None
            or user.pk == stored[2]
            or approval.decided_by_id != user.pk
        ):
            raise NotPermitted(f"releasing netted instruction {ni.pk} past its cap needs an approved four-eyes request")
        ni = lock_net_payments(pk=ni.pk).get()
        netted_apply(ni, ni.mark_released, actor=actor, reason=reason)
        dispatch_netted_after_commit([ni.pk])
        return ni


def netted_retry(*, ni: NettedInstruction, actor: Actor, reason: str, method: str = "") -> NettedInstruction:
    """Ops: take a payment out of review and try again (a kept lock is reused, the method is
    chosen again - or ``method``, an override approved under four-eyes; an unanswered message
    is resent as it was)."""
    with transaction.atomic():
        ni = lock_net_payments(pk=ni.pk).get()
        latest = latest_attempt(ni)
        if method and latest is not None and latest.status in (A.SENDING, A.TIMED_OUT):
            raise IllegalTransition(
                f"netted instruction {ni.pk} has an unanswered {latest.method} message: it is resent, not rerouted"
            )
        if latest is None or latest.status == A.REJECTED:
            ni.method = method
        elif latest.status in (A.SENDING, A.TIMED_OUT):  # a fresh budget of sends for the same message
            latest.max_sends = latest.sends + settings.CLEARHOUSE_RAIL_MAX_SENDS
            latest.save(update_fields=("max_sends",))
        ni.next_attempt_at = None
        netted_apply(ni, ni.mark_retry, actor=actor, reason=reason, update_fields=("method", "next_attempt_at"))
        dispatch_netted_after_commit([ni.pk])
        return ni


def netted_sweep(*, limit: int = 2000) -> int:
    """Beat: re-dispatch pending instructions, locked ones due for a (re)send or stuck, and
    reports left unapplied (a worker died holding them)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CLEARHOUSE_STUCK_AFTER_SECONDS)
    ids = list(
        NettedInstruction.objects.filter(
            Q(status=N.PENDING)
            | Q(status=N.LOCKED, next_attempt_at__lte=now)
            | Q(status=N.LOCKED, next_attempt_at__isnull=True, updated_at__lt=stale)
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    dispatch_netted(ids)
    stale_reports = list(
        RailReport.objects.filter(applied=False, received_at__lt=stale)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    for start in range(0, len(stale_reports), 50):
        enqueue(REPORTS_APPLY, stale_reports[start : start + 50])
    return len(ids)
