"""Halts (circuit breakers): while an asset's halt is open nothing more is signed or broadcast for
it. Opening one tells operations through the ``notify`` port."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from common.actors import Actor, SystemActor, actor_label, stamp_history
from common.exceptions import IllegalTransition, ValidationFailed
from common.ports import notify
from ledger.services.audit import LogEntry, transition_log_append
from reference.models import Asset
from settlement.locking import lock_halt
from settlement.models import SettlementHalt

PIPELINE = SystemActor("crypto-pipeline")


def active_halt(asset: Asset) -> SettlementHalt | None:
    return SettlementHalt.objects.filter(asset=asset, lifted_at__isnull=True).first()


def halt_open(*, asset: Asset, reason: str, actor: Actor) -> SettlementHalt:
    """Open the asset's circuit breaker: nothing more is signed or broadcast for it until lifted."""
    with transaction.atomic():
        halt = active_halt(asset)
        if halt is None:
            halt = SettlementHalt(asset=asset, reason=reason, opened_by=actor_label(actor))
            stamp_history(halt, actor=actor, reason=reason[:100])
            halt.save()
            transition_log_append(
                entries=[LogEntry("halt", halt.pk, "", "open", reason, {"asset": asset.code})], actor=actor
            )
            notify(
                event="halt",
                instruction=None,
                message=f"{asset.code} settlement halted: {reason}",
                dedupe_key=f"halt:{halt.pk}",
                ops=True,
            )
        return halt


def halt_lift(*, halt: SettlementHalt, actor: Actor, reason: str) -> SettlementHalt:
    if not reason.strip():
        raise ValidationFailed("lifting a halt needs a reason")
    with transaction.atomic():
        halt = lock_halt(halt.pk).get()
        if halt.lifted_at is not None:
            raise IllegalTransition(f"halt {halt.pk} was already lifted")
        halt.lifted_at = timezone.now()
        halt.lifted_by = None if isinstance(actor, SystemActor) else actor
        halt.lift_reason = reason
        stamp_history(halt, actor=actor, reason=reason[:100])
        halt.save()
        transition_log_append(entries=[LogEntry("halt", halt.pk, "open", "lifted", reason, {})], actor=actor)
        return halt
