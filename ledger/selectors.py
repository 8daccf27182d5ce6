"""Reads of the ledger app's records."""

from __future__ import annotations

from django.db.models import QuerySet

from ledger.models import TransitionLog


def transitions_of(entity_type: str, entity_id: int) -> QuerySet[TransitionLog]:
    """One entity's transition log entries, oldest first."""
    return TransitionLog.objects.filter(entity_type=entity_type, entity_id=entity_id).order_by("id")
