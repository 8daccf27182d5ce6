"""django-fsm transitions over many rows at once: the same transition table as one row at a time
(each row's transition method decides whether the move is legal), written as one bulk UPDATE,
one bulk insert of simple-history rows and the transition-log entries appended together."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model
from django.utils import timezone
from django_fsm import TransitionNotAllowed
from simple_history.utils import get_history_manager_for_model

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
    rows_update(list(rows), names)
    history = get_history_manager_for_model(model)
    if callable(reason):  # one history write per distinct reason
        by_reason: dict[str, list[Any]] = {}
        for row, entry in zip(rows, entries, strict=True):
            by_reason.setdefault(entry.reason[:100], []).append(row)
        for text, group in by_reason.items():
            history.bulk_history_create(
                group, batch_size=BULK_SIZE, update=True, default_user=user, default_change_reason=text
            )
    else:
        history.bulk_history_create(
            list(rows), batch_size=BULK_SIZE, update=True, default_user=user, default_change_reason=reason[:100]
        )
    if log:
        transition_log_append(entries=entries, actor=actor)
    return entries


def rows_update(rows: Sequence[Model], names: Sequence[str]) -> None:
    """Write ``names`` of every row in one ``UPDATE … FROM unnest(…)`` statement per chunk: one array
    parameter per column, each value prepared by its field as ``save()`` would (Django's
    ``bulk_update`` builds a ``CASE WHEN`` per row and column instead, quadratic in the rows)."""
    if not rows:
        return
    meta = type(rows[0])._meta
    fields: list[Field[Any, Any]] = [cast("Field[Any, Any]", meta.get_field(name)) for name in names]
    table = connection.ops.quote_name(meta.db_table)
    pk = meta.pk
    if pk is None:  # never: every model has a primary key
        raise ValueError(f"{meta.label} has no primary key")
    sets = ", ".join(f"{connection.ops.quote_name(str(f.column))} = v.c{i}" for i, f in enumerate(fields))
    columns = ", ".join(
        [f"unnest(%s::{pk.db_type(connection)}[]) AS id"]
        + [f"unnest(%s::{f.db_type(connection)}[]) AS c{i}" for i, f in enumerate(fields)]
    )
    key = connection.ops.quote_name(str(pk.column))
    # identifiers come from the model's metadata, every value is a parameter
    sql = f"UPDATE {table} SET {sets} FROM (SELECT {columns}) AS v WHERE {table}.{key} = v.id"  # noqa: S608
    with connection.cursor() as cursor:
        for start in range(0, len(rows), BULK_SIZE):
            chunk = rows[start : start + BULK_SIZE]
            params: list[list[Any]] = [[row.pk for row in chunk]]
            for field in fields:
                params.append([field.get_db_prep_save(getattr(row, field.attname), connection) for row in chunk])
            cursor.execute(sql, params)
