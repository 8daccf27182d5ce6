"""Stage 4a, one answer of a network about one attempt: accepted → submitted; settled → booked
(``booking``); rejected → the next method when the reason allows it, else manual review; failing
(a custody delivery) → on the fail report. Every event is idempotent and order-tolerant."""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.utils import timezone

from common.actors import Actor
from common.choices import LockStatus
from ledger.services.audit import transition_log_append, transition_run
from netting.dispatch import dispatch_netted_after_commit
from netting.locking import lock_attempts, lock_net_payments
from netting.models import NettedInstruction, RailAttempt
from netting.pipeline.base import PLAN, A, N, attempt_apply, netted_apply
from netting.pipeline.booking import investigate, review, settle
from netting.pipeline.routes import participant_route
from rails.fiat.routing import method_fallback


def event_repeats(event: str, seen: str | None) -> bool:
    """Whether an event is a repeat of what an attempt last seen in status ``seen`` already
    says. The statuses it looks for are final for that event (nothing goes back to sending, or
    out of settled or rejected), so a status read earlier is as good as a fresh one."""
    return (event == "accepted" and seen not in (A.SENDING, A.TIMED_OUT)) or (
        event in ("settled", "rejected") and seen in (A.SETTLED, A.REJECTED) and event[:3] == str(seen)[:3]
    )


def attempt_event(
    *,
    attempt_id: int,
    event: str,
    code: str = "",
    text: str = "",
    on: date | None = None,
    actor: Actor = PLAN,
    seen: str | None = None,
) -> str:
    """Apply what the network said about an attempt. Every branch is idempotent: the same
    report applied twice (duplicate delivery) changes nothing the second time. ``seen``: the
    attempt's status as the caller read it (else read here)."""
    # Most repeats (the acceptance after the submit call already said so, the status report after
    # the booking settled it) are recognised without taking a lock; the locked re-check decides.
    if seen is None:
        seen = RailAttempt.objects.filter(pk=attempt_id).values_list("status", flat=True).first()
    if event_repeats(event, seen):
        return "duplicate"
    with transaction.atomic():
        ni = lock_net_payments(
            of_self=True, related=("asset", "participant", "lock"), rail_attempts__pk=attempt_id
        ).get()
        attempt = lock_attempts(pk=attempt_id).get()
        if event == "accepted":
            return _on_accepted(ni, attempt, actor=actor)
        if event == "settled":
            return _on_settled(ni, attempt, actor=actor)
        if event == "rejected":
            return _on_rejected(ni, attempt, code=code, text=text, actor=actor)
        if event == "failing":
            return _on_failing(ni, attempt, code=code, text=text, on=on, actor=actor)
        raise ValueError(f"unknown rail event {event!r}")


def _on_accepted(ni: NettedInstruction, attempt: RailAttempt, *, actor: Actor) -> str:
    if attempt.status not in (A.SENDING, A.TIMED_OUT):
        return "duplicate"
    attempt.accepted_at = timezone.now()
    entries = [
        attempt_apply(attempt, attempt.mark_accepted, actor=actor, reason="accepted", update_fields=("accepted_at",))
    ]
    if ni.status == N.LOCKED and ni.attempts == attempt.number:
        ni.next_attempt_at = None
        reason = f"{attempt.method} message {attempt.message_id} accepted"
        entries.append(
            transition_run(
                ni,
                ni.mark_submitted,
                entity="nettedinstruction",
                actor=actor,
                reason=reason,
                update_fields=("status", "updated_at"),
                log=False,
            )
        )
    transition_log_append(entries=entries, actor=actor)  # one head lock for both
    return "submitted"


def _on_settled(ni: NettedInstruction, attempt: RailAttempt, *, actor: Actor) -> str:
    if attempt.status == A.SETTLED:
        return "duplicate"
    if (
        attempt.status == A.REJECTED
        or ni.attempts != attempt.number
        or ni.status == N.SETTLED
        or ni.lock is None
        or ni.lock.status != LockStatus.PENDING
    ):
        return investigate(attempt, ni, f"but {ni} is {ni.status} / attempt {attempt.status}")
    attempt.resolved_at = timezone.now()
    entry = attempt_apply(attempt, attempt.mark_settled, actor=actor, reason="settled", update_fields=("resolved_at",))
    ni.next_attempt_at = None
    ni.failing_since = None
    ni.save(update_fields=("failing_since",))
    settle(
        ni,
        actor=actor,
        reason=f"settled by {attempt.method} ({attempt.message_id})",
        metadata={"message": attempt.message_id},
        log_first=[entry],
    )
    return "settled"


def _on_rejected(ni: NettedInstruction, attempt: RailAttempt, *, code: str, text: str, actor: Actor) -> str:
    if attempt.status in (A.REJECTED, A.SETTLED):
        return "duplicate"
    attempt.reason_code = code[:8]
    attempt.reason_text = text[:255]
    attempt.resolved_at = timezone.now()
    entry = attempt_apply(
        attempt,
        attempt.mark_rejected,
        actor=actor,
        reason=f"rejected {code} {text}".strip(),
        update_fields=("reason_code", "reason_text", "resolved_at"),
    )
    if ni.attempts != attempt.number or ni.status == N.SETTLED:
        transition_log_append(entries=[entry], actor=actor)
        return "rejected"
    refusal = f"rejected by {attempt.method}: {code} {text}".strip()
    if ni.status == N.REVIEW:  # in review after timeouts: now the network has said no for good
        review(ni, actor=actor, reason=refusal, release_funds=True, log_first=[entry])
        return "review"
    route = participant_route(ni)
    fallback = method_fallback(method=attempt.method, reason_code=code, attempts=ni.attempts, account=route.participant)
    if fallback is None:
        review(ni, actor=actor, reason=refusal, release_funds=True, log_first=[entry])
        return "review"
    transition_log_append(entries=[entry], actor=actor)
    ni.method = fallback
    ni.next_attempt_at = None
    reason = f"{attempt.method} rejected {code}; rerouted to {fallback}"
    if ni.status == N.SUBMITTED:  # (locked or pending: the next advance sends by the new method)
        netted_apply(ni, ni.mark_rerouted, actor=actor, reason=reason, update_fields=("method", "next_attempt_at"))
    else:
        ni.save(update_fields=("method", "next_attempt_at", "updated_at"))
    dispatch_netted_after_commit([ni.pk])
    return "rerouted"


def _on_failing(
    ni: NettedInstruction, attempt: RailAttempt, *, code: str, text: str, on: date | None, actor: Actor
) -> str:
    if attempt.status in (A.SETTLED, A.REJECTED):
        return "duplicate"
    if attempt.status != A.FAILING:
        attempt.reason_code = code[:8]
        attempt.reason_text = text[:255]
        entry = attempt_apply(
            attempt,
            attempt.mark_failing,
            actor=actor,
            reason=f"failing {code} {text}".strip(),
            update_fields=("reason_code", "reason_text"),
        )
        transition_log_append(entries=[entry], actor=actor)
    if ni.failing_since is None:
        ni.failing_since = on or timezone.localdate()
        ni.failure_reason = f"delivery failing: {code} {text}".strip()
        ni.save(update_fields=("failing_since", "failure_reason", "updated_at"))
    if ni.status == N.LOCKED:
        netted_apply(ni, ni.mark_submitted, actor=actor, reason="accepted by the custodian (failing)")
    return "failing"
