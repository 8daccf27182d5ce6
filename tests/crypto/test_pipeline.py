"""Crypto T+0 pipeline on the in-process Ethereum chain (py-evm): real signing, nonces, gas,
receipts; Celery tasks run in-process here (the Redis-worker runs are in test_workers.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from common.choices import CaseKind
from common.choices import InstructionStatus as S
from ledger.models import LedgerAccount, TransitionLog
from ops.models import Notification, ReviewCase
from ops.services.cases import case_resolve
from rails.crypto.registry import chain_rail
from settlement.crypto.pipeline import NETWORK_FEES, transfer_check
from settlement.models import ChainTransfer, FeeCharge, SettlementHalt, SettlementInstruction, Trade
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.halts import halt_lift
from settlement.tasks import crypto_advance_task, crypto_check_task, crypto_sweep_task
from tests import factories
from tests.crypto.conftest import ledger_available, ledger_total

pytestmark = pytest.mark.django_db
URL = "/api/v1/trades/"


def trade_payload(n: int, quantity: str = "1.5", price: str = "3000.00", buyer="ALICE", seller="BOB") -> dict:
    return {
        "external_id": f"ETH-{n}",
        "symbol": "ETH/USD",
        "buyer": buyer,
        "seller": seller,
        "quantity": quantity,
        "price": price,
        "executed_at": (timezone.now() - timezone.timedelta(seconds=5)).isoformat(),
    }


def post_trades(client, payloads, capture):
    with capture(execute=True):
        response = client.post(URL, payloads, format="json")
    assert response.status_code == 201, response.json()
    return Trade.objects.filter(external_id__in=[p["external_id"] for p in payloads]).order_by("pk")


def assert_ledger_matches_chain(chain, eth, participants, wallets):
    rail = chain_rail("ethereum")
    for participant in participants:
        on_chain = rail.balance(wallets[participant.code].address)
        assert ledger_total(participant, eth) == on_chain, participant.code


_seq = iter(range(1, 10_000))


def make_trade(instrument, *, buyer, seller, quantity, price="3000.00", external_id=None):
    return factories.trade(
        instrument=instrument,
        buyer=buyer,
        seller=seller,
        quantity=quantity,
        price=price,
        external_id=external_id or f"T{next(_seq)}",
    )


def statuses(trade):
    return sorted(trade.instructions.values_list("status", flat=True))


def test_trades_from_the_api_settle_on_chain_and_ledger_equals_chain(
    staff_client, funded, chain, per_trade, eth, eth_usd, usd, alice, bob, django_capture_on_commit_callbacks
):
    trades = post_trades(
        staff_client, [trade_payload(1), trade_payload(2, quantity="0.25")], django_capture_on_commit_callbacks
    )
    for trade in trades:
        assert statuses(trade) == [S.SETTLED, S.SETTLED]
    transfers = list(ChainTransfer.objects.order_by("nonce"))
    assert [t.status for t in transfers] == [TS.CONFIRMED, TS.CONFIRMED]
    assert [t.nonce for t in transfers] == [0, 1]
    for transfer in transfers:  # a real receipt exists for every transfer
        receipt = chain_rail("ethereum").w3.eth.get_transaction_receipt(transfer.tx_hash)
        assert receipt["status"] == 1 and receipt["blockNumber"] == transfer.block_number
        assert transfer.fee > 0 and transfer.fee <= transfer.fee_cap
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)
    assert ledger_total(alice, eth) == Decimal("1") + Decimal("1.75")
    assert ledger_available(alice, usd) == Decimal("100000.00") - Decimal("4500.00") - Decimal("750.00")
    assert ledger_available(bob, usd) == Decimal("5250.00")
    fees = LedgerAccount.objects.get(system_code=f"{NETWORK_FEES}:ethereum", asset=eth).balance
    assert fees == sum(t.fee for t in transfers)
    # the gas each sender paid is in its instruction's fee breakdown, as a pass-through cost
    for transfer in transfers:
        gas = FeeCharge.objects.get(instruction=transfer.instruction, kind="pass_through")
        assert (gas.fee, gas.status, gas.participant) == (transfer.fee, "posted", transfer.instruction.payer)
        assert transfer.tx_hash in gas.cost_source and gas.journal.reference.endswith(":post")
        assert sum(gas.journal.postings.values_list("amount", flat=True)) == 0
    # both parties told, every step in the transition log
    assert Notification.objects.filter(event="settled", audience="participant").count() == 4
    assert TransitionLog.objects.filter(entity_type="chaintransfer", to_status=TS.CONFIRMED).count() == 2


def test_replaying_the_pipeline_changes_nothing(funded, chain, eth, eth_usd, alice, bob):
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    journals = TransitionLog.objects.count()
    height = chain.w3.eth.block_number
    crypto_advance_task(trade_ids=[trade.pk])  # a redelivered task
    crypto_check_task([t.pk for t in ChainTransfer.objects.all()])
    crypto_sweep_task(older_than_seconds=0)
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert ChainTransfer.objects.count() == 1
    assert chain.w3.eth.block_number == height
    assert TransitionLog.objects.count() == journals


def test_waits_for_required_confirmations_without_settling_early(funded, chain, eth, eth_usd, alice, bob):
    eth.required_confirmations = 3
    eth.save()
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    assert statuses(trade) == [S.PROCESSING, S.PROCESSING] and transfer.status == TS.BROADCAST
    chain.mine(1)
    assert transfer_check(transfer=transfer).state == "waiting"
    chain.mine(1)
    assert transfer_check(transfer=transfer).state == "settled"
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)


# --- failure path 1: insufficient balance -------------------------------------------------------


def test_insufficient_balance_fails_both_legs_voids_locks_and_notifies(funded, chain, eth, eth_usd, alice, bob, usd):
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="50")  # bob holds 10 ETH
    crypto_advance_task(trade_ids=[trade.pk])
    assert statuses(trade) == [S.FAILED, S.FAILED]
    assert all("insufficient funds" in r for r in trade.instructions.values_list("failure_reason", flat=True))
    assert not ChainTransfer.objects.exists()
    assert ledger_available(bob, eth) == Decimal("10") and ledger_available(alice, usd) == Decimal("100000.00")
    assert set(Notification.objects.filter(event="failed").values_list("participant__code", flat=True)) == {
        "ALICE",
        "BOB",
    }
    assert TransitionLog.objects.filter(entity_type="instruction", to_status=S.FAILED).count() == 2
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)


def test_buyer_short_of_cash_also_fails_both_legs(funded, chain, eth, eth_usd, alice, bob, usd):
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="9", price="20000.00")  # 180k USD
    crypto_advance_task(trade_ids=[trade.pk])
    assert statuses(trade) == [S.FAILED, S.FAILED]
    assert ledger_available(bob, eth) == Decimal("10")


# --- failure path 2: network timeout / node unavailable -----------------------------------------


def test_broadcast_timeout_is_retried_then_settles(funded, chain, eth, eth_usd, alice, bob):
    chain.inject("timeout", times=2)
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])  # eager: the retries run at once
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.CONFIRMED and transfer.broadcast_count == 1
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)


def test_response_lost_after_send_does_not_pay_twice(funded, chain, eth, eth_usd, alice, bob):
    chain.inject("timeout_after_send")
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert chain.w3.eth.get_transaction_count(funded["BOB"].address) == 1  # one transaction only
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)


def test_node_down_beyond_the_retry_bound_escalates_and_keeps_the_funds_locked(
    funded, chain, per_trade, eth, eth_usd, alice, bob, usd, admin_user
):
    # given: every broadcast attempt times out (the bytes may have reached the node: they can still land)
    chain.inject("timeout", times=100)
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    # when
    crypto_advance_task(trade_ids=[trade.pk])
    # then: escalated, nothing released while the transaction may still land
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.SIGNED and "attempt 3" in transfer.last_error
    assert statuses(trade) == [S.PROCESSING, S.PROCESSING]
    assert ledger_available(bob, eth) < Decimal("9") and ledger_available(alice, usd) < Decimal("100000.00")
    case = ReviewCase.objects.get(kind=CaseKind.ESCALATION)
    assert case.instruction.trade == trade and "broadcast gave up" in case.reason and "may still land" in case.reason
    assert Notification.objects.filter(audience="ops", event="case_escalation").exists()
    assert not Notification.objects.filter(event="failed").exists()
    crypto_sweep_task(older_than_seconds=0)  # escalated work is left to operations
    assert ChainTransfer.objects.get().status == TS.SIGNED
    # when: the node is back and operations hand the case back
    chain.clear_faults()
    case_resolve(case=case, actor=admin_user, resolution="node restored")
    crypto_sweep_task(older_than_seconds=0)
    # then
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)


def test_chain_unavailable_when_quoting_leaves_trade_pending_for_the_sweeper(funded, chain, eth, eth_usd, alice, bob):
    chain.inject("unavailable", times=1000)
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    assert statuses(trade) == [S.PENDING, S.PENDING]
    chain.clear_faults()
    crypto_sweep_task(older_than_seconds=0)
    assert statuses(trade) == [S.SETTLED, S.SETTLED]


# --- failure path 3: dropped and reorged transactions -------------------------------------------


def test_dropped_transaction_is_rebroadcast_with_the_same_nonce(funded, chain, eth, eth_usd, alice, bob):
    chain.inject("drop")
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])  # sent, lost by the node, seen missing, rebroadcast
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.BROADCAST and statuses(trade) == [S.PROCESSING, S.PROCESSING]
    crypto_check_task([transfer.pk], poll=1)  # the next scheduled poll
    transfer.refresh_from_db()
    assert transfer.status == TS.CONFIRMED and transfer.broadcast_count == 2 and transfer.nonce == 0
    assert chain.w3.eth.get_transaction_count(funded["BOB"].address) == 1
    assert TransitionLog.objects.filter(entity_type="chaintransfer", reason__startswith="rebroadcast").count() == 1
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)


def test_reorg_below_threshold_rebroadcasts_and_settles_once(funded, chain, eth, eth_usd, alice, bob):
    eth.required_confirmations = 3
    eth.save()
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    before = chain.snapshot()
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    assert transfer_check(transfer=transfer).state == "waiting"
    chain.reorg(before, new_blocks=2)  # the block holding our transaction is gone
    assert chain.w3.eth.get_transaction_count(funded["BOB"].address) == 0
    assert transfer_check(transfer=transfer).state == "rebroadcast"
    chain.mine(2)
    assert transfer_check(transfer=transfer).state == "settled"
    assert transfer_check(transfer=transfer).state == "done"
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert chain.w3.eth.get_transaction_count(funded["BOB"].address) == 1
    assert_ledger_matches_chain(chain, eth, [alice, bob], funded)


# --- failure path 4: double spend ------------------------------------------------------------------


def test_double_spend_halts_the_asset_opens_a_case_and_nothing_more_is_broadcast(
    funded, chain, per_trade, eth, eth_usd, alice, bob, usd, admin_user
):
    from rails.crypto.signing import keystore

    chain.attacker_signer = lambda tx: keystore().sign_eth_transaction(tx.pop("from"), tx)
    chain.inject("double_spend")
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1", external_id="DS-1")
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.FAILED and "double spend" in transfer.last_error
    assert statuses(trade) == [S.FAILED, S.FAILED]
    halt = SettlementHalt.objects.get(asset=eth, lifted_at__isnull=True)
    assert ReviewCase.objects.filter(kind=CaseKind.INVESTIGATION, instruction=transfer.instruction).exists()
    assert Notification.objects.filter(audience="ops", event="halt").exists()
    # our value never moved: ledger still equals chain (the attacker only paid gas from bob's wallet)
    assert ledger_available(alice, usd) == Decimal("100000.00")
    # while halted: a new trade locks but nothing is signed or broadcast
    height = chain.w3.eth.block_number
    second = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1", external_id="DS-2")
    crypto_advance_task(trade_ids=[second.pk])
    assert statuses(second) == [S.LOCKED, S.LOCKED]
    assert ChainTransfer.objects.count() == 1 and chain.w3.eth.block_number == height
    # ops lift the halt with a reason; the sweeper takes the waiting trade through
    halt_lift(halt=halt, actor=admin_user, reason="key rotated, attacker tx investigated")
    crypto_sweep_task(older_than_seconds=0)
    assert statuses(second) == [S.SETTLED, S.SETTLED]
    assert ChainTransfer.objects.get(instruction__trade=second).nonce == 1  # next free nonce after the attack
    assert TransitionLog.objects.filter(entity_type="halt", to_status="lifted").count() == 1


# --- failure path 5: anything unexpected ---------------------------------------------------------


def test_missing_wallet_is_escalated_to_manual_review(funded, chain, eth, eth_usd, alice, bob, carol):
    factories.fund(carol, eth, "5")  # ledger-only: carol has no wallet on chain
    trade = make_trade(eth_usd, buyer=alice, seller=carol, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    assert statuses(trade) == [S.LOCKED, S.LOCKED]
    case = ReviewCase.objects.get(kind=CaseKind.ESCALATION)
    assert "no ethereum wallet" in case.reason
    assert Notification.objects.filter(audience="ops", event="case_escalation").exists()
    crypto_sweep_task(older_than_seconds=0)  # the sweeper leaves escalated work to ops
    assert ReviewCase.objects.count() == 1 and not ChainTransfer.objects.exists()


def test_cancelling_a_locked_crypto_leg_voids_funds_and_fee_reserve(
    funded, chain, eth, eth_usd, alice, bob, admin_user
):
    from settlement.crypto.pipeline import crypto_trade_lock, fee_reserves_for
    from settlement.services.instructions import instruction_cancel

    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_trade_lock(trade=trade, fee_reserves=fee_reserves_for([eth]))
    delivery = SettlementInstruction.objects.get(trade=trade, asset=eth)
    assert delivery.fee_lock is not None and ledger_available(bob, eth) < Decimal("9")
    instruction_cancel(instruction=delivery, actor=admin_user, reason="client request")
    assert ledger_available(bob, eth) == Decimal("10")
