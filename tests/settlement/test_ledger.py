from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.choices import AccountKind, JournalKind, LockStatus
from common.exceptions import InsufficientFunds, LockNotPending, UnbalancedJournal, ValidationFailed
from ledger.models import Journal, LedgerAccount, LedgerLock, Posting
from ledger.services.ledger import (
    Leg,
    _journal_write,
    account_for,
    ledger_deposit,
    ledger_lock,
    ledger_post,
    ledger_void,
)
from tests.factories import ACTOR, fund

pytestmark = pytest.mark.django_db


def balance(owner, asset, kind=AccountKind.AVAILABLE) -> Decimal:
    return LedgerAccount.objects.get(owner=owner, asset=asset, kind=kind).balance


def assert_ledger_consistent():
    """Every balance equals the sum of its postings, every journal sums to zero per asset,
    and the whole house sums to zero per asset (system accounts included)."""
    for account in LedgerAccount.objects.all():
        posted = account.postings.aggregate(total=Sum("amount"))["total"] or Decimal(0)
        assert account.balance == posted, account
        if not account.allow_negative:
            assert account.balance >= 0, account
    unbalanced = Posting.objects.values("journal_id", "asset_id").annotate(t=Sum("amount")).exclude(t=0)
    assert not unbalanced.exists()
    per_asset = LedgerAccount.objects.values("asset_id").annotate(t=Sum("balance")).exclude(t=0)
    assert not per_asset.exists()


def test_ledger_lock_post_moves_value_in_two_phases(alice, bob, usd):
    # given
    fund(alice, usd, "100.00")
    # when
    lock = ledger_lock(owner=alice, asset=usd, amount=Decimal("30.25"), reference="L1", actor=ACTOR)
    # then
    assert balance(alice, usd) == Decimal("69.75")
    assert balance(alice, usd, AccountKind.LOCKED) == Decimal("30.25")
    # when
    ledger_post(lock=lock, to_account=account_for(owner=bob, asset=usd, kind=AccountKind.AVAILABLE), actor=ACTOR)
    # then
    assert balance(alice, usd, AccountKind.LOCKED) == 0
    assert balance(bob, usd) == Decimal("30.25")
    assert LedgerLock.objects.get(pk=lock.pk).status == LockStatus.POSTED
    assert_ledger_consistent()


def test_ledger_void_returns_locked_value(alice, usd):
    fund(alice, usd, "10.00")
    lock = ledger_lock(owner=alice, asset=usd, amount=Decimal("4"), reference="L1", actor=ACTOR)
    ledger_void(lock=lock, actor=ACTOR, reason="cancelled")
    assert balance(alice, usd) == Decimal("10.00")
    assert balance(alice, usd, AccountKind.LOCKED) == 0
    with pytest.raises(LockNotPending):
        ledger_post(lock=lock, to_account=account_for(owner=alice, asset=usd, kind=AccountKind.AVAILABLE), actor=ACTOR)
    assert_ledger_consistent()


def test_ledger_lock_insufficient_funds_writes_nothing(alice, usd):
    fund(alice, usd, "5.00")
    journals = Journal.objects.count()
    with pytest.raises(InsufficientFunds):
        ledger_lock(owner=alice, asset=usd, amount=Decimal("5.01"), reference="L1", actor=ACTOR)
    assert Journal.objects.count() == journals
    assert not LedgerLock.objects.exists()
    assert balance(alice, usd) == Decimal("5.00")


def test_ledger_lock_is_idempotent_by_reference(alice, usd):
    fund(alice, usd, "10.00")
    first = ledger_lock(owner=alice, asset=usd, amount=Decimal("3"), reference="L1", actor=ACTOR)
    again = ledger_lock(owner=alice, asset=usd, amount=Decimal("3"), reference="L1", actor=ACTOR)
    assert first.pk == again.pk
    assert balance(alice, usd) == Decimal("7.00")


def test_ledger_deposit_is_idempotent_by_reference(alice, usd):
    ledger_deposit(owner=alice, asset=usd, amount=Decimal("1"), reference="D1", actor=ACTOR)
    ledger_deposit(owner=alice, asset=usd, amount=Decimal("1"), reference="D1", actor=ACTOR)
    assert balance(alice, usd) == Decimal("1.00")


def test_ledger_refuses_amounts_beyond_asset_precision(alice, usd):
    fund(alice, usd, "10.00")
    with pytest.raises(ValidationFailed):
        ledger_lock(owner=alice, asset=usd, amount=Decimal("0.001"), reference="L1", actor=ACTOR)


def test_journal_write_refuses_unbalanced_postings(alice, bob, usd):
    fund(alice, usd, "10.00")
    a = account_for(owner=alice, asset=usd, kind=AccountKind.AVAILABLE)
    b = account_for(owner=bob, asset=usd, kind=AccountKind.AVAILABLE)
    with pytest.raises(UnbalancedJournal), transaction.atomic():
        _journal_write(
            kind=JournalKind.POST, reference="X", legs=[Leg(a, Decimal("-2")), Leg(b, Decimal("1"))], actor=ACTOR
        )
    assert not Journal.objects.filter(reference="X").exists()


@pytest.mark.django_db(transaction=True)
def test_database_refuses_unbalanced_journal_at_commit(alice, usd):
    # given: a journal written around the service, straight into the tables
    fund(alice, usd, "10.00")
    account = account_for(owner=alice, asset=usd, kind=AccountKind.AVAILABLE)
    # when / then: the deferred constraint trigger refuses the commit
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        journal = Journal.objects.create(kind=JournalKind.POST, reference="raw")
        Posting.objects.create(journal=journal, account=account, asset=usd, amount=Decimal("1"))
    assert not Journal.objects.filter(reference="raw").exists()


def test_database_refuses_negative_balance(alice, usd):
    fund(alice, usd, "1.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(owner=alice, kind=AccountKind.AVAILABLE).update(balance=Decimal("-0.01"))


@pytest.mark.parametrize("statement", ["UPDATE {t} SET amount = amount * 2", "DELETE FROM {t}"])
def test_postings_are_append_only(alice, usd, statement):
    fund(alice, usd, "1.00")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement.format(t="settlement_posting"))


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2)
operations = st.lists(
    st.tuples(st.sampled_from(["deposit", "lock", "post", "void"]), st.integers(0, 2), st.integers(0, 2), amounts),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_ledger_invariants_hold_after_random_operations(alice, bob, carol, usd, ops):
    """Property: whatever sequence of deposits, locks, posts and voids is attempted (many of them
    refused), balances equal their postings, journals balance and nothing non-overdraft is negative."""
    people = [alice, bob, carol]
    with transaction.atomic():
        pending: list[LedgerLock] = []
        for n, (op, who, to, amount) in enumerate(ops):
            try:
                if op == "deposit":
                    ledger_deposit(owner=people[who], asset=usd, amount=amount, reference=f"h{n}", actor=ACTOR)
                elif op == "lock":
                    pending.append(
                        ledger_lock(owner=people[who], asset=usd, amount=amount, reference=f"h{n}", actor=ACTOR)
                    )
                elif op == "post" and pending:
                    target = account_for(owner=people[to], asset=usd, kind=AccountKind.AVAILABLE)
                    ledger_post(lock=pending.pop(who % len(pending)), to_account=target, actor=ACTOR)
                elif op == "void" and pending:
                    ledger_void(lock=pending.pop(who % len(pending)), actor=ACTOR, reason="property test")
            except InsufficientFunds:
                pass
        assert_ledger_consistent()
        transaction.set_rollback(True)


@pytest.mark.django_db(transaction=True)
def test_concurrent_overspend_only_affordable_locks_succeed(alice, usd):
    """Twenty threads, each with its own PostgreSQL connection, try to lock 10.00 from an account
    holding 75.00 at the same moment: exactly seven succeed and the balance ends at 5.00."""
    # given
    fund(alice, usd, "75.00")
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    guard = threading.Lock()

    def attempt(n: int) -> None:
        try:
            barrier.wait()
            ledger_lock(owner=alice, asset=usd, amount=Decimal("10.00"), reference=f"race-{n}", actor=ACTOR)
            result = "ok"
        except InsufficientFunds:
            result = "refused"
        finally:
            connection.close()
        with guard:
            outcomes.append(result)

    # when
    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert outcomes.count("ok") == 7
    assert outcomes.count("refused") == 13
    assert balance(alice, usd) == Decimal("5.00")
    assert balance(alice, usd, AccountKind.LOCKED) == Decimal("70.00")
    assert_ledger_consistent()


posting_sets = st.lists(
    st.tuples(st.integers(0, 3), st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000"), places=2)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(postings=posting_sets)
def test_random_journals_are_written_only_when_they_balance_per_asset(alice, bob, usd, btc, postings):
    """Property: a journal of random postings over accounts in two assets is written iff every
    asset's postings sum to zero; a refused one leaves no journal and no balance change."""
    accounts = [
        account_for(owner=alice, asset=usd, kind=AccountKind.LOCKED),
        account_for(owner=bob, asset=usd, kind=AccountKind.LOCKED),
        account_for(owner=alice, asset=btc, kind=AccountKind.LOCKED),
        account_for(owner=bob, asset=btc, kind=AccountKind.LOCKED),
    ]
    for account in accounts:  # overdraft allowed here: this property is about balancing only
        LedgerAccount.objects.filter(pk=account.pk).update(allow_negative=True)
        account.allow_negative = True
    legs = [Leg(accounts[i], amount) for i, amount in postings if amount != 0]
    sums: dict[int, Decimal] = {}
    for leg in legs:
        sums[leg.account.asset_id] = sums.get(leg.account.asset_id, Decimal(0)) + leg.amount
    balanced = len(legs) >= 2 and all(total == 0 for total in sums.values())
    with transaction.atomic():
        before = Journal.objects.count()
        try:
            with transaction.atomic():
                _journal_write(kind=JournalKind.POST, reference="random", legs=legs, actor=ACTOR)
            written = True
        except UnbalancedJournal:
            written = False
        assert written == balanced
        assert Journal.objects.count() == before + int(written)
        if written:
            assert_ledger_consistent()
        transaction.set_rollback(True)
