"""Append to and verify the hash-chained transition log."""

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
from ledger.models import TransitionLog, TransitionLogHead
from ledger.models.audit import GENESIS_HASH, UnknownAuditKey
from ledger.services.anchors import Anchor, anchor_write, anchors_read


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
    without an exception: one head lock (3 statements) per transaction instead of one per
    transition, and the head held only from the end of the caller's work to its commit.

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
    """Append entries to the chain. Call it last in the caller's transaction: the head row
    stays locked until commit, so the lock is held as briefly as possible. Inside
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


def _append(items: list[tuple[LogEntry, Actor]]) -> list[TransitionLog]:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("transition_log_append must run inside the caller's transaction")
    at = timezone.now()
    key_id = settings.CLEARHOUSE_AUDIT_HMAC_KEY_ID
    who: dict[int, tuple[Any, str]] = {}
    head = _lock_head()
    prev = head.last_hash
    rows: list[TransitionLog] = []
    for entry, actor in items:
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
            prev_hash=prev,
            key_id=key_id,
        )
        row.hash = row.compute_hash()
        prev = row.hash
        rows.append(row)
    TransitionLog.objects.bulk_create(rows)
    TransitionLogHead.objects.filter(pk=1).update(last_hash=prev, length=head.length + len(rows))
    return rows


@dataclass
class ChainReport:
    checked: int = 0
    last_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def transition_log_verify(*, chunk_size: int = 5000, max_problems: int = 50) -> ChainReport:
    """Walk the whole chain in append order and report every broken link, a head row that does not
    match the last row, and any anchor (outside the database) the chain no longer matches. Reads
    one snapshot (REPEATABLE READ), so appends while it walks are never mistaken for tampering; the
    anchors are read before that snapshot begins, so each names a head the snapshot holds."""
    anchors, problems = anchors_read()
    if connection.in_atomic_block:
        return _verify(anchors=anchors, problems=problems, chunk_size=chunk_size, max_problems=max_problems)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _verify(anchors=anchors, problems=problems, chunk_size=chunk_size, max_problems=max_problems)


def _verify(*, anchors: list[Anchor], problems: list[str], chunk_size: int, max_problems: int) -> ChainReport:
    report = ChainReport(problems=list(problems))
    wanted = {anchor.length for anchor in anchors}
    found: dict[int, str] = {}
    prev = GENESIS_HASH
    legacy_rows = settings.CLEARHOUSE_AUDIT_LEGACY_ROWS
    for row in TransitionLog.objects.order_by("id").iterator(chunk_size=chunk_size):
        report.checked += 1
        if row.prev_hash != prev:
            report.problems.append(f"row {row.pk}: prev_hash does not match the row before it (deleted or reordered)")
        if not row.key_id and report.checked > legacy_rows:
            report.problems.append(
                f"row {row.pk}: unkeyed, but only the first {legacy_rows} rows predate the HMAC chain "
                "(CLEARHOUSE_AUDIT_LEGACY_ROWS): forged"
            )
        try:
            if row.compute_hash() != row.hash:
                report.problems.append(f"row {row.pk}: content does not match its hash (edited)")
        except UnknownAuditKey:
            report.problems.append(f"row {row.pk}: HMAC key {row.key_id!r} is not configured")
        prev = row.hash
        if report.checked in wanted:
            found[report.checked] = row.hash
        if len(report.problems) >= max_problems:
            report.problems.append("too many problems, stopped")
            return report
    report.last_hash = prev
    head = TransitionLogHead.objects.filter(pk=1).first()
    head_hash = head.last_hash if head else GENESIS_HASH
    head_length = head.length if head else 0
    if head_hash != prev or head_length != report.checked:
        report.problems.append(
            f"chain head says {head_length} rows ending in {head_hash[:12]}, "
            f"found {report.checked} rows ending in {prev[:12]} (rows removed or added outside the log service)"
        )
    for anchor in anchors:
        if anchor.length > report.checked:
            report.problems.append(
                f"anchor of {anchor.at} says {anchor.length} rows, the chain has {report.checked} (rows removed)"
            )
        elif found.get(anchor.length) != anchor.hash:
            report.problems.append(
                f"anchor of {anchor.at}: row {anchor.length} of the chain no longer hashes to {anchor.hash[:12]} "
                "(chain rewritten)"
            )
    return report


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
