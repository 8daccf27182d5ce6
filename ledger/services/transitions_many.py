"""django-fsm transitions over many rows at once: the same transition table as one row at a time
(each row's transition method decides whether the move is legal), written as one bulk UPDATE,
one bulk insert of simple-history rows and the transition-log entries appended together."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db.models import Model
from django.utils import timezone
from django_fsm import TransitionNotAllowed
from simple_history.utils import bulk_update_with_history

from common.actors import Actor, actor_user
from common.exceptions import IllegalTransition
from ledger.services.audit import LogEntry, transition_log_append

BULK_SIZE = 1000


def transitions_run_many(
    rows: Sequence[Model],
    method: str,
    *,
    entity: str,
    actor: Actor,
    reason: str | Callable[[Any], str],
    fields: Sequence[str] = (),
    metadata: Callable[[Any], Mapping[str, Any] | None] | None = None,
    log: bool = True,
) -> list[LogEntry]:
    """Run the transition ``method`` (its name) on every row (rows the caller holds locked), save
    ``status``, ``updated_at`` (when the model has it) and ``fields`` in one bulk UPDATE, record
    simple-history rows in bulk with the actor and reason, and append one log entry per row
    (``log=False``: returned for the caller to append). Nothing is written when any row may not
    make the move (``IllegalTransition`` names the first)."""
    if not rows:
        return []
    model = type(rows[0])
    moved: list[tuple[Any, str]] = []
    for row in rows:
        before = row.status  # type: ignore[attr-defined]
        try:
            getattr(row, method)()
        except TransitionNotAllowed as exc:
            raise IllegalTransition(
                f"{entity} {row.pk} cannot go from {before} by {method}",
                detail={entity: row.pk, "status": before, "transition": method},
            ) from exc
        moved.append((row, before))
    names = ["status", *fields]
    if any(f.name == "updated_at" for f in model._meta.fields):
        now = timezone.now()
        for row in rows:
            row.updated_at = now  # type: ignore[attr-defined]
        names.append("updated_at")
    entries = [
        LogEntry(
            entity,
            row.pk,
            before,
            row.status,
            reason(row) if callable(reason) else reason,
            (metadata(row) if metadata else None) or {},
        )
        for row, before in moved
    ]
    user = actor_user(actor)
    if callable(reason):  # one history write per distinct reason
        by_reason: dict[str, list[Any]] = {}
        for row, entry in zip(rows, entries, strict=True):
            by_reason.setdefault(entry.reason[:100], []).append(row)
        for text, group in by_reason.items():
            bulk_update_with_history(
                group, model, fields=names, batch_size=BULK_SIZE, default_user=user, default_change_reason=text
            )
    else:
        bulk_update_with_history(
            list(rows), model, fields=names, batch_size=BULK_SIZE, default_user=user, default_change_reason=reason[:100]
        )
    if log:
        transition_log_append(entries=entries, actor=actor)
    return entries
