"""Reads. Every query an API user can reach goes through a ``*_visible_to`` selector, so
participant isolation is decided in one place."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from ledger.models import LedgerAccount, TransitionLog
from ledger.selectors import transitions_of
from reference.models import Instrument, Participant
from settlement.models import SettlementInstruction, Trade


def participant_for_user(user: Any) -> Participant | None:
    if not getattr(user, "is_authenticated", False):
        return None
    link = getattr(user, "participant_link", None)
    return link.participant if link is not None else None


def sees_everything(user: Any) -> bool:
    return bool(getattr(user, "is_staff", False)) and participant_for_user(user) is None


def visible_scope(qs: QuerySet, user: Any, *party_fields: str) -> QuerySet:
    """Everything for staff; for a participant's user the rows where it is one of ``party_fields``."""
    if sees_everything(user):
        return qs
    participant = participant_for_user(user)
    if participant is None:
        return qs.none()
    condition = Q()
    for name in party_fields:
        condition |= Q(**{name: participant})
    return qs.filter(condition)


def instructions_visible_to(user: Any) -> QuerySet[SettlementInstruction]:
    qs = SettlementInstruction.objects.select_related("asset", "payer", "payee", "trade")
    return visible_scope(qs, user, "payer", "payee")


def trades_visible_to(user: Any) -> QuerySet[Trade]:
    return visible_scope(
        Trade.objects.select_related("instrument__base", "instrument__quote", "buyer", "seller"),
        user,
        "buyer",
        "seller",
    )


def balances_visible_to(user: Any) -> QuerySet[LedgerAccount]:
    qs = LedgerAccount.objects.select_related("asset", "owner").order_by("owner__code", "asset__code", "kind")
    return visible_scope(qs, user, "owner")


def instruction_transitions(instruction: SettlementInstruction) -> QuerySet[TransitionLog]:
    return transitions_of("instruction", instruction.pk)


def ingest_lookups() -> tuple[dict[str, Participant], dict[str, Instrument]]:
    """Active participants and instruments by code, loaded once per ingest request."""
    participants = {p.code: p for p in Participant.objects.filter(is_active=True)}
    instruments = {
        i.symbol: i
        for i in Instrument.objects.filter(is_active=True, base__is_active=True, quote__is_active=True).select_related(
            "base", "quote"
        )
    }
    return participants, instruments
