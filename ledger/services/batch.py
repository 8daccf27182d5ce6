"""Ledger services over a batch: lock, post and void many ledger locks in one transaction.

Interface first (a loop over the single-item services); the set-based version replaces the
internals without changing what a caller sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from common.actors import Actor
from common.exceptions import InsufficientFunds
from ledger.models import Journal, LedgerAccount, LedgerLock
from ledger.services.ledger import Leg, ledger_lock, ledger_post, ledger_post_journal, ledger_void
from reference.models import Asset, Participant


@dataclass(frozen=True)
class HoldRequest:
    group: int  # the caller's key (a trade pk): a group's holds succeed or fail together
    owner_id: int
    asset_id: int
    amount: Decimal  # > 0, fits the asset's precision
    reference: str  # LedgerLock.reference: an existing lock with it is reused, not redone
    expires_at: datetime


@dataclass
class HoldOutcome:
    locks: dict[str, LedgerLock] = field(default_factory=dict)  # reference -> lock, of the groups that succeeded
    failed: dict[int, str] = field(default_factory=dict)  # group -> reason


@dataclass(frozen=True)
class PostRequest:
    lock: LedgerLock  # pending; its accounts may be unloaded (ids are enough)
    to_account_id: int  # same asset
    amount: Decimal  # 0 <= amount <= lock.amount; the rest goes back to the lock's available account
    extra: tuple[tuple[int, Decimal], ...] = ()  # (account id, amount) legs in the same journal (fees)
    reason: str = "post"


def _groups(requests: Sequence[HoldRequest]) -> dict[int, list[HoldRequest]]:
    groups: dict[int, list[HoldRequest]] = {}
    for request in requests:
        groups.setdefault(request.group, []).append(request)
    return groups


def ledger_lock_many(*, requests: Sequence[HoldRequest], actor: Actor, memo: str = "") -> HoldOutcome:
    """Groups in the order of their first request (callers sort by trade pk). Outcome identical to
    doing, for each group in order, a savepoint with ``ledger_lock()`` of each of its requests and
    rolling back the group on ``InsufficientFunds``."""
    outcome = HoldOutcome()
    with transaction.atomic():
        owners = Participant.objects.in_bulk({r.owner_id for r in requests})
        assets = Asset.objects.in_bulk({r.asset_id for r in requests})
        for group, items in _groups(requests).items():
            try:
                with transaction.atomic():
                    made = {
                        r.reference: ledger_lock(
                            owner=owners[r.owner_id],
                            asset=assets[r.asset_id],
                            amount=r.amount,
                            reference=r.reference,
                            actor=actor,
                            expires_at=r.expires_at,
                        )
                        for r in items
                    }
            except InsufficientFunds as exc:
                outcome.failed[group] = f"insufficient funds: {exc}"
            else:
                outcome.locks.update(made)
    return outcome


def ledger_post_many(*, requests: Sequence[PostRequest], actor: Actor) -> dict[int, Journal]:
    """Post every lock of ``requests`` (each pending, else ``LockNotPending``); lock pk -> journal."""
    journals: dict[int, Journal] = {}
    with transaction.atomic():
        accounts = LedgerAccount.objects.select_related("asset").in_bulk(
            {r.to_account_id for r in requests} | {a for r in requests for a, _ in r.extra}
        )
        for r in requests:
            posted = ledger_post(
                lock=r.lock,
                to_account=accounts[r.to_account_id],
                actor=actor,
                reason=r.reason,
                amount=r.amount,
                extra_legs=[Leg(accounts[a], amount) for a, amount in r.extra],
            )
            journals[posted.pk] = ledger_post_journal(posted)
    return journals


def ledger_void_many(*, locks: Sequence[LedgerLock], actor: Actor, reason: str) -> dict[int, Journal]:
    """Void every lock (each pending, else ``LockNotPending``); lock pk -> journal."""
    journals: dict[int, Journal] = {}
    with transaction.atomic():
        for lock in locks:
            voided = ledger_void(lock=lock, actor=actor, reason=reason)
            journals[voided.pk] = voided.resolved_journal
    return journals
