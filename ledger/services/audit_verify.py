"""Verify the transition log: the legacy per-row chain, then every batch (its entries' leaves and
Merkle root, and the batch chain), the head row and the anchors kept outside the database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.lookups import IsNull

from ledger.merkle import MerkleBuilder
from ledger.models import AuditBatch, TransitionLog, TransitionLogHead
from ledger.models.audit import GENESIS_HASH, UnknownAuditKey
from ledger.services.anchors import Anchor, anchors_read


@dataclass
class ChainReport:
    checked: int = 0  # entries checked (legacy rows and batched entries)
    last_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)
    batches: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class _TooManyProblems(Exception):
    pass


class _Walk:
    """What the walk has seen so far: the report, and the hash at each anchored length."""

    def __init__(self, *, report: ChainReport, anchors: list[Anchor], max_problems: int) -> None:
        self.report = report
        self.wanted = {anchor.length for anchor in anchors}
        self.found: dict[int, str] = {}
        self.max_problems = max_problems

    def problem(self, text: str) -> None:
        self.report.problems.append(text)
        if len(self.report.problems) >= self.max_problems:
            raise _TooManyProblems

    def reached(self, hash: str) -> None:
        """The chain, ``report.checked`` entries long, ends in ``hash`` here."""
        if self.report.checked in self.wanted:
            self.found[self.report.checked] = hash


def transition_log_verify(*, chunk_size: int = 5000, max_problems: int = 50) -> ChainReport:
    """Walk the whole chain in append order and report every edited entry (by row), every batch
    whose entries no longer give its root (entries removed, added or reordered), every broken
    link of the legacy rows and of the batch chain (rows or batches removed or reordered), a head
    row that does not match the end of the chain, and any anchor (outside the database) the chain
    no longer matches. Reads one snapshot (REPEATABLE READ), so appends while it walks are never
    mistaken for tampering; the anchors are read before that snapshot begins, so each names a
    head the snapshot holds. Streams rows in chunks of ``chunk_size`` (memory stays bounded)."""
    anchors, problems = anchors_read()
    if connection.in_atomic_block:
        return _verify(anchors=anchors, problems=problems, chunk_size=chunk_size, max_problems=max_problems)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _verify(anchors=anchors, problems=problems, chunk_size=chunk_size, max_problems=max_problems)


def _verify(*, anchors: list[Anchor], problems: list[str], chunk_size: int, max_problems: int) -> ChainReport:
    report = ChainReport(problems=list(problems))
    walk = _Walk(report=report, anchors=anchors, max_problems=max_problems)
    try:
        prev = _legacy_walk(walk, chunk_size=chunk_size)
        prev = _batches_walk(walk, prev=prev, chunk_size=chunk_size)
    except _TooManyProblems:
        report.problems.append("too many problems, stopped")
        return report
    report.last_hash = prev
    _head_check(report)
    for anchor in anchors:
        if anchor.length > report.checked:
            report.problems.append(
                f"anchor of {anchor.at} says {anchor.length} rows, the chain has {report.checked} (rows removed)"
            )
        elif walk.found.get(anchor.length) != anchor.hash:
            report.problems.append(
                f"anchor of {anchor.at}: row {anchor.length} of the chain no longer hashes to {anchor.hash[:12]} "
                "(chain rewritten)"
            )
    return report


def _legacy_walk(walk: _Walk, *, chunk_size: int) -> str:
    """The rows written before batching, one per-row chain in id order; returns its last hash."""
    report = walk.report
    prev = GENESIS_HASH
    legacy_rows = settings.CLEARHOUSE_AUDIT_LEGACY_ROWS
    for row in TransitionLog.objects.filter(batch__isnull=True).order_by("id").iterator(chunk_size=chunk_size):
        report.checked += 1
        if row.prev_hash != prev:
            walk.problem(f"row {row.pk}: prev_hash does not match the row before it (deleted or reordered)")
        if not row.key_id and report.checked > legacy_rows:
            walk.problem(
                f"row {row.pk}: unkeyed, but only the first {legacy_rows} rows predate the HMAC chain "
                "(CLEARHOUSE_AUDIT_LEGACY_ROWS): forged"
            )
        _hash_check(walk, row)
        prev = row.hash
        walk.reached(prev)
    return prev


def _hash_check(walk: _Walk, row: TransitionLog) -> None:
    try:
        if row.compute_hash() != row.hash:
            walk.problem(f"row {row.pk}: content does not match its hash (edited)")
    except UnknownAuditKey:
        walk.problem(f"row {row.pk}: HMAC key {row.key_id!r} is not configured")


class _Entries:
    """The batched entries in chain order (batch seq, then leaf index), one server-side cursor;
    entries whose batch row is missing come last (their seq is NULL)."""

    def __init__(self, *, chunk_size: int) -> None:
        # IsNull as an expression: ``batch__isnull=False`` would make Django join the batches INNER
        # and drop the very entries whose batch row is gone.
        query = (
            TransitionLog.objects.filter(IsNull(F("batch_id"), False))
            .annotate(batch_seq=F("batch__seq"))
            .order_by(F("batch_seq").asc(nulls_last=True), "leaf_index", "id")
        )
        self._rows: Iterator[TransitionLog] = query.iterator(chunk_size=chunk_size)
        self._next: TransitionLog | None = next(self._rows, None)

    def of(self, seq: int | None) -> Iterator[TransitionLog]:
        """The next entries while they belong to the batch ``seq`` (None: to no batch)."""
        while self._next is not None and self._next.batch_seq == seq:  # type: ignore[attr-defined]
            row, self._next = self._next, next(self._rows, None)
            yield row


def _batches_walk(walk: _Walk, *, prev: str, chunk_size: int) -> str:
    """Every batch in seq order, each with its entries; returns the chain's last hash. Each link
    is checked against the batch before it, so one removed batch is one break, not one per batch
    after it."""
    report = walk.report
    entries = _Entries(chunk_size=chunk_size)
    seq, length = 0, report.checked
    for batch in AuditBatch.objects.order_by("seq").iterator(chunk_size=chunk_size):
        report.batches += 1
        if batch.seq != seq + 1:
            walk.problem(f"batch {batch.pk}: seq {batch.seq} follows seq {seq} (batch removed or reordered)")
        if batch.prev_hash != prev:
            walk.problem(f"batch {batch.pk}: prev_hash does not match the batch before it (removed or reordered)")
        try:
            if batch.compute_hash() != batch.hash:
                walk.problem(f"batch {batch.pk}: content does not match its hash (edited)")
        except UnknownAuditKey:
            walk.problem(f"batch {batch.pk}: HMAC key {batch.key_id!r} is not configured")
        _leaves_check(walk, batch, entries.of(batch.seq))
        if batch.length != length + batch.entries:
            walk.problem(
                f"batch {batch.pk}: says {batch.length} entries through it, the chain before it has {length} "
                f"and it {batch.entries} (entries or batches removed)"
            )
        seq, length, prev = batch.seq, batch.length, batch.hash
        walk.reached(prev)
    for row in entries.of(None):
        report.checked += 1
        walk.problem(f"row {row.pk}: its batch {row.batch_id} is missing (batch removed)")
    return prev


def _leaves_check(walk: _Walk, batch: AuditBatch, rows: Iterator[TransitionLog]) -> None:
    """Each entry's leaf hash, their places 0..n-1 and the Merkle root of the batch."""
    tree = MerkleBuilder()
    misplaced = False
    for row in rows:
        walk.report.checked += 1
        if not row.key_id:
            walk.problem(f"row {row.pk}: unkeyed entry in batch {batch.pk}: forged")
        else:
            _hash_check(walk, row)
        if row.leaf_index != tree.count and not misplaced:
            misplaced = True
            walk.problem(
                f"batch {batch.pk}: row {row.pk} is leaf {row.leaf_index}, expected leaf {tree.count} "
                "(entry removed, added or reordered)"
            )
        tree.add(row.hash)
    if tree.count != batch.entries:
        walk.problem(
            f"batch {batch.pk}: holds {tree.count} entries, its row says {batch.entries} (entries removed or added)"
        )
    if tree.root() != batch.root:
        walk.problem(
            f"batch {batch.pk}: its entries' Merkle root does not match the batch's (entries removed, added, "
            "edited or reordered)"
        )


def _head_check(report: ChainReport) -> None:
    head = TransitionLogHead.objects.filter(pk=1).first()
    head_hash = head.last_hash if head else GENESIS_HASH
    head_length = head.length if head else 0
    head_batches = head.batches if head else 0
    if head_hash != report.last_hash or head_length != report.checked:
        report.problems.append(
            f"chain head says {head_length} rows ending in {head_hash[:12]}, found {report.checked} rows ending in "
            f"{report.last_hash[:12]} (rows removed or added outside the log service)"
        )
    if head_batches != report.batches:
        report.problems.append(
            f"chain head says {head_batches} batches, found {report.batches} (batches removed or added)"
        )
