"""Tamper-evident transition log.

Every status change of an audited entity appends one row (an entry). Entries are appended in
batches, one per transaction (``AuditBatch``): each entry's ``hash`` is its leaf hash, HMAC-SHA256
under the key named by ``key_id`` over its own content, its batch and its place in it
(``leaf_index``); the batch row holds the Merkle root of its leaves, their count and
``prev_hash`` (the previous batch's hash), and its own ``hash`` is an HMAC over all of that. So an
edited entry breaks its leaf, a removed, added or moved entry breaks its batch's root, and a
removed or reordered batch breaks the batch chain; someone with the database but without the key
(``CLEARHOUSE_AUDIT_HMAC_KEYS``, never in the database) cannot re-forge any of them.

Entries written before batching (``batch`` NULL) form the legacy chain: each carries ``prev_hash``
(the hash of the row before it) and ``hash`` = HMAC over its content and ``prev_hash``; the first
batch's ``prev_hash`` is that chain's last hash, so the two are one chain. Rows written before the
keyed cut-over have ``key_id = ""`` and a plain SHA-256; the verifier accepts them only at the
start of the legacy chain. ``TransitionLogHead`` is a single row holding the chain's tip (the last
batch's hash), its length in entries and its number of batches: an appender takes it for two short
statements at the very end of its transaction (the entries are hashed and inserted before) and the
verifier compares it with the last batch, which also catches a truncated tail; the verifier also
compares the chain with the anchors it wrote outside the database (``ledger/services/anchors.py``),
so a truncated log with a reset head row is caught too. On PostgreSQL triggers refuse UPDATE,
DELETE and TRUNCATE on the log and the batches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models

GENESIS_HASH = "0" * 64


def transition_hash(
    *,
    prev_hash: str,
    entity_type: str,
    entity_id: int,
    from_status: str,
    to_status: str,
    at: datetime,
    actor_id: int | None,
    actor_label: str,
    reason: str,
    metadata: dict[str, Any],
    key_id: str = "",
) -> str:
    """HMAC-SHA256 under the key ``key_id`` names; ``key_id`` "" is the unkeyed SHA-256 of the rows
    written before the cut-over. A key id that settings do not know raises ``UnknownAuditKey``."""
    fields: dict[str, Any] = {
        "prev": prev_hash,
        "type": entity_type,
        "id": entity_id,
        "from": from_status,
        "to": to_status,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor_id,
        "actor_label": actor_label,
        "reason": reason,
        "metadata": metadata,
    }
    if not key_id:
        return hashlib.sha256(_canonical(fields)).hexdigest()
    return audit_mac(_canonical({**fields, "kid": key_id}), key_id=key_id)


def leaf_hash(
    *,
    batch: str,
    leaf_index: int,
    entity_type: str,
    entity_id: int,
    from_status: str,
    to_status: str,
    at: datetime,
    actor_id: int | None,
    actor_label: str,
    reason: str,
    metadata: dict[str, Any],
    key_id: str,
) -> str:
    """The leaf hash of a batched entry: HMAC-SHA256 of its content, its batch and its place there
    (so two equal transitions still differ, and an entry moved to another place no longer
    matches). Always keyed: ``UnknownAuditKey`` when ``key_id`` is not configured (or empty)."""
    fields: dict[str, Any] = {
        "batch": batch,
        "leaf": leaf_index,
        "type": entity_type,
        "id": entity_id,
        "from": from_status,
        "to": to_status,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor_id,
        "actor_label": actor_label,
        "reason": reason,
        "metadata": metadata,
        "kid": key_id,
    }
    return audit_mac(_canonical(fields), key_id=key_id)


def batch_hash(
    *,
    batch: str,
    seq: int,
    length: int,
    entries: int,
    root: str,
    prev_hash: str,
    at: datetime,
    key_id: str,
) -> str:
    """The chained hash of a batch: HMAC-SHA256 over its place in the chain (``seq``, the entry
    count ``length`` through it), the Merkle root and count of its entries and the previous hash."""
    fields: dict[str, Any] = {
        "batch": batch,
        "seq": seq,
        "length": length,
        "entries": entries,
        "root": root,
        "prev": prev_hash,
        "at": at.isoformat(timespec="microseconds"),
        "kid": key_id,
    }
    return audit_mac(_canonical({"audit-batch": fields}), key_id=key_id)


class UnknownAuditKey(KeyError):
    pass


def _canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def audit_mac(message: bytes, *, key_id: str) -> str:
    """HMAC-SHA256 of ``message`` under the audit key ``key_id`` (settings, never the database)."""
    try:
        key = settings.CLEARHOUSE_AUDIT_HMAC_KEYS[key_id]
    except KeyError as exc:
        raise UnknownAuditKey(key_id) from exc
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


class TransitionLog(models.Model):
    entity_type = models.CharField(max_length=64)
    entity_id = models.BigIntegerField()
    from_status = models.CharField(max_length=32)
    to_status = models.CharField(max_length=32)
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The batch's ``uid``, made by the appender: the entries are inserted before their batch row
    # (written with the head, at the very end) without a statement to learn its id first. No
    # database constraint: a deferred check per entry would run at commit, while the head is held.
    # The leaf hash covers the uid and the verifier reports an entry whose batch is missing.
    batch = models.ForeignKey(
        "AuditBatch",
        to_field="uid",
        db_column="batch_uid",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # the (batch, leaf_index) unique index serves lookups by batch
        related_name="log_entries",
        help_text="The append batch; empty for entries of the legacy per-row chain.",
    )
    leaf_index = models.PositiveIntegerField(null=True, blank=True, help_text="Place of the entry in its batch.")
    actor_label = models.CharField(max_length=150, help_text="Username or system process that made the change.")
    reason = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True, help_text="Legacy chain only: the row before.")
    hash = models.CharField(max_length=64, unique=True, help_text="Leaf hash (batched) or chained hash (legacy).")
    key_id = models.CharField(
        max_length=32, blank=True, default="", help_text="HMAC key of the hash; empty for rows before the cut-over."
    )

    class Meta:
        db_table = "settlement_transitionlog"
        ordering = ["id"]
        indexes = [models.Index(fields=["entity_type", "entity_id", "id"], name="transition_log_entity_idx")]
        constraints = [
            models.UniqueConstraint(fields=["batch", "leaf_index"], name="transition_log_batch_leaf_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.entity_type}#{self.entity_id}: {self.from_status} → {self.to_status}"

    def compute_hash(self) -> str:
        if self.batch_id is not None:
            return leaf_hash(
                batch=str(self.batch_id),
                leaf_index=-1 if self.leaf_index is None else self.leaf_index,
                entity_type=self.entity_type,
                entity_id=self.entity_id,
                from_status=self.from_status,
                to_status=self.to_status,
                at=self.at,
                actor_id=self.actor_id,
                actor_label=self.actor_label,
                reason=self.reason,
                metadata=self.metadata,
                key_id=self.key_id,
            )
        return transition_hash(
            prev_hash=self.prev_hash,
            entity_type=self.entity_type,
            entity_id=self.entity_id,
            from_status=self.from_status,
            to_status=self.to_status,
            at=self.at,
            actor_id=self.actor_id,
            actor_label=self.actor_label,
            reason=self.reason,
            metadata=self.metadata,
            key_id=self.key_id,
        )


def batch_uid_new() -> uuid.UUID:
    """A time-ordered UUID (version 7 layout: milliseconds, then 74 random bits), so the entries'
    (batch, leaf) index grows at its end like the ids do."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62 | rand & (2**62 - 1)
    return uuid.UUID(int=value)


class AuditBatch(models.Model):
    """The entries one transaction appended, chained to the batch before it (see the module)."""

    uid = models.UUIDField(unique=True, editable=False, help_text="Made by the appender; the entries name it.")
    seq = models.BigIntegerField(unique=True, help_text="Place in the chain: 1 for the first batch.")
    length = models.BigIntegerField(help_text="Entries in the log through this batch (legacy rows included).")
    entries = models.PositiveIntegerField(help_text="Entries in this batch.")
    root = models.CharField(max_length=64, help_text="Merkle root of the entries' leaf hashes, in leaf order.")
    prev_hash = models.CharField(max_length=64, help_text="Hash of the batch before (or of the last legacy row).")
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(max_length=32, help_text="HMAC key of the hash and of the entries' leaves.")
    at = models.DateTimeField()

    class Meta:
        db_table = "settlement_auditbatch"
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"batch {self.seq}: {self.entries} entries {self.hash[:12]}"

    def compute_hash(self) -> str:
        return batch_hash(
            batch=str(self.uid),
            seq=self.seq,
            length=self.length,
            entries=self.entries,
            root=self.root,
            prev_hash=self.prev_hash,
            at=self.at,
            key_id=self.key_id,
        )


class TransitionLogHead(models.Model):
    """Single row (pk=1): the chain's tip (the last batch's hash, or the last legacy row's), the
    number of entries and the number of batches."""

    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    length = models.BigIntegerField(default=0)
    batches = models.BigIntegerField(default=0)

    class Meta:
        db_table = "settlement_transitionloghead"

    def __str__(self) -> str:
        return f"head {self.length} {self.last_hash[:12]}"
