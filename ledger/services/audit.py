"""Append to the transition log: one batch per transaction, its entries hashed as Merkle leaves
and the batch chained to the one before (``ledger.models.audit``); verification in
``audit_verify``, inclusion proofs in ``audit_proof``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from common.actors import Actor, actor_label, actor_user, stamp_history
from common.exceptions import IllegalTransition
from ledger.locking import lock_log_head
from ledger.merkle import merkle_root
from ledger.models import AuditBatch, TransitionLog, TransitionLogHead
from ledger.models.audit import batch_uid_new
from ledger.services.anchors import anchor_write
from ledger.services.audit_proof import transition_log_proof, transition_log_proof_check
from ledger.services.audit_verify import ChainReport, transition_log_verify

__all__ = [
    "ChainReport",
    "LogEntry",
    "transition_log_anchor",
    "transition_log_anchor_head",
    "transition_log_append",
    "transition_log_deferred",
    "transition_log_proof",
    "transition_log_proof_check",
    "transition_log_verify",
    "transition_run",
]


def _jsonable(value: Any) -> Any:
    """Metadata is stored as JSON; Decimals and dates become strings so the hash is stable."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit metadata; use Decimal or str")
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


@dataclass(frozen=True)
class LogEntry:
    entity_type: str
    entity_id: int
    from_status: str
    to_status: str
    reason: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


def transition_run(
    instance: Any,
    method: Callable[[], None],
    *,
    entity: str,
    actor: Actor,
    reason: str,
    metadata: Mapping[str, Any] | None = None,
    update_fields: Iterable[str] | None = None,
    log: bool = True,
) -> LogEntry:
    """Run one django-fsm transition on a row the caller holds locked, save it (simple-history
    records who and why) and append it to the transition log - or, with ``log=False``, return the
    entry for a caller that must append it after its ledger work (accounts before the log head).
    ``update_fields`` None saves every field."""
    from_status = instance.status
    try:
        method()
    except TransitionNotAllowed as exc:
        raise IllegalTransition(
            f"{entity} {instance.pk} cannot go from {from_status} by {method.__name__}",
            detail={entity: instance.pk, "status": from_status, "transition": method.__name__},
        ) from exc
    stamp_history(instance, actor=actor, reason=reason)
    instance.save(update_fields=None if update_fields is None else tuple(update_fields))
    entry = LogEntry(entity, instance.pk, from_status, instance.status, reason, metadata or {})
    if log:
        transition_log_append(entries=[entry], actor=actor)
    return entry


def _lock_head() -> TransitionLogHead:
    head = lock_log_head().first()
    if head is None:
        TransitionLogHead.objects.get_or_create(pk=1)
        head = lock_log_head().get()
    return head


_deferred = threading.local()


@contextmanager
def transition_log_deferred() -> Iterator[None]:
    """Collect the log entries appended inside the block and append them together when it ends
    without an exception: one batch per transaction instead of one per transition (its entries
    hashed and inserted first), and the head held only for the batch row at the end of the
    caller's work, to its commit.

    Use it inside the caller's ``transaction.atomic()`` block. Nested, it mirrors a savepoint:
    wrap an inner ``atomic()`` whose failure the caller catches, and the entries of the
    rolled-back part are dropped with it (an exception leaving any block drops its entries)."""
    stack: list[list[tuple[LogEntry, Actor]]] = _deferred.__dict__.setdefault("stack", [])
    stack.append([])
    try:
        yield
    except BaseException:
        stack.pop()
        raise
    collected = stack.pop()
    if stack:
        stack[-1].extend(collected)
    elif collected:
        _append(collected)


def transition_log_append(*, entries: Iterable[LogEntry], actor: Actor) -> list[TransitionLog]:
    """Append entries to the chain as one batch. Call it last in the caller's transaction: the
    head row stays locked until commit, so the lock is held as briefly as possible. Inside
    ``transition_log_deferred`` the entries are appended when that block ends (returns [])."""
    entries = list(entries)
    if not entries:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("transition_log_append must run inside the caller's transaction")
    stack = getattr(_deferred, "stack", None)
    if stack:
        stack[-1].extend((entry, actor) for entry in entries)
        return []
    return _append([(entry, actor) for entry in entries])


# Entries per INSERT: a 5,000-entry batch in three statements, each far below PostgreSQL's limit
# of 65,535 bind parameters (13 per entry).
_INSERT_CHUNK = 2000


def _append(items: list[tuple[LogEntry, Actor]]) -> list[TransitionLog]:
    """Append one batch: hash the entries as Merkle leaves (under a batch uid made here) and
    insert them first, then take the head for two short statements (lock it; insert the chained
    batch row and move the head), nothing after. The head is held from there to the caller's
    commit. Statements: as many inserts as chunks of entries, then the two."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("transition_log_append must run inside the caller's transaction")
    at = timezone.now()
    key_id = settings.CLEARHOUSE_AUDIT_HMAC_KEY_ID
    uid = batch_uid_new()
    who: dict[int, tuple[Any, str]] = {}
    rows: list[TransitionLog] = []
    for index, (entry, actor) in enumerate(items):
        if id(actor) not in who:
            who[id(actor)] = (actor_user(actor), actor_label(actor))
        user, label = who[id(actor)]
        row = TransitionLog(
            entity_type=entry.entity_type,
            entity_id=entry.entity_id,
            from_status=entry.from_status,
            to_status=entry.to_status,
            at=at,
            actor=user,
            actor_label=label,
            reason=entry.reason,
            metadata=_jsonable(dict(entry.metadata)),
            batch_id=uid,
            leaf_index=index,
            prev_hash="",
            key_id=key_id,
        )
        row.hash = row.compute_hash()
        rows.append(row)
    root = merkle_root([row.hash for row in rows])
    TransitionLog.objects.bulk_create(rows, batch_size=_INSERT_CHUNK)
    head = _lock_head()
    batch = AuditBatch(
        uid=uid,
        seq=head.batches + 1,
        length=head.length + len(rows),
        entries=len(rows),
        root=root,
        prev_hash=head.last_hash,
        key_id=key_id,
        at=at,
    )
    batch.hash = batch.compute_hash()
    _batch_insert_head_move(batch)
    return rows


_BATCH_AND_HEAD_SQL = """
WITH batch AS (
    INSERT INTO settlement_auditbatch (uid, seq, length, entries, root, prev_hash, hash, key_id, at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    RETURNING id
)
UPDATE settlement_transitionloghead SET last_hash = %s, length = %s, batches = %s
 WHERE id = 1 AND EXISTS (SELECT 1 FROM batch)
"""


def _batch_insert_head_move(batch: AuditBatch) -> None:
    """The batch row and the new head in one statement (one round trip while the head is held)."""
    params = (
        *(batch.uid, batch.seq, batch.length, batch.entries, batch.root, batch.prev_hash, batch.hash),
        *(batch.key_id, batch.at, batch.hash, batch.length, batch.seq),
    )
    with connection.cursor() as cursor:
        cursor.execute(_BATCH_AND_HEAD_SQL, params)
        if cursor.rowcount != 1:
            raise RuntimeError("the transition-log head row is missing")


def transition_log_anchor_head() -> None:
    """Copy the chain head row outside the database (beat, every minute): from then on, cutting
    the log back and resetting the head row shows, even before the next full verification."""
    head = TransitionLogHead.objects.filter(pk=1).first()
    if head is not None:
        anchor_write(length=head.length, hash=head.last_hash)


def transition_log_anchor(*, report: ChainReport) -> None:
    """Anchor an intact chain's verified head outside the database."""
    if not report.ok:
        raise ValueError("only an intact chain is anchored")
    anchor_write(length=report.checked, hash=report.last_hash)
