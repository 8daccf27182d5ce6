"""The set-based ledger batch (``ledger.services.batch``) against the single-item services: the same
outcome, rows and balances as one-by-one processing, in a constant number of statements."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from common.choices import AccountKind, LockStatus
from common.exceptions import InsufficientFunds, LockNotPending
from ledger.models import Journal, LedgerAccount, LedgerLock, Posting, TransitionLog, TransitionLogHead
from ledger.services.audit import transition_log_deferred
from ledger.services.batch import (
    HoldRequest,
    PostRequest,
    ledger_lock_many,
    ledger_post_many,
    ledger_void_many,
)
from ledger.services.ledger import Leg, account_for, ledger_lock, ledger_post, ledger_void, system_account_for
from reference.models import Asset, Participant
from tests.factories import ACTOR, ParticipantFactory, UserFactory, fund

pytestmark = pytest.mark.django_db

LOCK_BUDGET = 10
RESOLVE_BUDGET = 11
EXPIRES = datetime(2031, 1, 1, tzinfo=UTC)
CENT = Decimal("0.01")


class _Undo(Exception):
    pass


def rolled_back(run: Callable[[], Any]) -> Any:
    """What ``run`` returns, with everything it wrote rolled back."""
    box = []
    try:
        with transaction.atomic():
            box.append(run())
            raise _Undo
    except _Undo:
        pass
    return box[0]


def _key(account: LedgerAccount) -> tuple[str, str, str]:
    return (account.owner.code if account.owner_id else account.system_code, account.asset.code, account.kind)


def ledger_state() -> dict[str, Any]:
    """The ledger by natural keys (ids differ between two runs): non-zero balances, locks, journals
    with their postings, lock history and the locks' transition-log entries in append order."""
    accounts = {a.pk: _key(a) for a in LedgerAccount.objects.select_related("owner", "asset")}
    refs = dict(LedgerLock.objects.values_list("pk", "reference"))
    postings: dict[int, list[tuple[Any, Decimal]]] = {}
    for journal_id, account_id, amount in Posting.objects.values_list("journal_id", "account_id", "amount"):
        postings.setdefault(journal_id, []).append((accounts[account_id], amount))
    return {
        "balances": {
            accounts[pk]: balance for pk, balance in LedgerAccount.objects.values_list("pk", "balance") if balance
        },
        "locks": {
            lock.reference: (
                lock.amount,
                lock.status,
                accounts[lock.available_account_id],
                accounts[lock.locked_account_id],
                lock.asset_id,
                lock.expires_at,
                lock.resolved_at is not None,
            )
            for lock in LedgerLock.objects.all()
        },
        "journals": sorted(
            (j.kind, j.reference, refs.get(j.lock_id), j.memo, j.actor_id, tuple(sorted(postings.get(j.pk, []))))
            for j in Journal.objects.all()
        ),
        "history": sorted(
            (h.reference, h.history_type, h.status, h.history_change_reason, h.history_user_id, h.amount)
            for h in LedgerLock.history.all()
        ),
        "log": [
            (refs[t.entity_id], t.from_status, t.to_status, t.reason, t.metadata, t.actor_label)
            for t in TransitionLog.objects.filter(entity_type="ledgerlock").order_by("id")
        ],
    }


def one_by_one_locks(requests: list[HoldRequest], *, actor: Any) -> tuple[set[str], set[int]]:
    """The oracle: for each group in order, a savepoint with ``ledger_lock`` of each of its
    requests, rolled back on InsufficientFunds."""
    groups: dict[int, list[HoldRequest]] = {}
    for request in requests:
        groups.setdefault(request.group, []).append(request)
    locked: set[str] = set()
    failed: set[int] = set()
    for group, items in groups.items():
        try:
            with transaction.atomic():
                for r in items:
                    ledger_lock(
                        owner=Participant.objects.get(pk=r.owner_id),
                        asset=Asset.objects.get(pk=r.asset_id),
                        amount=r.amount,
                        reference=r.reference,
                        actor=actor,
                        expires_at=r.expires_at,
                    )
        except InsufficientFunds:
            failed.add(group)
        else:
            locked.update(r.reference for r in items)
    return locked, failed


# --- the property ----------------------------------------------------------------------------------

hold = st.tuples(
    st.integers(0, 3),  # participant
    st.integers(0, 1),  # asset
    st.integers(1, 1200),  # cents
    st.sampled_from(["new", "new", "new", "pre", "dup"]),  # reference
    st.sampled_from(["none", "post", "void"]),  # what phase two does with the lock
    st.integers(0, 100),  # percent of the lock posted
    st.integers(0, 3),  # to whom
    st.integers(0, 300),  # fee in cents (capped by the rest)
)
scenario = st.fixed_dictionaries(
    {
        "balances": st.lists(st.integers(0, 4000), min_size=8, max_size=8),
        "groups": st.lists(st.lists(hold, min_size=1, max_size=3), min_size=1, max_size=8),
        "pre": st.integers(1, 400),
    }
)


def _requests(groups: list[list[tuple[Any, ...]]], people: list[Any], assets: list[Any]) -> list[HoldRequest]:
    requests = []
    for g, holds in enumerate(groups):
        for h, (who, asset, cents, ref, *_rest) in enumerate(holds):
            reference = {"new": f"g{g}-{h}", "pre": "pre", "dup": f"dup{asset}-{who}"}[ref]
            requests.append(
                HoldRequest(
                    group=100 + g,
                    owner_id=people[who].pk,
                    asset_id=assets[asset].pk,
                    amount=Decimal(cents) * CENT,
                    reference=reference,
                    expires_at=EXPIRES,
                )
            )
    return requests


def _phase_two(requests: list[HoldRequest], groups: list[list[tuple[Any, ...]]], people: list[Any]) -> list[Any]:
    """The posts and voids of the scenario over the pending locks it made: (kind, lock, to, moved, fee)."""
    actions = [h for holds in groups for h in holds]
    plans: dict[str, Any] = {}
    locks = LedgerLock.objects.select_related("asset").in_bulk([r.reference for r in requests], field_name="reference")
    for request, (_, _, _, _, action, percent, to, fee_cents) in zip(requests, actions, strict=True):
        lock = locks.get(request.reference)
        if action == "none" or lock is None or lock.status != LockStatus.PENDING or lock.reference in plans:
            continue
        moved = (lock.amount * percent / 100).quantize(CENT, rounding=ROUND_DOWN)
        fee = min(Decimal(fee_cents) * CENT, lock.amount - moved)
        target = account_for(owner=people[to], asset=lock.asset, kind=AccountKind.AVAILABLE)
        plans[lock.reference] = (action, lock, target, moved, fee, system_account_for(code="fees", asset=lock.asset))
    return list(plans.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenario)
def test_ledger_batch_equals_one_by_one(usd, btc, case):
    """Property: lock_many (pre-checked, and with the database deciding) gives the outcome, rows and
    balances of one savepoint per group with ledger_lock; post_many and void_many of random subsets
    give those of ledger_post and ledger_void one by one."""
    with transaction.atomic():
        # given: four participants with random balances of two assets, one existing lock
        actor = UserFactory(username="batcher")
        assets = [usd, btc]
        people = [ParticipantFactory(code=f"Q{n}") for n in range(4)]
        for n, cents in enumerate(case["balances"]):
            owner, asset = people[n % 4], assets[n // 4]
            account_for(owner=owner, asset=asset, kind=AccountKind.AVAILABLE)
            if cents:
                fund(owner, asset, str(Decimal(cents) * CENT), reference=f"f{n}")
        with contextlib.suppress(InsufficientFunds):
            ledger_lock(owner=people[0], asset=usd, amount=Decimal(case["pre"]) * CENT, reference="pre", actor=ACTOR)
        requests = _requests(case["groups"], people, assets)

        def batch(precheck: bool) -> Any:
            outcome = ledger_lock_many(requests=requests, actor=actor, precheck=precheck)
            assert all(reason.startswith("insufficient funds: ") for reason in outcome.failed.values())
            after_locks = ledger_state()
            plans = _phase_two(requests, case["groups"], people)
            posts = [
                PostRequest(p[1], p[2].pk, p[3], ((p[5].pk, p[4]),) if p[4] else ()) for p in plans if p[0] == "post"
            ]
            voids = [p[1] for p in plans if p[0] == "void"]
            with transition_log_deferred():
                posted = ledger_post_many(requests=posts, actor=actor)
                voided = ledger_void_many(locks=voids, actor=actor, reason="void it")
            assert set(posted) == {r.lock.pk for r in posts}
            assert {j.lock_id for j in posted.values()} == set(posted)
            assert set(voided) == {lock.pk for lock in voids}
            return set(outcome.locks), set(outcome.failed), after_locks, ledger_state()

        def oracle() -> Any:
            locked, failed = one_by_one_locks(requests, actor=actor)
            after_locks = ledger_state()
            plans = _phase_two(requests, case["groups"], people)
            for _, lock, target, moved, fee, fees in (p for p in plans if p[0] == "post"):
                extra = [Leg(fees, fee)] if fee else []
                ledger_post(lock=lock, to_account=target, actor=actor, amount=moved, extra_legs=extra)
            for _, lock, *_rest in (p for p in plans if p[0] == "void"):
                ledger_void(lock=lock, actor=actor, reason="void it")
            return locked, failed, after_locks, ledger_state()

        # when
        expected = rolled_back(oracle)
        got = rolled_back(lambda: batch(True))
        decided_by_database = rolled_back(lambda: batch(False))
        # then
        event(f"failed groups: {min(len(expected[1]), 2)}, locks: {min(len(expected[0]), 3)}")
        event(f"journals after phase two: {min(len(expected[3]['journals']) - len(expected[2]['journals']), 3)}")
        assert got[:2] == expected[:2]
        assert got[2] == expected[2]
        assert got[3] == expected[3]
        assert decided_by_database == got
        transaction.set_rollback(True)


# --- bisection, idempotency, query counts ------------------------------------------------------------


def _holds(people: list[Any], asset: Any, *, amount: str = "1.00", prefix: str = "h") -> list[HoldRequest]:
    return [
        HoldRequest(
            group=n,
            owner_id=p.pk,
            asset_id=asset.pk,
            amount=Decimal(amount),
            reference=f"{prefix}{n}",
            expires_at=EXPIRES,
        )
        for n, p in enumerate(people)
    ]


def _rollbacks(queries: CaptureQueriesContext) -> int:
    return sum(1 for q in queries.captured_queries if q["sql"].startswith("ROLLBACK TO SAVEPOINT"))


def test_ledger_lock_many_bisects_when_the_database_refuses(usd):
    # given: 64 groups of 32 participants holding 2.00 each, one (the 13th) holding 1.00 only
    people = [ParticipantFactory(code=f"B{n:02d}") for n in range(32)]
    for n, p in enumerate(people):
        fund(p, usd, "1.00" if n == 13 else "2.00")
    requests = _holds(people + people, usd)  # groups 13 and 45 hold 1.00 of the short participant each
    # when: no pre-check, the CHECK constraint decides
    with CaptureQueriesContext(connection) as queries:
        outcome = ledger_lock_many(requests=requests, actor=ACTOR, precheck=False)
    # then: only the short participant's second group fails, as one by one would
    assert set(outcome.failed) == {45}
    assert outcome.failed[45] == "insufficient funds: B13/USD/available holds 0.00, needs 1.00"
    assert len(outcome.locks) == 63 and "h45" not in outcome.locks
    assert LedgerLock.objects.filter(reference__startswith="h").count() == 63
    assert LedgerAccount.objects.get(owner=people[13], kind=AccountKind.AVAILABLE).balance == 0
    assert LedgerAccount.objects.get(owner=people[13], kind=AccountKind.LOCKED).balance == Decimal("1.00")
    assert 1 <= _rollbacks(queries) <= 2 * 6  # one failing group among 64: about one refusal per level
    # and the pre-checked path gives the same with no refusal at all
    for n, p in enumerate(people):
        fund(p, usd, "1.00" if n == 13 else "2.00", reference=f"again{n}")
    with CaptureQueriesContext(connection) as queries:
        again = ledger_lock_many(requests=_holds(people + people, usd, prefix="x"), actor=ACTOR)
    assert again.failed == outcome.failed
    assert _rollbacks(queries) == 0


def test_ledger_lock_many_is_idempotent_by_reference(alice, bob, usd):
    # given
    fund(alice, usd, "10.00")
    fund(bob, usd, "10.00")
    requests = _holds([alice, bob, alice], usd, amount="3.00")
    first = ledger_lock_many(requests=requests, actor=ACTOR)
    counts = (LedgerLock.objects.count(), Journal.objects.count(), Posting.objects.count(), LedgerLock.history.count())
    # when
    second = ledger_lock_many(requests=requests, actor=ACTOR)
    # then: nothing new, the same locks
    assert (LedgerLock.objects.count(), Journal.objects.count(), Posting.objects.count()) == counts[:3]
    assert LedgerLock.history.count() == counts[3]
    assert {r: lock.pk for r, lock in second.locks.items()} == {r: lock.pk for r, lock in first.locks.items()}
    assert not second.failed
    assert LedgerAccount.objects.get(owner=alice, kind=AccountKind.AVAILABLE).balance == Decimal("4.00")


def test_ledger_lock_many_creates_missing_accounts(alice, usd):
    # given: alice has no locked account yet (a deposit makes the available one only)
    fund(alice, usd, "5.00")
    assert not LedgerAccount.objects.filter(owner=alice, kind=AccountKind.LOCKED).exists()
    # when
    outcome = ledger_lock_many(requests=_holds([alice], usd), actor=ACTOR)
    # then
    assert outcome.locks["h0"].status == LockStatus.PENDING
    assert LedgerAccount.objects.get(owner=alice, kind=AccountKind.LOCKED).balance == Decimal("1.00")


def _queries(run: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as queries:
        run()
    return len(queries.captured_queries)


def test_ledger_batch_costs_the_same_queries_for_10_and_200(usd, django_assert_max_num_queries):
    # given
    people = [ParticipantFactory(code=f"C{n:03d}") for n in range(200)]
    for p in people:
        fund(p, usd, "5.00")
        account_for(owner=p, asset=usd, kind=AccountKind.LOCKED)
    to = account_for(owner=people[0], asset=usd, kind=AccountKind.AVAILABLE)
    TransitionLogHead.objects.get_or_create(pk=1)
    small, large = _holds(people[:10], usd, prefix="s"), _holds(people, usd, prefix="l")
    # when / then: lock
    with django_assert_max_num_queries(LOCK_BUDGET):
        ledger_lock_many(requests=small, actor=ACTOR)
    assert _queries(lambda: ledger_lock_many(requests=large, actor=ACTOR)) == _queries(
        lambda: ledger_lock_many(requests=_holds(people[:10], usd, prefix="t"), actor=ACTOR)
    )
    ledger_lock_many(requests=_holds(people, usd, prefix="u"), actor=ACTOR)
    # post and void
    locks = {lock.reference: lock for lock in LedgerLock.objects.all()}

    def post(holds: list[HoldRequest]) -> None:
        ledger_post_many(requests=[PostRequest(locks[r.reference], to.pk, Decimal("0.40")) for r in holds], actor=ACTOR)

    with django_assert_max_num_queries(RESOLVE_BUDGET):
        post(small)
    assert _queries(lambda: post(large)) == _queries(lambda: post(_holds(people[:10], usd, prefix="t")))
    with django_assert_max_num_queries(RESOLVE_BUDGET):
        ledger_void_many(locks=[locks[f"u{n}"] for n in range(10)], actor=ACTOR, reason="v")
    assert (
        _queries(lambda: ledger_void_many(locks=[locks[f"u{n}"] for n in range(10, 200)], actor=ACTOR, reason="v"))
        == RESOLVE_BUDGET
    )


def test_ledger_post_many_refuses_a_lock_not_pending_and_writes_nothing(alice, bob, usd):
    # given
    fund(alice, usd, "10.00")
    outcome = ledger_lock_many(requests=_holds([alice, alice], usd), actor=ACTOR)
    ledger_void(lock=outcome.locks["h1"], actor=ACTOR, reason="gone")
    to = account_for(owner=bob, asset=usd, kind=AccountKind.AVAILABLE)
    journals = Journal.objects.count()
    # when / then
    with pytest.raises(LockNotPending, match="h1 is voided"):
        ledger_post_many(
            requests=[PostRequest(outcome.locks[r], to.pk, Decimal("1")) for r in ("h0", "h1")], actor=ACTOR
        )
    with pytest.raises(LockNotPending, match="h0 is voided"):
        ledger_void_many(locks=[outcome.locks["h0"], outcome.locks["h0"]], actor=ACTOR, reason="twice")
    assert Journal.objects.count() == journals
    assert LedgerLock.objects.get(reference="h0").status == LockStatus.PENDING


def test_lock_history_insert_copies_every_column_of_a_lock():
    from ledger.services.batch_rows import LOCK_COLUMNS

    assert set(LOCK_COLUMNS) == {f.column for f in LedgerLock._meta.concrete_fields}
    tracked = {f.column for f in LedgerLock.history.model._meta.concrete_fields if not f.name.startswith("history_")}
    assert tracked == set(LOCK_COLUMNS)


@pytest.mark.django_db(transaction=True)
def test_ledger_lock_many_concurrent_batches_never_overspend_nor_deadlock(alice, bob, usd):
    """Four threads, each with its own connection, lock batches over the same two accounts in
    opposite orders at the same moment: the accounts are locked in pk order once per batch, so
    none deadlocks, and only what the balances hold is locked."""
    import threading

    # given
    fund(alice, usd, "35.00")
    fund(bob, usd, "35.00")
    barrier = threading.Barrier(4)
    locked: list[int] = []
    guard = threading.Lock()

    def batch(n: int) -> None:
        people = [alice, bob] if n % 2 else [bob, alice]
        requests = [
            HoldRequest(g, people[g % 2].pk, usd.pk, Decimal("10.00"), f"race{n}-{g}", EXPIRES) for g in range(4)
        ]
        try:
            barrier.wait()
            outcome = ledger_lock_many(requests=requests, actor=ACTOR)
        finally:
            connection.close()
        with guard:
            locked.append(len(outcome.locks))

    # when
    threads = [threading.Thread(target=batch, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: three holds of 10.00 fit each 35.00
    assert sum(locked) == 6
    for owner in (alice, bob):
        assert LedgerAccount.objects.get(owner=owner, kind=AccountKind.AVAILABLE).balance == Decimal("5.00")
        assert LedgerAccount.objects.get(owner=owner, kind=AccountKind.LOCKED).balance == Decimal("30.00")
