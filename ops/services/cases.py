"""Review cases and notifications: how the pipelines tell participants and operations, and how
operations take work over. The crypto pipeline, netting and reconciliation reach these through
``common.ports`` (registered in ``OpsConfig.ready``); halts are settlement's
(``settlement.services.halts``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.actors import Actor, SystemActor, actor_label, stamp_history
from common.choices import CaseKind, CaseStatus
from common.exceptions import IllegalTransition, ValidationFailed
from ledger.services.audit import LogEntry, transition_log_append, transition_run
from ops.locking import lock_case
from ops.models import Notification, ReviewCase
from ops.models.cases import Audience, DeliveryStatus
from reference.models import Asset
from settlement.locking import lock_instructions
from settlement.models import SettlementInstruction
from settlement.services.halts import PIPELINE

logger = logging.getLogger(__name__)


# --- notifications, cases, halts ---------------------------------------------------------------


def notify(
    *,
    event: str,
    instruction: SettlementInstruction | None,
    message: str,
    dedupe_key: str,
    participant_ids: Iterable[int] = (),
    ops: bool = False,
    payload: dict | None = None,
) -> list[Notification]:
    """Store notifications (idempotent by ``dedupe_key``). Participants with a webhook URL get it
    POSTed after commit; undelivered ones are retried by the sweeper."""
    from reference.models import Participant

    hooks = dict(Participant.objects.filter(pk__in=list(participant_ids)).values_list("pk", "webhook_url"))
    rows = [
        Notification(
            audience=Audience.PARTICIPANT,
            participant_id=pid,
            event=event,
            instruction=instruction,
            message=message,
            payload=payload or {},
            dedupe_key=f"{dedupe_key}:p{pid}",
            delivery_status=DeliveryStatus.PENDING if hooks.get(pid) else DeliveryStatus.NONE,
        )
        for pid in participant_ids
    ]
    if ops:
        rows.append(
            Notification(
                audience=Audience.OPS,
                event=event,
                instruction=instruction,
                message=message,
                payload=payload or {},
                dedupe_key=f"{dedupe_key}:ops",
            )
        )
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    keys = [row.dedupe_key for row in rows if row.delivery_status == DeliveryStatus.PENDING]
    if keys:
        from ops.tasks import dispatch_webhooks

        transaction.on_commit(lambda: dispatch_webhooks(dedupe_keys=keys))
    return rows


def case_open(
    *,
    kind: str,
    reason: str,
    dedupe_key: str,
    instruction: SettlementInstruction | None = None,
    asset: Asset | None = None,
) -> ReviewCase:
    """Open a manual-review case (once per ``dedupe_key``) and tell operations. Its own atomic
    block: callers outside a transaction (a pipeline step that just caught a rail error) get the
    case, its notification and its log entry together or not at all."""
    with transaction.atomic():
        case, created = ReviewCase.objects.get_or_create(
            dedupe_key=dedupe_key[:200],
            defaults={"kind": kind, "reason": reason, "instruction": instruction, "asset": asset},
        )
        if created:
            from ops.services.alerts import ops_alert

            notify(
                event=f"case_{kind}", instruction=instruction, message=reason, dedupe_key=f"case:{case.pk}", ops=True
            )
            ops_alert(
                title=f"Review case #{case.pk} ({kind})",
                body=reason,
                link=f"/admin/ops/reviewcase/{case.pk}/change/",
                level="warning",
                roles=("operator",),
                dedupe_key=f"case:{case.pk}",
            )
            transition_log_append(
                entries=[LogEntry("reviewcase", case.pk, "", "open", reason, {"kind": kind})], actor=PIPELINE
            )
            logger.warning("review case %s opened (%s): %s", case.pk, kind, reason)
    return case


def escalate(instruction: SettlementInstruction, *, reason: str) -> ReviewCase:
    """Put an instruction in the manual-review queue: one open case per problem, however often it
    is seen. Once operations resolved it, the same problem seen again opens a new case (the
    sweepers leave work with an open case alone, so without one it would loop unseen)."""
    key = f"escalate:{instruction.pk}:a{instruction.attempt}:{reason[:80]}"
    handled = ReviewCase.objects.filter(
        Q(dedupe_key=key) | Q(dedupe_key__startswith=f"{key}:r"), status=CaseStatus.RESOLVED
    ).count()
    return case_open(
        kind=CaseKind.ESCALATION,
        reason=reason,
        instruction=instruction,
        dedupe_key=f"{key}:r{handled}" if handled else key,
    )


def case_resolve(*, case: ReviewCase, actor: Actor, resolution: str) -> ReviewCase:
    if not resolution.strip():
        raise ValidationFailed("resolving a case needs a resolution note")
    with transaction.atomic():
        case = lock_case(case.pk).get()
        if case.status != CaseStatus.OPEN:
            raise IllegalTransition(f"case {case.pk} is already {case.status}")
        case.resolved_at = timezone.now()
        case.resolved_by = None if isinstance(actor, SystemActor) else actor
        case.resolution = resolution
        transition_run(case, case.mark_resolved, entity="reviewcase", actor=actor, reason=resolution)
        return case


def instruction_escalate(*, instruction: SettlementInstruction, actor: Actor, reason: str) -> ReviewCase:
    """Ops: put an instruction in the manual-review queue (an escalation case), whatever its
    status; one open escalation per instruction."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("escalating needs a reason")
    with transaction.atomic():
        instruction = lock_instructions(pk=instruction.pk).get()
        cases = ReviewCase.objects.filter(instruction=instruction, kind=CaseKind.ESCALATION)
        open_case = cases.filter(status=CaseStatus.OPEN).first()
        if open_case is not None:
            raise IllegalTransition(f"instruction {instruction.pk} is already escalated (case {open_case.pk})")
        status = instruction.status
        case = case_open(
            kind=CaseKind.ESCALATION,
            reason=f"escalated by {actor_label(actor)}: {reason}",
            dedupe_key=f"escalation:instruction:{instruction.pk}:{cases.count() + 1}",
            instruction=instruction,
            asset=instruction.asset,
        )
        transition_log_append(
            entries=[LogEntry("instruction", instruction.pk, status, status, reason, {"case": case.pk})],
            actor=actor,
        )
        return case


def case_assign(*, case: ReviewCase, actor: Actor, reason: str = "taken") -> ReviewCase:
    """Ops: take a case (it shows as yours in the queue)."""
    with transaction.atomic():
        case = lock_case(case.pk).get()
        if case.status != CaseStatus.OPEN:
            raise IllegalTransition(f"case {case.pk} is already {case.status}")
        case.assignee = actor if not isinstance(actor, SystemActor) else None
        stamp_history(case, actor=actor, reason=reason)
        case.save(update_fields=("assignee",))
        transition_log_append(
            entries=[LogEntry("reviewcase", case.pk, "open", "open", reason, {"assignee": actor_label(actor)})],
            actor=actor,
        )
        return case
