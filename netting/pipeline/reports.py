"""Stage 4b, the networks' reports: status reports, booking notifications and custody
confirmations, fetched and stored raw (``netting.reports``), then applied: their confirmations
settle as one batch (``booking.attempts_settle``), every other event on its own
(``events.attempt_event``)."""

from __future__ import annotations

import logging
from collections import Counter
from time import monotonic

from common.actors import Actor
from netting.dispatch import REPORTS_APPLY, enqueue
from netting.models import Direction, RailAttempt, RailReport
from netting.pipeline.base import PLAN
from netting.pipeline.booking import attempts_settle
from netting.pipeline.events import attempt_event, event_repeats

logger = logging.getLogger(__name__)

# Reports applied per confirmation batch when a task has a time budget (``reports_apply_until``).
REPORTS_STEP = 10


def rail_reports_fetch(*, network: str, actor: Actor = PLAN, dispatch: bool = False) -> dict[str, int]:
    """Fetch the network's new reports, store them raw (once per natural key: epoch and sequence
    number, ``netting.reports``) and apply the ones not applied yet: here, in order, or
    (``dispatch``) spread over the workers in chunks - applying is idempotent and order-tolerant
    (a settlement seen before its acceptance settles, the acceptance is then a duplicate), so
    chunks may run in parallel."""
    from netting.reports import reports_receive

    before = reports_receive(network=network)
    unapplied = RailReport.objects.filter(network=network, applied=False)
    if dispatch:  # only the new ones: ones a lost task left behind are the sweeper's (netted_sweep)
        unapplied = unapplied.filter(pk__gt=before)
    pending = list(unapplied.order_by("pk").values_list("pk", flat=True))
    if dispatch:
        for start in range(0, len(pending), 50):
            try:
                enqueue(REPORTS_APPLY, pending[start : start + 50])
            except Exception:  # broker down: the next fetch finds them unapplied
                logger.exception("could not enqueue report application")
        return {"dispatched": len(pending)}
    outcome: Counter[str] = Counter()
    for start in range(0, len(pending), 200):
        outcome.update(reports_apply(report_ids=pending[start : start + 200], actor=actor))
    return dict(outcome)


def reports_apply_until(
    *, report_ids: list[int], deadline: float, actor: Actor = PLAN
) -> tuple[dict[str, int], list[int]]:
    """``reports_apply`` in steps of ``REPORTS_STEP`` reports, starting no step after
    ``deadline`` (``time.monotonic()``; the first step always runs): (the outcome, the reports
    left for the caller to hand on)."""
    outcome: Counter[str] = Counter()
    for start in range(0, len(report_ids), REPORTS_STEP):
        if start and monotonic() > deadline:
            return dict(outcome), list(report_ids[start:])
        outcome.update(reports_apply(report_ids=report_ids[start : start + REPORTS_STEP], actor=actor))
    return dict(outcome), []


def reports_apply(*, report_ids: list[int], actor: Actor = PLAN) -> dict[str, int]:
    """Apply many stored reports: their confirmations settle in one batch transaction
    (``attempts_settle``), every other event on its own (``attempt_event``). Idempotent."""
    from netting.messages import report_events

    reports = list(RailReport.objects.filter(pk__in=report_ids, applied=False).order_by("pk"))
    events = {report.pk: report_events(kind=report.kind, content=report.content) for report in reports}
    wanted = {event.end_to_end_id for items in events.values() for event in items}
    seen: dict[int, str] = {}
    attempt_of: dict[str, int] = {}
    for end_to_end_id, pk, status in RailAttempt.objects.filter(end_to_end_id__in=wanted).values_list(
        "end_to_end_id", "pk", "status"
    ):
        attempt_of[end_to_end_id], seen[pk] = pk, status
    to_settle = sorted(
        {
            attempt_of[event.end_to_end_id]
            for items in events.values()
            for event in items
            if event.event == "settled" and event.end_to_end_id in attempt_of
        }
    )
    expected = {
        pk: (amount, direction)
        for pk, amount, direction in RailAttempt.objects.filter(pk__in=to_settle).values_list(
            "pk", "instruction__amount", "instruction__direction"
        )
    }
    mismatched: dict[int, str] = {}
    for items in events.values():
        for event in items:
            attempt_id = attempt_of.get(event.end_to_end_id)
            if event.event != "settled" or attempt_id is None or attempt_id not in expected:
                continue
            amount, direction = expected[attempt_id]
            side = "CRDT" if direction == Direction.PAY_IN else "DBIT"  # on the house's account
            if event.amount is not None and event.amount != amount:
                mismatched[attempt_id] = f"for {event.amount} but the instruction is for {amount}"
            elif event.side and event.side != side:
                mismatched[attempt_id] = f"as a {event.side} on the house account, expected {side}"
    settled = attempts_settle(attempt_ids=to_settle, actor=actor, mismatched=mismatched)
    outcome: Counter[str] = Counter()
    done: list[RailReport] = []
    for report in reports:
        notes, failed = [], False
        for event in events[report.pk]:
            attempt_id = attempt_of.get(event.end_to_end_id)
            if attempt_id is None:
                result = "not ours"
            elif event.event == "settled":
                result = settled.pop(attempt_id, "duplicate")  # a second confirmation in the batch
            elif event_repeats(event.event, seen[attempt_id]):  # read before this batch: still a repeat
                result = "duplicate"
            else:
                try:
                    result = attempt_event(
                        attempt_id=attempt_id,
                        event=event.event,
                        code=event.code,
                        text=event.text,
                        on=event.on,
                        actor=actor,
                    )
                except Exception:  # one bad event must not hold up the rest; this report stays unapplied
                    logger.exception("report %s: applying %s failed", report.pk, event)
                    result, failed = "error", True
            outcome[result] += 1
            notes.append(f"{event.end_to_end_id or '?'}: {result}")
        if not failed:
            report.applied, report.outcome = True, "; ".join(notes)[:255]
            done.append(report)
    RailReport.objects.bulk_update(done, ["applied", "outcome"], batch_size=500)  # one statement per 500
    return dict(outcome)
