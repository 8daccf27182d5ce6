"""Stage 1, the plan: each non-zero net obligation of a closed window becomes a netted
instruction, created set-based in the close's transaction, then dispatched in batches."""

from __future__ import annotations

from functools import partial

from django.db import connection, transaction
from django.utils import timezone

from common.actors import Actor, actor_user
from netting.dispatch import dispatch_netted, plan_start_enqueue
from netting.models import NettedInstruction, NettingWindow
from netting.pipeline.base import N, netted_apply

_PLAN_SQL = """
INSERT INTO netting_nettedinstruction
    (window_id, obligation_id, participant_id, asset_id, settlement_date, direction, amount, status, method,
     lock_id, attempts, locks_taken, next_attempt_at, failing_since, failure_reason, created_at, updated_at)
SELECT window_id, id, participant_id, asset_id, settlement_date,
       CASE WHEN net < 0 THEN 'pay_in' ELSE 'pay_out' END, ABS(net), 'pending', '',
       NULL, 0, 0, NULL, NULL, '', %(now)s, %(now)s
FROM netting_netobligation WHERE window_id = %(window)s AND net <> 0
"""


def plan_create(*, window: NettingWindow, actor: Actor) -> None:
    """The settlement plan of a window being closed (runs in ``window_close``'s transaction): one
    netted instruction per non-zero obligation, held ones held. After commit one task starts
    them (``plan_start``): the close does not enqueue a task per batch itself."""
    from settlement.services.trades import history_insert_sql

    now = timezone.now()
    user = actor_user(actor)
    params = {"window": window.pk, "now": now, "reason": "settlement plan", "user": user.pk if user else None}
    with connection.cursor() as cursor:
        cursor.execute(_PLAN_SQL, params)
        cursor.execute(history_insert_sql(NettedInstruction, "window_id = %(window)s"), params)
    for ni in NettedInstruction.objects.filter(window=window, obligation__held=True):
        netted_apply(ni, ni.mark_held, actor=actor, reason="over the participant's net debit cap: held for review")
    transaction.on_commit(partial(plan_start_enqueue, window.pk))


def plan_start(*, window_id: int) -> int:
    """Dispatch every pending instruction of a closed window's plan in batches (a worker's job,
    so closing the window stays one short transaction)."""
    ids = list(
        NettedInstruction.objects.filter(window_id=window_id, status=N.PENDING)
        .order_by("direction", "pk")
        .values_list("pk", flat=True)
    )
    dispatch_netted(ids)
    return len(ids)
