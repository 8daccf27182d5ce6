"""What every stage of the netted payment pipeline shares: its actor, the central settlement
account, the transitions of a payment and of an attempt (history and transition log), the
latest attempt of a payment."""

from __future__ import annotations

from collections.abc import Callable

from common.actors import Actor, SystemActor
from ledger.models import LedgerAccount
from ledger.services.audit import LogEntry, transition_log_append, transition_run
from ledger.services.ledger import system_account_for
from netting.models import AttemptStatus, NettedInstruction, NettedStatus, RailAttempt

PLAN = SystemActor("settlement-plan")
CSA = "central-settlement"
N = NettedStatus
A = AttemptStatus


def netted_apply(
    ni: NettedInstruction,
    method: Callable[[], None],
    *,
    actor: Actor,
    reason: str,
    metadata: dict | None = None,
    update_fields: tuple[str, ...] = (),
) -> None:
    """Run a payment's transition, save it, log it."""
    transition_run(
        ni,
        method,
        entity="nettedinstruction",
        actor=actor,
        reason=reason,
        metadata=metadata,
        update_fields=("status", "updated_at", *update_fields),
    )


def attempt_apply(
    attempt: RailAttempt, method: Callable[[], None], *, actor: Actor, reason: str, update_fields: tuple[str, ...] = ()
) -> LogEntry:
    """Run an attempt's transition and save it; returns its log entry for the caller to append
    *after* any ledger work (lock order: accounts before the transition-log head)."""
    return transition_run(
        attempt,
        method,
        entity="railattempt",
        actor=actor,
        reason=reason,
        metadata={"message": attempt.message_id},
        update_fields=("status", *update_fields),
        log=False,
    )


def log_flush(entries: list[LogEntry], *, actor: Actor) -> None:
    """Append the entries still held (if any) and empty the list."""
    if entries:
        transition_log_append(entries=entries, actor=actor)
        entries.clear()


def csa_account(ni: NettedInstruction) -> LedgerAccount:
    return system_account_for(code=CSA, asset=ni.asset, allow_negative=False)


def latest_attempt(ni: NettedInstruction) -> RailAttempt | None:
    if ni.attempts == 0:  # every attempt is counted on its instruction when it is created
        return None
    return RailAttempt.objects.filter(instruction=ni).order_by("-number").first()
