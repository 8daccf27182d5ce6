"""Posting and voiding many pending ledger locks in a few statements (``ledger_post_many``,
``ledger_void_many``; import them from ``ledger.services.batch``).

Each lock is resolved as ``_resolve_lock`` resolves one: status and history, one journal with the
same legs (``resolution_legs``), the balances, the transition-log entry. The lock rows are locked
in one statement and checked first, then every account involved in one statement in primary-key
order; the checks run in Python in the callers' order against the locked balances, and a refusal
(not pending, a bad amount, a short account) refuses the whole batch: it is the caller's bug.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from common.actors import Actor, actor_user, stamp_history
from common.choices import JournalKind, LockStatus
from common.exceptions import InsufficientFunds, LockNotPending, ValidationFailed
from ledger.locking import lock_accounts, lock_ledger_locks
from ledger.models import Journal, LedgerLock
from ledger.services.audit import LogEntry, transition_log_append
from ledger.services.batch_rows import journals_insert, lock_history_insert
from ledger.services.legs import (
    Leg,
    balances_apply,
    check_balanced,
    deltas_add,
    is_overdraft,
    release_rest,
    resolution_legs,
    shortfall,
)


@dataclass(frozen=True)
class PostRequest:
    lock: LedgerLock  # pending; its accounts may be unloaded (ids are enough)
    to_account_id: int  # same asset
    amount: Decimal  # 0 <= amount <= lock.amount; the rest goes back to the lock's available account
    extra: tuple[tuple[int, Decimal], ...] = ()  # (account id, amount) legs in the same journal (fees)
    reason: str = "post"


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
        deltas = deltas_add({}, ((leg.account.pk, leg.amount) for leg in legs))
        for account_id, delta in deltas.items():  # one journal after the other, as one-by-one would
            short = shortfall(accounts[account_id], balance=balances[account_id], delta=delta)
            if short is not None:
                raise short
        deltas_add(balances, deltas.items())
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
        deltas_add(deltas, ((leg.account.pk, leg.amount) for leg in journal_legs))
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
