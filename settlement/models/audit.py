"""Tamper-evident transition log.

Every status change of an audited entity appends one row. Each row carries ``prev_hash`` (the
hash of the row before it) and ``hash`` = SHA-256 over its own content and ``prev_hash``, so any
edit, deletion or re-ordering breaks the chain. ``TransitionLogHead`` is a single row holding the
chain's tip and length: appenders lock it (which serialises appends for a few microseconds at the
end of each transaction) and the verifier compares it with the last row, which also catches a
truncated tail. On PostgreSQL a trigger refuses UPDATE and DELETE on the log.
"""

from __future__ import annotations

import hashlib
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
) -> str:
    content = json.dumps(
        {
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
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(content.encode()).hexdigest()


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

    class Meta:
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
        )


class TransitionLogHead(models.Model):
    """Single row (pk=1): the hash of the last appended log row and the number of rows."""

    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    length = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"head {self.length} {self.last_hash[:12]}"
