"""Reads that the lower layers ask of operations through ``common.ports`` (bound in ``OpsConfig.ready``)."""

from __future__ import annotations

from ops.models import ApprovalRequest, ReviewCase


def approval_pending(pk: int | None) -> tuple[str, int, int | None] | None:
    """``(kind, target_id, proposed_by_id)`` of four-eyes request ``pk`` while it is pending."""
    stored = ApprovalRequest.objects.filter(pk=pk, status="pending").first()
    if stored is None:
        return None
    return stored.kind, stored.target_id, stored.proposed_by_id


def case_exists(*, dedupe_key: str) -> bool:
    """Whether a review case was ever opened under ``dedupe_key``."""
    return ReviewCase.objects.filter(dedupe_key=dedupe_key).exists()
