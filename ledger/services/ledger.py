"""Ledger services: the only code that moves value.

``ledger_deposit`` is the single way value enters the house (funding from outside, booked against
a system account that may go negative). Inside the house value moves only in two phases:
``ledger_lock`` (available → locked), then ``ledger_post`` (locked → counterparty) or
``ledger_void`` (locked → available).

Balances are changed by conditional UPDATEs on rows locked in primary-key order (no deadlocks
between two journals touching the same accounts). The CHECK constraint
``ledger_account_no_overdraft`` is the last word: if a balance would go below zero, PostgreSQL
refuses the UPDATE and the whole journal rolls back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.actors import Actor, actor_user, stamp_history
from common.choices import AccountKind, JournalKind, LockStatus
from common.exceptions import InsufficientFunds, LockNotPending, ValidationFailed
from ledger.locking import lock_accounts, lock_ledger_locks
from ledger.models import Journal, LedgerAccount, LedgerLock, Posting
from ledger.services.audit import LogEntry, transition_log_append
from ledger.services.legs import (
    Leg,
    balances_apply,
    check_balanced,
    is_overdraft,
    resolution_legs,
    shortfall,
    validate_amount,
)
from reference.models import Asset, Participant

EXTERNAL_FUNDING = "external-funding"
_OWNER_KINDS = (AccountKind.AVAILABLE, AccountKind.LOCKED)


def account_for(*, owner: Participant, asset: Asset, kind: str) -> LedgerAccount:
    account, _ = LedgerAccount.objects.get_or_create(owner=owner, asset=asset, kind=kind)
    account.asset = asset  # the caller's asset: no query when a journal reads its precision
    return account


def _owner_accounts(*, owner: Participant, asset: Asset) -> tuple[LedgerAccount, LedgerAccount]:
    """The owner's (available, locked) accounts of ``asset``: one query when both exist (they are
    created with the trade, see ``accounts_ensure``)."""
    found = {a.kind: a for a in LedgerAccount.objects.filter(owner=owner, asset=asset, kind__in=_OWNER_KINDS)}
    pair = []
    for kind in _OWNER_KINDS:
        account = found.get(kind) or account_for(owner=owner, asset=asset, kind=kind)
        account.asset = asset
        pair.append(account)
    return pair[0], pair[1]


def _owner_pair(accounts: tuple[LedgerAccount, LedgerAccount], *, owner: Participant, asset: Asset) -> bool:
    available, locked = accounts
    return (
        all(a.owner_id == owner.pk and a.asset_id == asset.pk for a in accounts)
        and (
            available.kind,
            locked.kind,
        )
        == _OWNER_KINDS
    )


def accounts_ensure(*, pairs: Iterable[tuple[int, int]]) -> None:
    """Create the available and locked accounts of (participant id, asset id) pairs that lack them.

    Called when trades arrive, so the settlement transactions later only lock existing rows:
    creating an account inside a settlement would take a unique-index lock outside the
    instruction → account → log-head lock order. Rows go in sorted order with ON CONFLICT DO
    NOTHING, so concurrent callers wait for each other in the same order and never deadlock.
    """
    wanted = {(owner, asset, kind) for owner, asset in pairs for kind in (AccountKind.AVAILABLE, AccountKind.LOCKED)}
    if not wanted:
        return
    # One read of what exists (a batch's parties mostly have their accounts), then insert the rest.
    have = LedgerAccount.objects.filter(
        owner_id__in={owner for owner, _, _ in wanted}, asset_id__in={asset for _, asset, _ in wanted}
    ).values_list("owner_id", "asset_id", "kind")
    keys = sorted(wanted - set(have))
    if not keys:
        return
    LedgerAccount.objects.bulk_create(
        [LedgerAccount(owner_id=owner, asset_id=asset, kind=kind) for owner, asset, kind in keys],
        ignore_conflicts=True,
    )


def system_account_for(*, code: str, asset: Asset, allow_negative: bool = True) -> LedgerAccount:
    """A house account (no owner). Funding and fee accounts may go negative; the central
    settlement account may not (``allow_negative=False`` when it is first created)."""
    account, _ = LedgerAccount.objects.get_or_create(
        owner=None,
        system_code=code,
        asset=asset,
        defaults={"kind": AccountKind.SYSTEM, "allow_negative": allow_negative},
    )
    account.asset = asset
    return account


def _journal_write(
    *, kind: str, reference: str, legs: Sequence[Leg], actor: Actor, memo: str = "", lock: LedgerLock | None = None
) -> Journal:
    """Write a balanced journal and apply it to balances. Runs inside the caller's transaction."""
    check_balanced(legs)
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    for leg in legs:
        deltas[leg.account.pk] += leg.amount
    locked = {a.pk: a for a in lock_accounts(deltas)}
    for account_id, delta in deltas.items():
        short = shortfall(locked[account_id], balance=locked[account_id].balance, delta=delta)
        if short is not None:
            raise short
    journal = Journal.objects.create(kind=kind, reference=reference, memo=memo, lock=lock, actor=actor_user(actor))
    Posting.objects.bulk_create(
        [
            Posting(journal=journal, account=leg.account, asset_id=leg.account.asset_id, amount=leg.amount)
            for leg in legs
        ]
    )
    try:  # every balance of the journal in one statement
        with transaction.atomic():
            balances_apply(deltas)
    except IntegrityError as exc:  # the overdraft CHECK constraint: the database has the last word
        if not is_overdraft(exc):
            raise
        raise InsufficientFunds("the database refused a balance below zero", detail=str(exc)) from exc
    return journal


def ledger_deposit(
    *, owner: Participant, asset: Asset, amount: Decimal, reference: str, actor: Actor, memo: str = ""
) -> Journal:
    """Credit value arriving from outside the house (funding). Idempotent by ``reference``."""
    validate_amount(asset, amount)
    with transaction.atomic():
        existing = Journal.objects.filter(reference=reference).first()
        if existing is not None:
            return existing
        source = system_account_for(code=EXTERNAL_FUNDING, asset=asset)
        target = account_for(owner=owner, asset=asset, kind=AccountKind.AVAILABLE)
        return _journal_write(
            kind=JournalKind.DEPOSIT,
            reference=reference,
            legs=[Leg(source, -amount), Leg(target, amount)],
            actor=actor,
            memo=memo or f"deposit {amount} {asset.code} to {owner.code}",
        )


def _lock_between(
    *,
    available: LedgerAccount,
    locked: LedgerAccount,
    amount: Decimal,
    reference: str,
    actor: Actor,
    expires_at: datetime | None,
    memo: str,
) -> LedgerLock:
    existing = LedgerLock.objects.filter(reference=reference).first()
    if existing is not None:
        return existing
    lock = LedgerLock(
        reference=reference,
        asset=available.asset,
        available_account=available,
        locked_account=locked,
        amount=amount,
        expires_at=expires_at or timezone.now() + settings.CLEARHOUSE_LOCK_TTL,
    )
    stamp_history(lock, actor=actor, reason="lock")
    lock.save()
    _journal_write(
        kind=JournalKind.LOCK,
        reference=f"{reference}:lock",
        legs=[Leg(available, -amount), Leg(locked, amount)],
        actor=actor,
        lock=lock,
        memo=memo,
    )
    return lock


def ledger_lock(
    *,
    owner: Participant,
    asset: Asset,
    amount: Decimal,
    reference: str,
    actor: Actor,
    expires_at: datetime | None = None,
    accounts: tuple[LedgerAccount, LedgerAccount] | None = None,
) -> LedgerLock:
    """Move ``amount`` from the owner's available to locked account. Idempotent by ``reference``.
    ``accounts``: the owner's (available, locked) accounts when the caller already holds them
    (checked, not looked up again).

    Raises ``InsufficientFunds`` (and writes nothing) when the available balance is short.
    """
    validate_amount(asset, amount)
    with transaction.atomic():
        if accounts is not None and _owner_pair(accounts, owner=owner, asset=asset):
            available, locked = accounts
        else:
            available, locked = _owner_accounts(owner=owner, asset=asset)
        return _lock_between(
            available=available,
            locked=locked,
            amount=amount,
            reference=reference,
            actor=actor,
            expires_at=expires_at,
            memo=f"lock {amount} {asset.code} of {owner.code}",
        )


def ledger_lock_system(
    *, code: str, asset: Asset, amount: Decimal, reference: str, actor: Actor, expires_at: datetime | None = None
) -> LedgerLock:
    """Lock ``amount`` of a house account that may not go negative (``code`` and ``code:locked``),
    e.g. the central settlement account before a pay-out leaves it. Idempotent by ``reference``."""
    validate_amount(asset, amount)
    with transaction.atomic():
        return _lock_between(
            available=system_account_for(code=code, asset=asset, allow_negative=False),
            locked=system_account_for(code=f"{code}:locked", asset=asset, allow_negative=False),
            amount=amount,
            reference=reference,
            actor=actor,
            expires_at=expires_at,
            memo=f"lock {amount} {asset.code} of {code}",
        )


def _lock_for_update(lock: LedgerLock) -> LedgerLock:
    return lock_ledger_locks(related=("available_account__asset", "locked_account__asset"), pk=lock.pk).get()


def _resolve_lock(
    *,
    lock: LedgerLock,
    target: str,
    to_account: LedgerAccount,
    actor: Actor,
    reason: str,
    journal_kind: str,
    amount: Decimal | None = None,
    extra_legs: Sequence[Leg] = (),
    log_entries: list[LogEntry] | None = None,
) -> LedgerLock:
    lock = _lock_for_update(lock)
    if lock.status != LockStatus.PENDING:
        raise LockNotPending(f"lock {lock.reference} is {lock.status}")
    moved = lock.amount if amount is None else amount
    if moved < 0 or moved > lock.amount:
        raise ValidationFailed(f"cannot post {moved} of a lock of {lock.amount}")
    from_status = lock.status
    if target == LockStatus.POSTED:
        lock.mark_posted()
    else:
        lock.mark_voided()
    lock.resolved_at = timezone.now()
    stamp_history(lock, actor=actor, reason=reason)
    lock.save(update_fields=("status", "resolved_at"))
    legs = resolution_legs(
        amount=lock.amount,
        moved=moved,
        locked=lock.locked_account,
        to_account=to_account,
        available=lock.available_account,
        extra_legs=extra_legs,
    )
    lock.resolved_journal = _journal_write(
        kind=journal_kind,
        reference=f"{lock.reference}:{journal_kind}",
        legs=legs,
        actor=actor,
        lock=lock,
        memo=reason,
    )
    metadata = {"amount": lock.amount, "posted": moved} if target == LockStatus.POSTED else {"amount": lock.amount}
    entry = LogEntry("ledgerlock", lock.pk, from_status, lock.status, reason, metadata)
    if log_entries is not None:  # the caller appends it with its own entries (one head lock)
        log_entries.append(entry)
    else:
        transition_log_append(entries=[entry], actor=actor)
    return lock


def ledger_post(
    *,
    lock: LedgerLock,
    to_account: LedgerAccount,
    actor: Actor,
    reason: str = "post",
    amount: Decimal | None = None,
    extra_legs: Sequence[Leg] = (),
    log_entries: list[LogEntry] | None = None,
) -> LedgerLock:
    """Complete a pending lock: locked value goes to ``to_account`` (same asset).

    With ``amount`` smaller than the lock, only that much is posted and the rest returns to the
    owner's available account in the same journal (e.g. a network-fee reserve of which only the
    actual fee is spent). ``extra_legs`` join the same journal (fees to the revenue account, or
    back from it on a reversal); what the lock holds beyond ``amount`` and their sum is released.
    With ``log_entries`` the lock's transition-log entry is added to that list for the caller to
    append with its own (in the same transaction), instead of being appended here.
    """
    if to_account.asset_id != lock.asset_id:
        raise ValidationFailed("a lock posts only to an account of its own asset")
    with transaction.atomic():
        return _resolve_lock(
            lock=lock,
            target=LockStatus.POSTED,
            to_account=to_account,
            actor=actor,
            reason=reason,
            journal_kind=JournalKind.POST,
            amount=amount,
            extra_legs=extra_legs,
            log_entries=log_entries,
        )


def ledger_post_journal(lock: LedgerLock) -> Journal:
    """The journal that posted ``lock`` (for records that point at it, e.g. fee charges); no query
    on the lock object ``ledger_post`` returned."""
    written = getattr(lock, "resolved_journal", None)
    if written is not None and written.kind == JournalKind.POST:
        return written
    return Journal.objects.get(lock=lock, kind=JournalKind.POST)


def ledger_void(*, lock: LedgerLock, actor: Actor, reason: str) -> LedgerLock:
    """Cancel a pending lock: locked value goes back to the owner's available account."""
    with transaction.atomic():
        return _resolve_lock(
            lock=lock,
            target=LockStatus.VOIDED,
            to_account=lock.available_account,
            actor=actor,
            reason=reason,
            journal_kind=JournalKind.VOID,
        )


def _journal_between(
    *, kind: str, debit: LedgerAccount, credit: LedgerAccount, amount: Decimal, reference: str, actor: Actor, memo: str
) -> Journal:
    if debit.asset_id != credit.asset_id:
        raise ValidationFailed("a journal between two accounts moves one asset")
    validate_amount(debit.asset, amount)
    with transaction.atomic():
        existing = Journal.objects.filter(reference=reference).first()
        if existing is not None:
            return existing
        return _journal_write(
            kind=kind,
            reference=reference,
            legs=[Leg(debit, -amount), Leg(credit, amount)],
            actor=actor,
            memo=memo[:255],
        )


def ledger_adjust(
    *, debit: LedgerAccount, credit: LedgerAccount, amount: Decimal, reference: str, actor: Actor, memo: str
) -> Journal:
    """A correcting journal between two accounts of one asset (reconciliation adjustments and
    write-offs, posted only once a second person approved them). Idempotent by ``reference``;
    the no-overdraft rule holds as for every journal."""
    return _journal_between(
        kind=JournalKind.ADJUST, debit=debit, credit=credit, amount=amount, reference=reference, actor=actor, memo=memo
    )


def ledger_charge(
    *, debit: LedgerAccount, credit: LedgerAccount, amount: Decimal, reference: str, actor: Actor, memo: str
) -> Journal:
    """A charge passed on to a participant (a bank's charges on its payment): its available
    account to a house cost account. Idempotent by ``reference``; refused, like any journal, when
    the participant does not hold the amount."""
    return _journal_between(
        kind=JournalKind.FEE, debit=debit, credit=credit, amount=amount, reference=reference, actor=actor, memo=memo
    )
