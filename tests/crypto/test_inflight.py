"""Crypto T+0 work in flight and its errors (issue 16): in-flight locks never expire by time,
every error ends in a definite state (retried with a bound, failed with funds released, or
escalated with a case), one bad trade never blocks the others, and a cancel takes both legs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from common.choices import CaseKind, LockStatus
from common.choices import InstructionStatus as S
from ledger.models import LedgerLock
from ops.models import Notification, ReviewCase
from rails.base import RailRejected
from rails.crypto.registry import chain_rail
from settlement.crypto.pipeline import crypto_trade_lock, crypto_trade_prepare, fee_reserves_for
from settlement.models import ChainTransfer, SettlementInstruction, Trade
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.halts import halt_open
from settlement.services.instructions import locks_void_expired
from settlement.tasks import crypto_advance_task, crypto_check_task, crypto_sweep_task
from tests import factories
from tests.crypto.conftest import ledger_available, ledger_total
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db

_seq = iter(range(1, 10_000))


def make_trade(instrument, *, buyer, seller, quantity, price="3000.00") -> Trade:
    return factories.trade(
        instrument=instrument, buyer=buyer, seller=seller, quantity=quantity, price=price, external_id=f"IF{next(_seq)}"
    )


def statuses(trade: Trade) -> list[str]:
    return sorted(trade.instructions.values_list("status", flat=True))


def assert_ledger_matches_chain(eth, participants, wallets) -> None:
    rail = chain_rail("ethereum")
    for participant in participants:
        assert ledger_total(participant, eth) == rail.balance(wallets[participant.code].address), participant.code


def test_locks_void_expired_leaves_the_fee_reserve_of_a_transfer_in_flight(funded, chain, eth, eth_usd, alice, bob):
    # given: a transfer on chain waiting for confirmations, its locks past their expiry
    eth.required_confirmations = 3
    eth.save()
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    delivery = SettlementInstruction.objects.get(trade=trade, asset=eth)
    assert delivery.status == S.PROCESSING
    later = timezone.now() + timedelta(days=1)
    # when
    voided = locks_void_expired(now=later)
    # then: neither the funds lock nor the fee reserve of in-flight work is voided
    assert voided == 0
    assert set(LedgerLock.objects.values_list("status", flat=True)) == {LockStatus.PENDING}
    # and once confirmed the gas is booked: ledger equals chain
    chain.mine(2)
    crypto_check_task([ChainTransfer.objects.get().pk], poll=1)
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert_ledger_matches_chain(eth, [alice, bob], funded)


def test_locks_void_expired_fails_a_halted_trade_notifies_and_opens_a_case(
    funded, chain, eth, eth_usd, alice, bob, usd
):
    # given: the asset is halted, so the trade stays locked until its locks expire
    halt_open(asset=eth, reason="node maintenance", actor=ACTOR)
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    assert statuses(trade) == [S.LOCKED, S.LOCKED]
    # when
    voided = locks_void_expired(now=timezone.now() + timedelta(days=1))
    # then: the whole trade fails, every lock released, both parties told, a case for operations
    assert voided == 1
    assert statuses(trade) == [S.FAILED, S.FAILED]
    assert not LedgerLock.objects.filter(status=LockStatus.PENDING).exists()
    assert ledger_available(bob, eth) == Decimal("10") and ledger_available(alice, usd) == Decimal("100000.00")
    assert set(Notification.objects.filter(event="failed").values_list("participant__code", flat=True)) == {
        "ALICE",
        "BOB",
    }
    case = ReviewCase.objects.get(kind=CaseKind.ESCALATION, instruction__trade=trade)
    assert "lock expired" in case.reason and "halted" in case.reason
    assert locks_void_expired(now=timezone.now() + timedelta(days=1)) == 0


def test_crypto_broadcast_task_rail_rejected_fails_with_funds_released_and_a_case(
    funded, chain, per_trade, eth, eth_usd, alice, bob, usd, monkeypatch
):
    # given: the node refuses the stored transaction for good
    def refuse(raw: str) -> str:
        raise RailRejected("insufficient funds for gas * price + value")

    monkeypatch.setattr(chain_rail("ethereum"), "broadcast", refuse)
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    # when
    crypto_advance_task(trade_ids=[trade.pk])
    # then: a definite end: failed, funds released, nonce given back, a case
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.FAILED and "rejected" in transfer.last_error
    assert statuses(trade) == [S.FAILED, S.FAILED]
    assert ledger_available(bob, eth) == Decimal("10") and ledger_available(alice, usd) == Decimal("100000.00")
    assert ReviewCase.objects.filter(kind=CaseKind.ESCALATION, instruction__trade=trade).count() == 1
    assert funded["BOB"].__class__.objects.get(pk=funded["BOB"].pk).next_nonce == 0
    # and the sweeper has nothing to loop on
    assert crypto_sweep_task(older_than_seconds=0) == {"trades": 0, "signed": 0, "broadcast": 0}


def test_crypto_broadcast_task_rail_rejected_on_a_signed_transfer_ends_it(
    funded, chain, eth, eth_usd, alice, bob, monkeypatch
):
    # given: a signed transfer (as the sweeper re-dispatches it), refused for good by the node
    from settlement.tasks import crypto_broadcast_task

    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_trade_lock(trade=trade, fee_reserves=fee_reserves_for([eth]))
    (transfer,) = crypto_trade_prepare(trade=trade)
    assert transfer.status == TS.SIGNED

    def refuse(raw: str) -> str:
        raise RailRejected("max fee per gas less than block base fee")

    monkeypatch.setattr(chain_rail("ethereum"), "broadcast", refuse)
    # when
    outcome = crypto_broadcast_task(transfer.pk)
    # then
    assert outcome == "rejected"
    assert ChainTransfer.objects.get().status == TS.FAILED and statuses(trade) == [S.FAILED, S.FAILED]
    assert crypto_broadcast_task(transfer.pk) == "done"


def test_crypto_trades_advance_one_bad_trade_does_not_block_the_rest(
    funded, chain, eth, eth_usd, alice, bob, monkeypatch
):
    # given: three trades in one chunk, the first of which hits an unforeseen error when signing
    from settlement.crypto import pipeline as crypto

    trades = [make_trade(eth_usd, buyer=alice, seller=bob, quantity="1") for _ in range(3)]
    bad = trades[0]
    sign = crypto._sign_leg

    def flaky_sign(leg, *, actor):
        if leg.trade_id == bad.pk:
            raise RuntimeError("unexpected answer")
        return sign(leg, actor=actor)

    monkeypatch.setattr(crypto, "_sign_leg", flaky_sign)
    # when
    crypto_advance_task(trade_ids=[t.pk for t in trades])
    # then: the others settle; the bad one waits for operations in a case, untouched by the sweeper
    assert [statuses(t) for t in trades[1:]] == [[S.SETTLED, S.SETTLED]] * 2
    assert statuses(bad) == [S.LOCKED, S.LOCKED]
    case = ReviewCase.objects.get(kind=CaseKind.ESCALATION)
    assert case.instruction.trade == bad and "RuntimeError" in case.reason
    assert crypto_sweep_task(older_than_seconds=0)["trades"] == 0
    assert_ledger_matches_chain(eth, [alice, bob], funded)


def test_crypto_trade_cancel_voids_both_legs_locks_and_fee_reserve(funded, chain, eth, eth_usd, alice, bob, usd):
    # given: a locked T+0 trade (funds on both legs, the network-fee reserve on the chain leg)
    from settlement.crypto.pipeline import crypto_trade_cancel

    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_trade_lock(trade=trade, fee_reserves=fee_reserves_for([eth]))
    assert ledger_available(alice, usd) < Decimal("100000.00") and ledger_available(bob, eth) < Decimal("9")
    # when
    crypto_trade_cancel(trade=trade, actor=ACTOR, reason="client request")
    # then: both legs cancelled, every lock voided
    assert statuses(trade) == [S.CANCELLED, S.CANCELLED]
    assert not LedgerLock.objects.filter(status=LockStatus.PENDING).exists()
    assert ledger_available(alice, usd) == Decimal("100000.00") and ledger_available(bob, eth) == Decimal("10")


def test_crypto_trade_cancel_is_refused_once_a_leg_is_on_chain(funded, chain, eth, eth_usd, alice, bob):
    # given: a transfer in flight
    from common.exceptions import IllegalTransition
    from settlement.crypto.pipeline import crypto_trade_cancel

    eth.required_confirmations = 3
    eth.save()
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    # when / then
    with pytest.raises(IllegalTransition):
        crypto_trade_cancel(trade=trade, actor=ACTOR, reason="too late")
    assert statuses(trade) == [S.PROCESSING, S.PROCESSING]
    assert set(LedgerLock.objects.values_list("status", flat=True)) == {LockStatus.PENDING}


def test_transfer_confirm_books_the_gas_even_if_the_reserve_was_released(funded, chain, eth, eth_usd, alice, bob):
    # given: a transfer in flight whose fee reserve was released anyway (as the old sweeper did)
    from ledger.services.ledger import ledger_void

    eth.required_confirmations = 3
    eth.save()
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    delivery = SettlementInstruction.objects.get(trade=trade, asset=eth)
    ledger_void(lock=delivery.fee_lock, actor=ACTOR, reason="released by mistake")
    # when: it confirms
    chain.mine(2)
    crypto_check_task([ChainTransfer.objects.get().pk], poll=1)
    # then: the ledger follows the chain (the gas is booked) and operations investigate
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert_ledger_matches_chain(eth, [alice, bob], funded)
    case = ReviewCase.objects.get(kind=CaseKind.INVESTIGATION)
    assert case.instruction == delivery and "reserve had been released" in case.reason


def test_crypto_check_task_one_bad_transfer_does_not_keep_the_others_unchecked(
    funded, chain, eth, eth_usd, alice, bob, monkeypatch
):
    # given: two transfers waiting for confirmations, checking the first fails unexpectedly
    import settlement.tasks as tasks

    eth.required_confirmations = 3
    eth.save()
    trades = [make_trade(eth_usd, buyer=alice, seller=bob, quantity="1") for _ in range(2)]
    crypto_advance_task(trade_ids=[t.pk for t in trades])
    first, second = ChainTransfer.objects.order_by("nonce")
    check = tasks.transfer_check

    def flaky_check(*, transfer):
        if transfer.pk == first.pk:
            raise RuntimeError("unexpected receipt")
        return check(transfer=transfer)

    monkeypatch.setattr(tasks, "transfer_check", flaky_check)
    chain.mine(2)
    # when
    outcome = crypto_check_task([first.pk, second.pk], poll=1)
    # then: the second settles, the first waits for operations in a case
    assert outcome == {"escalated": 1, "settled": 1}
    assert statuses(trades[1]) == [S.SETTLED, S.SETTLED]
    assert ReviewCase.objects.get(kind=CaseKind.ESCALATION).instruction.trade == trades[0]
    assert crypto_sweep_task(older_than_seconds=0)["broadcast"] == 0


def test_transfer_check_marks_a_polled_transfer_as_not_stuck(funded, chain, eth, eth_usd, alice, bob):
    # given: a transfer waiting for confirmations, last touched long ago
    from settlement.crypto.pipeline import stuck_crypto_work, transfer_check

    eth.required_confirmations = 3
    eth.save()
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    ChainTransfer.objects.filter(pk=transfer.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert stuck_crypto_work(older_than_seconds=60).broadcast == [transfer.pk]
    # when: the poller looks at it
    assert transfer_check(transfer=transfer).state == "waiting"
    # then: the sweeper no longer takes it for stuck (no duplicate checks)
    assert stuck_crypto_work(older_than_seconds=60).broadcast == []


def test_transfer_give_up_seen_again_after_its_case_was_resolved_opens_a_new_case(
    funded, chain, eth, eth_usd, alice, bob, admin_user
):
    # given: a give-up escalated and resolved by operations while the node is still down
    from ops.services.cases import case_resolve

    chain.inject("timeout", times=1000)
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    case_resolve(case=ReviewCase.objects.get(), actor=admin_user, resolution="retry later")
    # when: the sweeper takes the transfer up again and it gives up again
    crypto_sweep_task(older_than_seconds=0)
    # then: a new open case holds it (the sweeper does not loop on it unseen)
    assert ReviewCase.objects.filter(status="open", instruction__trade=trade).count() == 1
    assert crypto_sweep_task(older_than_seconds=0)["signed"] == 0


def test_crypto_trades_advance_sign_rejected_fails_with_funds_released_and_a_case(
    funded, chain, eth, eth_usd, alice, bob, usd, monkeypatch
):
    # given: the rail refuses to build the transaction (e.g. fee cap below the network fee)
    def refuse(**kwargs):
        raise RailRejected("the fee reserve is below the network fee")

    monkeypatch.setattr(chain_rail("ethereum"), "sign_transfer", refuse)
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    # when
    crypto_advance_task(trade_ids=[trade.pk])
    # then
    assert statuses(trade) == [S.FAILED, S.FAILED] and not ChainTransfer.objects.exists()
    assert ledger_available(bob, eth) == Decimal("10") and ledger_available(alice, usd) == Decimal("100000.00")
    assert "could not sign" in ReviewCase.objects.get(kind=CaseKind.ESCALATION, instruction__trade=trade).reason
    assert crypto_sweep_task(older_than_seconds=0)["trades"] == 0


def test_instruction_cancel_of_one_locked_crypto_leg_releases_the_partner_too(
    funded, chain, eth, eth_usd, alice, bob, usd
):
    # given: a locked T+0 trade (funds locks on both legs, the seller's network-fee reserve)
    from settlement.services.instructions import instruction_cancel

    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_trade_lock(trade=trade, fee_reserves=fee_reserves_for([eth]))
    # when: operations cancel one leg
    instruction_cancel(instruction=trade.instructions.get(asset=eth), actor=ACTOR, reason="client request")
    # then: the trade is cancelled whole (DvP) and nothing stays locked for the sweeper to find
    assert statuses(trade) == [S.CANCELLED, S.CANCELLED]
    assert ledger_available(alice, usd) == Decimal("100000.00") and ledger_available(bob, eth) == Decimal("10")
    assert locks_void_expired(now=timezone.now() + timedelta(days=1)) == 0


def test_crypto_trade_fail_voids_the_payment_legs_fee_charges(funded, chain, eth, eth_usd, alice, bob, usd):
    # given: a fee schedule for the buyer, and a locked trade that then fails before going on chain
    from settlement.crypto.pipeline import crypto_trade_fail
    from settlement.models import FeeCharge, FeeRule

    FeeRule.objects.create(name="buyers", tier="standard", bps=Decimal("10"), valid_from=timezone.now() - timedelta(1))
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_trade_lock(trade=trade, fee_reserves=fee_reserves_for([eth]))
    assert FeeCharge.objects.filter(status="pending").exists()
    # when
    crypto_trade_fail(trade=trade, reason="could not sign", actor=ACTOR)
    # then: its fees go with it (nothing stays pending on a failed attempt)
    assert set(FeeCharge.objects.values_list("status", flat=True)) == {"voided"}
    assert ledger_available(alice, usd) == Decimal("100000.00")
