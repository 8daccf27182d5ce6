from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from common.choices import AccountKind, InstructionStatus, Leg, LockStatus
from common.exceptions import IllegalTransition, InsufficientFunds
from ledger.models import Journal, LedgerAccount, LedgerLock, TransitionLog
from settlement.models import SettlementInstruction
from settlement.services.instructions import (
    instruction_cancel,
    instruction_fail,
    instruction_lock,
    instruction_retry,
    instruction_reverse,
    instruction_settle,
    instruction_start_processing,
    locks_void_expired,
    trade_reverse,
    trade_settle_internal,
)
from tests.factories import ACTOR, fund, trade

pytestmark = pytest.mark.django_db
S = InstructionStatus


def available(owner, asset) -> Decimal:
    account = LedgerAccount.objects.filter(owner=owner, asset=asset, kind=AccountKind.AVAILABLE).first()
    return account.balance if account else Decimal(0)


def test_instruction_transition_table_is_exactly_the_documented_one():
    transitions = {
        (t.source, t.target)
        for t in SettlementInstruction._meta.get_field("status").get_all_transitions(SettlementInstruction)
    }
    assert transitions == {
        (S.PENDING, S.LOCKED),
        (S.LOCKED, S.PROCESSING),
        (S.PROCESSING, S.SETTLED),
        (S.PENDING, S.SETTLED),  # a netted leg, when its window's payments have all settled
        (S.PENDING, S.FAILED),
        (S.LOCKED, S.FAILED),
        (S.PROCESSING, S.FAILED),
        (S.FAILED, S.PENDING),
        (S.PENDING, S.CANCELLED),
        (S.LOCKED, S.CANCELLED),
        (S.FAILED, S.CANCELLED),
        (S.SETTLED, S.REVERSED),
    }


def test_status_field_cannot_be_assigned_directly(alice, bob, btc_usd):
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    instruction = t.instructions.get(leg=Leg.DELIVERY)
    with pytest.raises(AttributeError):
        instruction.status = S.SETTLED


def test_trade_creates_delivery_and_payment_legs(alice, bob, btc_usd):
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="0.5", price="65000.01")
    delivery = t.instructions.get(leg=Leg.DELIVERY)
    payment = t.instructions.get(leg=Leg.PAYMENT)
    assert (delivery.asset.code, delivery.payer, delivery.payee, delivery.amount) == ("BTC", bob, alice, Decimal("0.5"))
    # 0.5 x 65000.01 = 32500.005 -> banker's rounding to 2 places
    assert (payment.asset.code, payment.payer, payment.payee, payment.amount) == (
        "USD",
        alice,
        bob,
        Decimal("32500.00"),
    )
    assert delivery.settlement_date == payment.settlement_date == t.settlement_date
    assert delivery.history.count() == 1


def test_full_lifecycle_is_logged_and_in_history(alice, bob, btc, btc_usd):
    # given
    fund(bob, btc, "2")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1.5", price="100")
    instruction = t.instructions.get(leg=Leg.DELIVERY)
    # when
    instruction_lock(instruction=instruction, actor=ACTOR)
    instruction_start_processing(instruction=instruction, actor=ACTOR)
    instruction_settle(instruction=instruction, actor=ACTOR, reason="confirmed")
    # then
    instruction.refresh_from_db()
    assert instruction.status == S.SETTLED
    log = list(TransitionLog.objects.filter(entity_type="instruction", entity_id=instruction.pk))
    assert [(r.from_status, r.to_status) for r in log] == [
        (S.PENDING, S.LOCKED),
        (S.LOCKED, S.PROCESSING),
        (S.PROCESSING, S.SETTLED),
    ]
    assert log[-1].reason == "confirmed" and log[-1].actor_label == "system:tests"
    statuses = list(instruction.history.order_by("history_id").values_list("status", flat=True))
    assert statuses == [S.PENDING, S.LOCKED, S.PROCESSING, S.SETTLED]
    assert available(alice, btc) == Decimal("1.5")
    assert available(bob, btc) == Decimal("0.5")


@pytest.mark.parametrize(
    "service",
    [instruction_start_processing, instruction_settle, instruction_retry, instruction_reverse],
)
def test_illegal_transition_raises_and_leaves_no_trace(alice, bob, btc_usd, service):
    # given: a pending instruction
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    instruction = t.instructions.get(leg=Leg.DELIVERY)
    logs, journals, history = TransitionLog.objects.count(), Journal.objects.count(), instruction.history.count()
    # when
    with pytest.raises(IllegalTransition):
        service(instruction=instruction, actor=ACTOR, reason="not allowed")
    # then
    instruction.refresh_from_db()
    assert instruction.status == S.PENDING
    assert TransitionLog.objects.count() == logs
    assert Journal.objects.count() == journals
    assert instruction.history.count() == history


def test_settled_cannot_go_back_to_pending(alice, bob, btc, usd, btc_usd):
    fund(bob, btc, "1")
    fund(alice, usd, "100")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    trade_settle_internal(trade=t, actor=ACTOR)
    instruction = t.instructions.get(leg=Leg.DELIVERY)
    for service in (instruction_retry, instruction_cancel, instruction_fail):
        with pytest.raises(IllegalTransition):
            service(instruction=instruction, actor=ACTOR, reason="no")
    instruction.refresh_from_db()
    assert instruction.status == S.SETTLED


def test_lock_with_insufficient_funds_keeps_instruction_pending(alice, bob, btc_usd):
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    instruction = t.instructions.get(leg=Leg.DELIVERY)
    with pytest.raises(InsufficientFunds):
        instruction_lock(instruction=instruction, actor=ACTOR)
    instruction.refresh_from_db()
    assert instruction.status == S.PENDING and instruction.lock is None
    assert not TransitionLog.objects.filter(entity_type="instruction").exists()


def test_trade_settle_internal_is_delivery_versus_payment(alice, bob, btc, usd, btc_usd):
    fund(bob, btc, "1")
    fund(alice, usd, "70000")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="65000")
    legs = trade_settle_internal(trade=t, actor=ACTOR)
    assert {leg.status for leg in legs} == {S.SETTLED}
    assert available(alice, btc) == Decimal("1")
    assert available(alice, usd) == Decimal("5000")
    assert available(bob, usd) == Decimal("65000")
    # replaying changes nothing
    trade_settle_internal(trade=t, actor=ACTOR)
    assert available(bob, usd) == Decimal("65000")


def test_trade_settle_internal_short_buyer_fails_both_legs_and_voids_locks(alice, bob, btc, usd, btc_usd):
    # given: the seller has the BTC but the buyer cannot pay
    fund(bob, btc, "1")
    fund(alice, usd, "10")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="65000")
    # when
    legs = trade_settle_internal(trade=t, actor=ACTOR)
    # then: neither leg moved value
    assert {leg.status for leg in legs} == {S.FAILED}
    assert all("insufficient funds" in leg.failure_reason for leg in legs)
    assert available(bob, btc) == Decimal("1")
    assert available(alice, usd) == Decimal("10")
    assert not LedgerLock.objects.filter(status=LockStatus.PENDING).exists()
    assert LedgerAccount.objects.filter(kind=AccountKind.LOCKED, balance__gt=0).count() == 0


def test_cancel_voids_the_lock(alice, bob, btc, btc_usd):
    fund(bob, btc, "1")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1")
    instruction = instruction_lock(instruction=t.instructions.get(leg=Leg.DELIVERY), actor=ACTOR)
    instruction_cancel(instruction=instruction, actor=ACTOR, reason="ops cancelled")
    instruction.refresh_from_db()
    assert instruction.status == S.CANCELLED
    assert instruction.lock.status == LockStatus.VOIDED
    assert available(bob, btc) == Decimal("1")


def test_fail_then_retry_takes_a_new_lock(alice, bob, btc, btc_usd):
    fund(bob, btc, "1")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1")
    instruction = instruction_lock(instruction=t.instructions.get(leg=Leg.DELIVERY), actor=ACTOR)
    first_lock = instruction.lock
    instruction_fail(instruction=instruction, actor=ACTOR, reason="rail timeout")
    instruction_retry(instruction=instruction, actor=ACTOR, reason="ops retry")
    instruction = instruction_lock(instruction=instruction, actor=ACTOR)
    assert instruction.attempt == 2
    assert instruction.lock.pk != first_lock.pk
    first_lock.refresh_from_db()
    assert first_lock.status == LockStatus.VOIDED


def test_trade_reverse_compensates_both_legs(alice, bob, btc, usd, btc_usd):
    fund(bob, btc, "1")
    fund(alice, usd, "100")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    trade_settle_internal(trade=t, actor=ACTOR)
    journals = Journal.objects.count()
    legs = trade_reverse(trade=t, actor=ACTOR, reason="erroneous trade")
    assert {leg.status for leg in legs} == {S.REVERSED}
    assert available(bob, btc) == Decimal("1") and available(alice, usd) == Decimal("100")
    assert available(alice, btc) == 0 and available(bob, usd) == 0
    assert Journal.objects.count() > journals  # compensating journals, nothing deleted


def test_reverse_refused_when_payee_spent_the_funds(alice, bob, carol, btc, usd, btc_usd):
    fund(bob, btc, "1")
    fund(alice, usd, "100")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    trade_settle_internal(trade=t, actor=ACTOR)
    # alice moves the BTC on to carol
    t2 = trade(buyer=carol, seller=alice, instrument=btc_usd, quantity="1", price="100", external_id="T2")
    fund(carol, usd, "100")
    trade_settle_internal(trade=t2, actor=ACTOR)
    with pytest.raises(InsufficientFunds):
        trade_reverse(trade=t, actor=ACTOR, reason="too late")
    assert set(t.instructions.values_list("status", flat=True)) == {S.SETTLED}


def test_expired_locks_are_voided_by_the_sweeper(alice, bob, btc, btc_usd):
    # given: one locked instruction whose lock expired, one processing whose lock expired
    fund(bob, btc, "3")
    t1 = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id="T1")
    t2 = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id="T2")
    past = timezone.now() - timedelta(seconds=1)
    locked = instruction_lock(instruction=t1.instructions.get(leg=Leg.DELIVERY), actor=ACTOR, expires_at=past)
    processing = instruction_lock(instruction=t2.instructions.get(leg=Leg.DELIVERY), actor=ACTOR, expires_at=past)
    instruction_start_processing(instruction=processing, actor=ACTOR)
    # when
    voided = locks_void_expired()
    # then: the locked one failed and its value came back; the in-flight one is untouched
    assert voided == 1
    locked.refresh_from_db()
    processing.refresh_from_db()
    assert locked.status == S.FAILED and locked.lock.status == LockStatus.VOIDED
    assert processing.status == S.PROCESSING and processing.lock.status == LockStatus.PENDING
    assert available(bob, btc) == Decimal("2")
    # running it again does nothing more
    assert locks_void_expired() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_settles_of_one_instruction_post_once(alice, bob, btc, btc_usd):
    fund(bob, btc, "1")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1")
    instruction = instruction_lock(instruction=t.instructions.get(leg=Leg.DELIVERY), actor=ACTOR)
    instruction_start_processing(instruction=instruction, actor=ACTOR)
    barrier = threading.Barrier(8)
    results: list[str] = []

    def settle() -> None:
        try:
            barrier.wait()
            instruction_settle(instruction=instruction, actor=ACTOR)
            results.append("ok")
        except IllegalTransition:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=settle) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == ["ok"] + ["refused"] * 7
    assert available(alice, btc) == Decimal("1")
    assert TransitionLog.objects.filter(entity_type="instruction", to_status=S.SETTLED).count() == 1
