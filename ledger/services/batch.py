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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from common.actors import Actor, actor_user, stamp_history
from common.choices import AccountKind, JournalKind, LockStatus
from common.exceptions import InsufficientFunds, LockNotPending, ValidationFailed
from common.money import format_amount
from ledger.locking import lock_accounts, lock_ledger_locks, lock_owner_accounts
from ledger.models import Journal, LedgerAccount, LedgerLock
from ledger.services.audit import LogEntry, transition_log_append
from ledger.services.batch_rows import NewLock, journals_insert, lock_history_insert, locks_insert
from ledger.services.ledger import (
    Leg,
    accounts_ensure,
    balances_apply,
    check_balanced,
    is_overdraft,
    release_rest,
    resolution_legs,
    shortfall,
    validate_amount,
)
from reference.models import Asset

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


@dataclass(frozen=True)
class PostRequest:
    lock: LedgerLock  # pending; its accounts may be unloaded (ids are enough)
    to_account_id: int  # same asset
    amount: Decimal  # 0 <= amount <= lock.amount; the rest goes back to the lock's available account
    extra: tuple[tuple[int, Decimal], ...] = ()  # (account id, amount) legs in the same journal (fees)
    reason: str = "post"


def _deltas_add(deltas: dict[int, Decimal], legs: Iterable[tuple[int, Decimal]]) -> dict[int, Decimal]:
    for account_id, amount in legs:
        deltas[account_id] = deltas.get(account_id, Decimal(0)) + amount
    return deltas


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
            _deltas_add(deltas, self.legs(request))
        _deltas_add(balances, deltas.items())
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
        _deltas_add(self.balances, (leg for fresh in holds.values() for r in fresh for leg in self.legs(r)))
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
            _deltas_add(deltas, self.legs(request))
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


@dataclass(frozen=True)
class _Resolution:
    lock: LedgerLock  # fresh, held locked
    to_account_id: int
    moved: Decimal
    extra: tuple[tuple[int, Decimal], ...]
    reason: str

    @property
    def rest(self) -> Decimal:
        return release_rest(amount=self.lock.amount, moved=self.moved, extra=(amount for _, amount in self.extra))


def _pending_locks(locks: Sequence[LedgerLock], *, target: str) -> list[LedgerLock]:
    """The locks re-read under one lock of their rows, in the caller's order; ``LockNotPending``
    when one is not pending (or comes twice: the first resolves it)."""
    held = {lock.pk: lock for lock in lock_ledger_locks(pk__in=[lock.pk for lock in locks]).order_by("pk")}
    seen: set[int] = set()
    for lock in locks:
        fresh = held[lock.pk]
        status = target if lock.pk in seen else fresh.status
        if status != LockStatus.PENDING:
            raise LockNotPending(f"lock {fresh.reference} is {status}")
        seen.add(lock.pk)
    return [held[lock.pk] for lock in locks]


def _resolve_many(*, resolutions: Sequence[_Resolution], target: str, kind: str, actor: Actor) -> dict[int, Journal]:
    """Resolve pending locks (held locked) as ``_resolve_lock`` does one: status and history, one
    journal each, the balances, the transition-log entries."""
    wanted: set[int] = set()
    for item in resolutions:
        wanted.update((item.lock.locked_account_id, item.to_account_id, *(account for account, _ in item.extra)))
        if item.rest:
            wanted.add(item.lock.available_account_id)
    accounts = {account.pk: account for account in lock_accounts(wanted, related=("owner", "asset"))}
    balances = {pk: account.balance for pk, account in accounts.items()}
    journals_legs: list[list[Leg]] = []
    for item in resolutions:
        lock = item.lock
        to_account = accounts.get(item.to_account_id)
        if to_account is None or to_account.asset_id != lock.asset_id:
            raise ValidationFailed("a lock posts only to an account of its own asset")
        if item.moved < 0 or item.moved > lock.amount:
            raise ValidationFailed(f"cannot post {item.moved} of a lock of {lock.amount}")
        legs = resolution_legs(
            amount=lock.amount,
            moved=item.moved,
            locked=accounts[lock.locked_account_id],
            to_account=to_account,
            available=accounts.get(lock.available_account_id) or accounts[lock.locked_account_id],  # unused, no rest
            extra_legs=[Leg(accounts[account], amount) for account, amount in item.extra],
        )
        check_balanced(legs)
        deltas = _deltas_add({}, ((leg.account.pk, leg.amount) for leg in legs))
        for account_id, delta in deltas.items():  # one journal after the other, as one-by-one would
            short = shortfall(accounts[account_id], balance=balances[account_id], delta=delta)
            if short is not None:
                raise short
        _deltas_add(balances, deltas.items())
        journals_legs.append(legs)
    return _resolutions_write(resolutions=resolutions, legs=journals_legs, target=target, kind=kind, actor=actor)


def _resolutions_write(
    *, resolutions: Sequence[_Resolution], legs: Sequence[list[Leg]], target: str, kind: str, actor: Actor
) -> dict[int, Journal]:
    now = timezone.now()
    locks = [item.lock for item in resolutions]
    changed = LedgerLock.objects.filter(pk__in=[lock.pk for lock in locks], status=LockStatus.PENDING).update(
        status=target, resolved_at=now
    )
    if changed != len(locks):  # cannot happen under the row locks: the database disagrees with what was read
        raise LockNotPending(f"{len(locks) - changed} of {len(locks)} locks are no longer pending")
    for item in resolutions:
        (item.lock.mark_posted if target == LockStatus.POSTED else item.lock.mark_voided)()
        item.lock.resolved_at = now
        stamp_history(item.lock, actor=actor, reason=item.reason)
    lock_history_insert(
        ids=[lock.pk for lock in locks],
        reasons=[item.reason for item in resolutions],
        actor=actor,
        at=now,
        created=False,
    )
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    for journal_legs in legs:
        _deltas_add(deltas, ((leg.account.pk, leg.amount) for leg in journal_legs))
    try:  # no savepoint: a refusal rolls back the whole batch (the caller's atomic block)
        balances_apply(deltas)
    except IntegrityError as exc:  # the overdraft CHECK constraint: the database has the last word
        if not is_overdraft(exc):
            raise
        raise InsufficientFunds("the database refused a balance below zero", detail=str(exc)) from exc
    user = actor_user(actor)
    rows = journals_insert(
        kind=kind,
        lock_ids=[item.lock.pk for item in resolutions],
        memos=[item.reason for item in resolutions],
        legs=[
            (item.lock.pk, leg.account.pk, leg.account.asset_id, leg.amount)
            for item, journal_legs in zip(resolutions, legs, strict=True)
            for leg in journal_legs
        ],
        actor=actor,
        at=now,
    )
    by_lock = {
        lock_id: Journal(id=pk, kind=kind, reference=reference, memo=memo, lock_id=lock_id, actor=user, created_at=now)
        for pk, reference, memo, lock_id in rows
    }
    journals = [by_lock[item.lock.pk] for item in resolutions]
    for journal in journals:
        journal._state.adding = False
    entries = []
    for item, journal in zip(resolutions, journals, strict=True):
        item.lock.resolved_journal = journal
        metadata: dict[str, Decimal] = {"amount": item.lock.amount}
        if target == LockStatus.POSTED:
            metadata["posted"] = item.moved
        entries.append(LogEntry("ledgerlock", item.lock.pk, LockStatus.PENDING, target, item.reason, metadata))
    transition_log_append(entries=entries, actor=actor)
    return {item.lock.pk: journal for item, journal in zip(resolutions, journals, strict=True)}


def ledger_post_many(*, requests: Sequence[PostRequest], actor: Actor) -> dict[int, Journal]:
    """Post many pending locks, each as ``ledger_post`` would (``amount`` to ``to_account_id``, the
    ``extra`` legs in the same journal, the rest back to the available account): lock pk ->
    journal. ``LockNotPending`` when one is not pending (all are checked under one row lock first);
    ``InsufficientFunds`` or ``ValidationFailed`` refuse the whole batch (a caller's bug)."""
    if not requests:
        return {}
    with transaction.atomic():
        locks = _pending_locks([r.lock for r in requests], target=LockStatus.POSTED)
        resolutions = [
            _Resolution(lock=lock, to_account_id=r.to_account_id, moved=r.amount, extra=r.extra, reason=r.reason)
            for lock, r in zip(locks, requests, strict=True)
        ]
        return _resolve_many(resolutions=resolutions, target=LockStatus.POSTED, kind=JournalKind.POST, actor=actor)


def ledger_void_many(*, locks: Sequence[LedgerLock], actor: Actor, reason: str) -> dict[int, Journal]:
    """Void many pending locks, each as ``ledger_void`` would (locked value back to the available
    account): lock pk -> journal. ``LockNotPending`` when one is not pending."""
    if not locks:
        return {}
    with transaction.atomic():
        held = _pending_locks(locks, target=LockStatus.VOIDED)
        resolutions = [
            _Resolution(lock=lock, to_account_id=lock.available_account_id, moved=lock.amount, extra=(), reason=reason)
            for lock in held
        ]
        return _resolve_many(resolutions=resolutions, target=LockStatus.VOIDED, kind=JournalKind.VOID, actor=actor)
