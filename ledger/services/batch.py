"""The two-phase ledger over a batch: lock, post and void many ledger locks in a few statements.

Same rows as the single-item services of ``ledger.services.ledger`` (the same locks, statuses,
journals, postings, balances, history and transition-log entries), written set-based: the
accounts of the whole batch locked in one statement in primary-key order, the checks done in
Python against the locked balances, the rows written by bulk inserts and every balance changed
by one statement (``balances_apply``).

The database stays the last word. If the no-overdraft CHECK still refuses a batch of holds,
``ledger_lock_many`` rolls back its savepoint and bisects the groups (first half, then second
half), so a short participant fails only its own groups, with the outcome one-by-one processing
in group order gives: holds only take value from available accounts, so a set of groups fits the
balances exactly when each of them, in order, fits what the earlier ones left.

A journal's balance per asset is checked here as in ``_journal_write`` (``check_balanced``) and by
the database for every insert of postings (ledger migration 0002), whatever path wrote them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from common.actors import Actor, stamp_history
from common.choices import AccountKind, JournalKind
from common.money import format_amount
from ledger.locking import lock_owner_accounts
from ledger.models import LedgerAccount, LedgerLock
from ledger.services.batch_resolve import PostRequest, ledger_post_many, ledger_void_many
from ledger.services.batch_rows import NewLock, journals_insert, lock_history_insert, locks_insert
from ledger.services.ledger import accounts_ensure
from ledger.services.legs import (
    balances_apply,
    deltas_add,
    is_overdraft,
    shortfall,
    validate_amount,
)
from reference.models import Asset

__all__ = [
    "HoldOutcome",
    "HoldRequest",
    "PostRequest",
    "ledger_lock_many",
    "ledger_post_many",
    "ledger_void_many",
]

_OWNER_KINDS = (AccountKind.AVAILABLE, AccountKind.LOCKED)


@dataclass(frozen=True)
class HoldRequest:
    group: int  # the caller's key (a trade pk): a group's holds succeed or fail together
    owner_id: int  # participant id
    asset_id: int
    amount: Decimal  # > 0, fits the asset's precision
    reference: str  # LedgerLock.reference: an existing lock with it is reused, not redone
    expires_at: datetime


@dataclass
class HoldOutcome:
    locks: dict[str, LedgerLock] = field(default_factory=dict)  # reference -> lock, of the groups that succeeded
    failed: dict[int, str] = field(default_factory=dict)  # group -> reason ("insufficient funds: ...")


class _HoldBatch:
    """The state of one ``ledger_lock_many`` call between its attempts: the locked accounts and
    their balances as the groups written so far left them, and the locks by reference."""

    def __init__(self, *, requests: Sequence[HoldRequest], actor: Actor, memo: str, precheck: bool) -> None:
        self.actor = actor
        self.memo = memo
        self.precheck = precheck
        self.groups: dict[int, list[HoldRequest]] = {}
        for request in requests:
            self.groups.setdefault(request.group, []).append(request)
        self.known = {lock.reference: lock for lock in _locks_of(_references(requests))}
        self.accounts = self._accounts_lock(
            {(r.owner_id, r.asset_id) for r in requests if r.reference not in self.known}
        )
        self.balances = {account.pk: account.balance for account in self.accounts.values()}
        self.outcome = HoldOutcome()
        self.attempts = 0

    @staticmethod
    def _accounts_lock(pairs: set[tuple[int, int]]) -> dict[tuple[int | None, int, str], LedgerAccount]:
        """The available and locked accounts of the pairs, locked in one statement (a second one
        only when some must be created first, as ``ledger_lock`` would)."""
        if not pairs:
            return {}
        found = {(a.owner_id, a.asset_id, a.kind): a for a in lock_owner_accounts(pairs, kinds=_OWNER_KINDS)}
        missing = {
            (owner, asset) for owner, asset in pairs for kind in _OWNER_KINDS if (owner, asset, kind) not in found
        }
        if missing:
            accounts_ensure(pairs=missing)
            found = {(a.owner_id, a.asset_id, a.kind): a for a in lock_owner_accounts(pairs, kinds=_OWNER_KINDS)}
        return found

    def validate(self, requests: Sequence[HoldRequest]) -> None:
        assets = {a.asset_id: a.asset for a in self.accounts.values()}
        unseen = {r.asset_id for r in requests} - set(assets)
        if unseen:  # only requests whose locks exist already: their assets are not loaded yet
            assets.update(Asset.objects.in_bulk(unseen))
        for request in requests:
            validate_amount(assets[request.asset_id], request.amount)

    def pair(self, request: HoldRequest) -> tuple[LedgerAccount, LedgerAccount]:
        return (
            self.accounts[(request.owner_id, request.asset_id, AccountKind.AVAILABLE)],
            self.accounts[(request.owner_id, request.asset_id, AccountKind.LOCKED)],
        )

    def new_holds(self, group: int, made: set[str]) -> list[HoldRequest]:
        """The group's requests that create a lock: not reusing one that exists or that an earlier
        request of this attempt (``made``) creates. Adds them to ``made``."""
        fresh = []
        for request in self.groups[group]:
            if request.reference not in self.known and request.reference not in made:
                made.add(request.reference)
                fresh.append(request)
        return fresh

    def reason(self, holds: Sequence[HoldRequest], balances: dict[int, Decimal]) -> str | None:
        """Why the holds cannot all be taken, one after the other, from ``balances`` (which they
        update when they can); None when they can."""
        deltas: dict[int, Decimal] = {}
        for request in holds:
            available, _ = self.pair(request)
            have = balances[available.pk] + deltas.get(available.pk, Decimal(0))
            if shortfall(available, balance=have, delta=-request.amount) is not None:
                precision = available.asset.precision
                return (
                    f"insufficient funds: {available} holds {format_amount(have, precision)}, "
                    f"needs {format_amount(request.amount, precision)}"
                )
            deltas_add(deltas, self.legs(request))
        deltas_add(balances, deltas.items())
        return None

    def legs(self, request: HoldRequest) -> tuple[tuple[int, Decimal], tuple[int, Decimal]]:
        available, locked = self.pair(request)
        return (available.pk, -request.amount), (locked.pk, request.amount)

    def attempt(self, groups: list[int]) -> None:
        """Write the holds of ``groups`` in one savepoint; bisect when the database refuses them."""
        self.attempts += 1
        balances = dict(self.balances)
        made: set[str] = set()
        holds: dict[int, list[HoldRequest]] = {}
        for group in groups:
            fresh = self.new_holds(group, made)
            if self.precheck:
                reason = self.reason(fresh, balances)
                if reason is not None:
                    self.outcome.failed[group] = reason
                    made.difference_update(r.reference for r in fresh)
                    continue
            holds[group] = fresh
        try:
            with transaction.atomic():
                created = self.write([r for fresh in holds.values() for r in fresh])
        except IntegrityError as exc:
            if not is_overdraft(exc):
                raise
            self.refused([group for group in groups if group in holds])
            return
        self.known.update(created)
        deltas_add(self.balances, (leg for fresh in holds.values() for r in fresh for leg in self.legs(r)))
        for group in holds:
            self.outcome.locks.update((r.reference, self.known[r.reference]) for r in self.groups[group])

    def refused(self, groups: list[int]) -> None:
        if len(groups) > 1:
            half = len(groups) // 2
            self.attempt(groups[:half])
            self.attempt(groups[half:])
            return
        (group,) = groups
        reason = self.reason(self.new_holds(group, set()), dict(self.balances))
        self.outcome.failed[group] = reason or "insufficient funds: the database refused a balance below zero"

    def write(self, holds: Sequence[HoldRequest]) -> dict[str, LedgerLock]:
        """The locks of ``holds``, their history, LOCK journals and postings, and the balances."""
        if not holds:
            return {}
        deltas: dict[int, Decimal] = defaultdict(Decimal)
        for request in holds:
            deltas_add(deltas, self.legs(request))
        balances_apply(deltas)  # first: a refusal costs no insert
        now = timezone.now()
        new = []
        memos = []
        for request in holds:
            available, locked = self.pair(request)
            new.append(
                NewLock(
                    request.reference, request.asset_id, available.pk, locked.pk, request.amount, request.expires_at
                )
            )
            owner = available.owner.code if available.owner is not None else ""
            memos.append(self.memo or f"lock {request.amount} {available.asset.code} of {owner}")
        ids = locks_insert(locks=new, at=now)
        lock_ids = [ids[lock.reference] for lock in new]
        lock_history_insert(ids=lock_ids, reasons=["lock"] * len(new), actor=self.actor, at=now, created=True)
        journals_insert(
            kind=JournalKind.LOCK,
            lock_ids=lock_ids,
            memos=memos,
            legs=[
                leg
                for pk, lock in zip(lock_ids, new, strict=True)
                for leg in (
                    (pk, lock.available_account_id, lock.asset_id, -lock.amount),
                    (pk, lock.locked_account_id, lock.asset_id, lock.amount),
                )
            ],
            actor=self.actor,
            at=now,
        )
        locks = {}
        for pk, lock in zip(lock_ids, new, strict=True):
            made = LedgerLock(
                id=pk,
                reference=lock.reference,
                asset_id=lock.asset_id,
                available_account_id=lock.available_account_id,
                locked_account_id=lock.locked_account_id,
                amount=lock.amount,
                expires_at=lock.expires_at,
                created_at=now,
            )
            made._state.adding = False
            stamp_history(made, actor=self.actor, reason="lock")
            locks[lock.reference] = made
        return locks


def _references(requests: Sequence[HoldRequest]) -> set[str]:
    return {request.reference for request in requests}


def _locks_of(references: set[str]) -> QuerySet[LedgerLock]:
    """The locks that exist with these references (one array parameter, not one per reference)."""
    of_references = RawSQL(
        '"settlement_ledgerlock"."reference" = ANY(%s::varchar[])', (list(references),), output_field=BooleanField()
    )
    return LedgerLock.objects.filter(of_references)


def ledger_lock_many(
    *, requests: Sequence[HoldRequest], actor: Actor, memo: str = "", precheck: bool = True
) -> HoldOutcome:
    """Groups in the order of their first request (callers sort by trade pk). Outcome identical to
    doing, for each group in order, a savepoint with ``ledger_lock()`` of each of its requests and
    rolling back the group on ``InsufficientFunds``.

    A constant number of statements whatever the size of the batch, plus a few per bisection step
    when the database refuses it. ``precheck=False`` skips the check against the locked balances,
    so the CHECK constraint decides (tests of the bisection path). ``ValidationFailed`` (an amount
    that is not positive or exceeds its asset's precision) refuses the whole batch.
    """
    with transaction.atomic():
        batch = _HoldBatch(requests=requests, actor=actor, memo=memo, precheck=precheck)
        batch.validate(requests)
        if batch.groups:
            batch.attempt(list(batch.groups))
    return batch.outcome
