"""Stages 3 and 4, advancing and sending: a payment is moved as far as it can go now (lock,
attempt, send). An attempt's message is built and stored with its ids *before* it is sent, then
handed to the network; no answer → the same message is sent again later (the network
deduplicates by message id, so it pays once)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from time import monotonic

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from common.actors import Actor, stamp_history
from ledger.services.audit import LogEntry, transition_log_append
from netting.locking import lock_attempts, lock_net_payments
from netting.models import NettedInstruction, RailAttempt, RailMethod
from netting.pipeline.base import PLAN, A, N, attempt_apply, latest_attempt, log_flush, netted_apply
from netting.pipeline.booking import review, settle
from netting.pipeline.events import attempt_event
from netting.pipeline.lock import lock_step
from netting.pipeline.routes import Batch, participant_route
from rails.base import RailRejected, RailTransientError
from rails.fiat.routing import NoRoute


def netted_advance(*, ids: list[int], actor: Actor = PLAN) -> dict[str, int]:
    """Move each instruction as far as it can go now (lock, attempt, send). Safe to run twice:
    each step re-reads the row under its lock, and a resend carries the same message id. What
    the batch needs from other tables (accounts on file, fee rules, the CSA) is read once."""
    outcome, _ = netted_advance_until(ids=ids, actor=actor)
    return outcome


def netted_advance_until(
    *, ids: list[int], deadline: float | None = None, actor: Actor = PLAN
) -> tuple[dict[str, int], list[int]]:
    """``netted_advance``, starting no instruction after ``deadline`` (``time.monotonic()``; the
    first is always started): (the outcome, the instructions left for the caller to hand on)."""
    outcome: Counter[str] = Counter()
    batch = Batch.load(ids)
    for index, pk in enumerate(ids):
        if deadline is not None and index and monotonic() > deadline:
            return dict(outcome), list(ids[index:])
        outcome[_advance_one(pk, actor=actor, batch=batch)] += 1
    return dict(outcome), []


def _locked_row(pk: int) -> NettedInstruction | None:
    return lock_net_payments(of_self=True, skip_locked=True, related=("asset", "participant", "lock"), pk=pk).first()


def _advance_one(pk: int, *, actor: Actor, batch: Batch | None = None) -> str:
    # One transaction locks the funds and creates the message (its log entries appended last,
    # after the ledger work: accounts before the log head). A book transfer's lock step commits
    # on its own: its settlement moves ledger accounts again, which must never be locked after
    # the log head in one transaction.
    with transaction.atomic():
        ni = _locked_row(pk)
        if ni is None:
            return "busy"
        if ni.status not in (N.PENDING, N.LOCKED):
            return str(ni.status)
        entries: list[LogEntry] = []
        if ni.status == N.PENDING:
            step = lock_step(ni, actor=actor, batch=batch, log_entries=entries)
            if step != "locked":
                return step
        if ni.method == RailMethod.LEDGER:
            log_flush(entries, actor=actor)
            todo: RailAttempt | str = "ledger"
        else:
            todo = _advance_locked(ni, actor=actor, batch=batch, log_first=entries)
        log_flush(entries, actor=actor)  # whatever the outcome, the lock's entry goes in with it
    if todo == "ledger":
        with transaction.atomic():
            ni = _locked_row(pk)
            if ni is None:
                return "busy"
            if ni.status != N.LOCKED:
                return str(ni.status)
            todo = _advance_locked(ni, actor=actor, batch=batch)
    if isinstance(todo, str):
        return todo
    return _send(todo, actor=actor)


def _advance_locked(
    ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None, log_first: list[LogEntry] | None = None
) -> RailAttempt | str:
    """What to do with a locked instruction: an attempt to send (its send already counted), or
    an outcome. ``log_first``: entries of this transaction still to append, before any other."""
    log_first = log_first if log_first is not None else []
    if ni.method == RailMethod.LEDGER:
        if log_first:  # pragma: no cover - the caller commits the lock step of a book transfer first
            raise RuntimeError("a book transfer settles in a transaction of its own")
        settle(ni, actor=actor, reason="book transfer on the internal ledger")
        return "settled"
    if ni.next_attempt_at is not None and ni.next_attempt_at > timezone.now():
        return "waiting"
    attempt = latest_attempt(ni)
    if attempt is None or attempt.status == A.REJECTED:
        try:
            attempt = _attempt_create(ni, actor=actor, batch=batch)
        except NoRoute as exc:
            review(ni, actor=actor, reason=str(exc), release_funds=True, log_first=log_first)
            return "review"
    elif attempt.status in (A.ACCEPTED, A.FAILING):
        log_flush(log_first, actor=actor)
        netted_apply(ni, ni.mark_submitted, actor=actor, reason="accepted by the network")
        return "submitted"
    elif attempt.sends >= (attempt.max_sends or settings.CLEARHOUSE_RAIL_MAX_SENDS):
        review(
            ni,
            actor=actor,
            reason=f"no answer from the network after {attempt.sends} sends of {attempt.message_id}",
            release_funds=False,
            log_first=log_first,
        )
        return "review"
    else:  # a resend: counted before the call, in this transaction
        RailAttempt.objects.filter(pk=attempt.pk).update(sends=F("sends") + 1)
        attempt.sends += 1
    log_flush(log_first, actor=actor)
    return attempt


def _attempt_create(ni: NettedInstruction, *, actor: Actor, batch: Batch | None = None) -> RailAttempt:
    """A new attempt with its message, its first send counted (the row says SENDING before the
    call: a crash after it is resent by the sweeper)."""
    from netting.messages import build_message

    route = participant_route(ni, batch)
    number = ni.attempts + 1
    message_id = f"CH{ni.pk}A{number}"
    end_to_end_id = f"N{ni.pk}-{number}"
    message = build_message(ni=ni, route=route, message_id=message_id, end_to_end_id=end_to_end_id)
    attempt = RailAttempt(
        instruction=ni,
        number=number,
        method=route.method,
        message_type=message.message_type,
        message_id=message_id,
        end_to_end_id=end_to_end_id,
        payload=message.payload,
        sends=1,
    )
    stamp_history(attempt, actor=actor, reason=f"{route.method} attempt {number}")
    attempt.save()
    ni.attempts = number
    ni.save(update_fields=("attempts", "updated_at"))
    return attempt


def _network_of(method: str) -> str:
    return "custodian" if method == RailMethod.CUSTODY else "bank"


def _backoff(sends: int) -> timedelta:
    window = min(300.0, 2.0 * (2**sends))
    return timedelta(seconds=random.uniform(window / 10, window))  # noqa: S311 - jitter


def attempt_send(*, attempt_id: int, actor: Actor = PLAN) -> str:
    """Send (or resend) an attempt's stored message. The row says SENDING before the call, so a
    crash after it is resent by the sweeper; the network keeps one payment per message id."""
    attempt = RailAttempt.objects.get(pk=attempt_id)
    RailAttempt.objects.filter(pk=attempt_id).update(sends=F("sends") + 1)
    return _send(attempt, actor=actor)


def _send(attempt: RailAttempt, *, actor: Actor) -> str:
    """Hand an attempt's message to its network (the send already counted) and apply the answer."""
    from netting.messages import CONTENT_TYPES
    from rails.networks import network_client

    attempt_id = attempt.pk
    client = network_client(_network_of(attempt.method))
    try:
        client.submit(
            message_id=attempt.message_id,
            payload=attempt.payload,
            content_type=CONTENT_TYPES.get(attempt.message_type, "application/xml"),
        )
    except RailTransientError as exc:
        return _attempt_no_answer(attempt_id, error=str(exc), actor=actor)
    except RailRejected as exc:
        code, _, text = str(exc).partition(": ")
        return attempt_event(attempt_id=attempt_id, event="rejected", code=code, text=text, actor=actor)
    return attempt_event(attempt_id=attempt_id, event="accepted", actor=actor, seen=A.SENDING)


def _attempt_no_answer(attempt_id: int, *, error: str, actor: Actor) -> str:
    with transaction.atomic():
        ni = lock_net_payments(rail_attempts__pk=attempt_id).get()
        attempt = lock_attempts(pk=attempt_id).get()
        if attempt.status not in (A.SENDING, A.TIMED_OUT):
            return str(attempt.status)  # answered meanwhile (a report came first)
        entry = attempt_apply(attempt, attempt.mark_timed_out, actor=actor, reason=f"no answer: {error}")
        transition_log_append(entries=[entry], actor=actor)
        ni.next_attempt_at = timezone.now() + _backoff(attempt.sends)
        ni.save(update_fields=("next_attempt_at", "updated_at"))
        return "timeout"
