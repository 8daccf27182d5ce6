"""Tamper-evident transition log.

Every status change of an audited entity appends one row. Each row carries ``prev_hash`` (the
hash of the row before it) and ``hash`` = HMAC-SHA256, under the key named by ``key_id``, over its
own content and ``prev_hash``, so any edit, deletion or re-ordering breaks the chain, and someone
with the database but without the key (``CLEARHOUSE_AUDIT_HMAC_KEYS``, never in the database)
cannot re-forge it. Rows written before the keyed cut-over have ``key_id = ""`` and a plain SHA-256;
the verifier accepts them only before the first keyed row. ``TransitionLogHead`` is a single row
holding the chain's tip and length: appenders lock it (which serialises appends for a few
microseconds at the end of each transaction) and the verifier compares it with the last row,
which also catches a truncated tail; the verifier also compares the chain with the anchors it
wrote outside the database (``ledger/services/anchors.py``), so a truncated log with a reset
head row is caught too. On PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE on the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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
    actor_label = models.CharField(max_length=150, help_text="Username or system process that made the change.")
    reason = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(
        max_length=32, blank=True, default="", help_text="HMAC key of the hash; empty for rows before the cut-over."
    )

    class Meta:
        db_table = "settlement_transitionlog"
        ordering = ["id"]
        indexes = [models.Index(fields=["entity_type", "entity_id", "id"], name="transition_log_entity_idx")]

    def __str__(self) -> str:
        return f"{self.entity_type}#{self.entity_id}: {self.from_status} → {self.to_status}"

    def compute_hash(self) -> str:
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


class TransitionLogHead(models.Model):
    """Single row (pk=1): the hash of the last appended log row and the number of rows."""

    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    length = models.BigIntegerField(default=0)

    class Meta:
        db_table = "settlement_transitionloghead"

    def __str__(self) -> str:
        return f"head {self.length} {self.last_hash[:12]}"
