"""Bitcoin and Solana legs through the same pipeline: real transactions (python-bitcoinlib P2PKH,
solders system transfers with a memo) against the node simulators over JSON-RPC on loopback,
every fault switch driven end to end."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from common.choices import AssetKind, CaseKind, Chain, MarketCalendar
from common.choices import InstructionStatus as S
from ledger.models import LedgerAccount, TransitionLog
from ops.models import Notification, ReviewCase
from rails.crypto import registry
from rails.crypto.registry import chain_rail, local_simulator
from reference.models import WalletAddress
from settlement.crypto.pipeline import (
    NETWORK_FEES,
    transfer_broadcast,
    transfer_check,
    transfer_give_up,
    transfer_resign,
)
from settlement.crypto.wallets import local_chain_fund, wallet_provision
from settlement.models import ChainTransfer, SettlementHalt, Trade
from settlement.models.pipeline import TransferStatus as TS
from settlement.tasks import crypto_advance_task, crypto_check_task
from tests import factories
from tests.crypto.conftest import ledger_available, ledger_total
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db


@dataclass
class Coin:
    chain: str
    asset: Any
    instrument: Any
    wallets: dict[str, WalletAddress]

    @property
    def sim(self) -> Any:
        return local_simulator(self.chain)

    @property
    def rail(self) -> Any:
        return chain_rail(self.chain)

    def mine(self, blocks: int = 1) -> None:
        self.sim.call("sim_mine" if self.chain == Chain.BITCOIN else "sim_advance", [blocks])

    def on_chain(self, code: str) -> Decimal:
        return self.rail.balance(self.wallets[code].address)

    def trade(self, *, quantity: str, external_id: str, price: str = "100.00") -> Trade:
        return factories.trade(
            instrument=self.instrument,
            buyer=self.wallets["ALICE"].participant,
            seller=self.wallets["BOB"].participant,
            quantity=quantity,
            price=price,
            external_id=external_id,
        )


SPECS = {
    Chain.BITCOIN: ("BTC", "Bitcoin", 8),
    Chain.SOLANA: ("SOL", "Solana", 9),
}


@pytest.fixture(params=[Chain.BITCOIN, Chain.SOLANA])
def coin(request, settings, tmp_path, db, usd, alice, bob) -> Coin:
    settings.CLEARHOUSE_KEYSTORE = str(tmp_path / "keystore.json")
    settings.CLEARHOUSE_CHAIN_RAILS = ["ethereum", "bitcoin", "solana"]
    settings.CLEARHOUSE_BTC_RPC_URL = "local"
    settings.CLEARHOUSE_SOL_RPC_URL = "local"
    settings.CLEARHOUSE_RPC_TIMEOUT_SECONDS = 0.5
    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 1
    settings.CLEARHOUSE_BROADCAST_MAX_RETRIES = 3
    settings.CELERY_TASK_ALWAYS_EAGER = True
    registry.reset()
    chain = request.param
    code, name, precision = SPECS[chain]
    asset = factories.AssetFactory(
        code=code,
        name=name,
        kind=AssetKind.CRYPTO,
        precision=precision,
        settlement_cycle=0,
        calendar=MarketCalendar.ALWAYS,
        chain=chain,
        required_confirmations=2,
    )
    wallets = {p.code: wallet_provision(participant=p, chain=chain, actor=ACTOR) for p in (alice, bob)}
    local_chain_fund(wallet=wallets["BOB"], asset=asset, amount=Decimal("10"), actor=ACTOR)
    local_chain_fund(wallet=wallets["ALICE"], asset=asset, amount=Decimal("1"), actor=ACTOR)
    factories.fund(alice, usd, Decimal("100000.00"))
    yield Coin(chain=chain, asset=asset, instrument=factories.instrument(asset, usd), wallets=wallets)
    registry.reset()


def statuses(trade: Trade) -> list[str]:
    return sorted(trade.instructions.values_list("status", flat=True))


def settle_waiting(coin: Coin) -> None:
    """One more block/slot, then the next confirmation poll."""
    coin.mine(1)
    crypto_check_task(list(ChainTransfer.objects.filter(status=TS.BROADCAST).values_list("pk", flat=True)), poll=1)


def assert_ledger_matches_chain(coin: Coin) -> None:
    for code in ("ALICE", "BOB"):
        participant = coin.wallets[code].participant
        assert ledger_total(participant, coin.asset) == coin.on_chain(code), code


def test_api_trades_settle_on_chain_with_real_transactions(
    coin, per_trade, staff_client, usd, alice, bob, django_capture_on_commit_callbacks
):
    symbol = coin.instrument.symbol
    payloads = [
        {
            "external_id": f"{coin.chain}-{n}",
            "symbol": symbol,
            "buyer": "ALICE",
            "seller": "BOB",
            "quantity": quantity,
            "price": "100.00",
            "executed_at": (timezone.now() - timezone.timedelta(seconds=5)).isoformat(),
        }
        for n, quantity in ((1, "1.5"), (2, "0.25"))
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/api/v1/trades/", payloads, format="json")
    assert response.status_code == 201, response.json()
    trades = list(Trade.objects.filter(external_id__startswith=coin.chain).order_by("pk"))
    assert statuses(trades[-1]) == [S.PROCESSING, S.PROCESSING]  # 1 of the 2 confirmations needed
    settle_waiting(coin)
    assert all(statuses(t) == [S.SETTLED, S.SETTLED] for t in trades)
    transfers = list(ChainTransfer.objects.order_by("nonce"))
    assert [t.status for t in transfers] == [TS.CONFIRMED, TS.CONFIRMED]
    for transfer in transfers:
        status = coin.rail.status(tx_hash=transfer.tx_hash, sender=transfer.from_address, raw=transfer.raw_tx)
        assert status.found and status.succeeded and status.confirmations >= 2
        assert Decimal(0) < transfer.fee <= transfer.fee_cap
    if coin.chain == Chain.BITCOIN:  # the second transfer spends the first one's change
        assert transfers[1].wallet_state_before["txid"] == transfers[0].tx_hash
    assert_ledger_matches_chain(coin)
    assert ledger_total(alice, coin.asset) == Decimal("2.75")
    assert ledger_available(bob, usd) == Decimal("175.00")
    fees = LedgerAccount.objects.get(system_code=f"{NETWORK_FEES}:{coin.chain}", asset=coin.asset).balance
    assert fees == sum(t.fee for t in transfers)
    assert Notification.objects.filter(event="settled", audience="participant").count() == 4


def test_broadcast_timeouts_are_retried_and_a_lost_answer_pays_once(coin):
    coin.sim.inject("timeout", times=2)
    first = coin.trade(quantity="1", external_id="TO-1")
    crypto_advance_task(trade_ids=[first.pk])
    coin.sim.inject("timeout_after_send")
    second = coin.trade(quantity="2", external_id="TO-2")
    crypto_advance_task(trade_ids=[second.pk])
    settle_waiting(coin)
    assert statuses(first) == statuses(second) == [S.SETTLED, S.SETTLED]
    assert ChainTransfer.objects.filter(status=TS.CONFIRMED).count() == 2
    assert coin.on_chain("ALICE") == Decimal("4")  # 1 + 1 + 2: each paid exactly once
    assert_ledger_matches_chain(coin)


def test_node_down_beyond_the_bound_escalates_and_keeps_the_funds_locked_while_it_may_land(coin, usd, alice, bob):
    # given: every broadcast times out (Solana: the blockhash stays valid, so the bytes can still land)
    coin.sim.inject("timeout", times=100)
    trade = coin.trade(quantity="1", external_id="DOWN-1")
    # when
    crypto_advance_task(trade_ids=[trade.pk])
    # then: a case, no leg failed, no lock released
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.SIGNED and statuses(trade) == [S.PROCESSING, S.PROCESSING]
    case = ReviewCase.objects.get(kind=CaseKind.ESCALATION, instruction__trade=trade)
    assert "may still land" in case.reason
    assert ledger_available(bob, coin.asset) < Decimal("9") and ledger_available(alice, usd) < Decimal("100000.00")
    assert not Notification.objects.filter(event="failed").exists()


@pytest.mark.parametrize("coin", [Chain.SOLANA], indirect=True)
def test_transfer_give_up_fails_the_legs_only_once_the_blockhash_expired(coin, usd, alice, bob):
    # given: retries exhausted while the blockhash is still valid
    coin.sim.inject("timeout", times=100)
    trade = coin.trade(quantity="1", external_id="DOWN-2")
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    assert statuses(trade) == [S.PROCESSING, S.PROCESSING]
    # when: the blockhash expires and the give-up is asked again
    coin.sim.call("sim_expire_blockhash", [])
    transfer_give_up(transfer=ChainTransfer.objects.get(), reason="broadcast failed")
    # then: these bytes can never land: both legs fail, every lock released, the wallet state given back
    transfer.refresh_from_db()
    assert transfer.status == TS.FAILED and statuses(trade) == [S.FAILED, S.FAILED]
    wallet = WalletAddress.objects.get(pk=coin.wallets["BOB"].pk)
    assert wallet.next_nonce == 0 and wallet.chain_state == transfer.wallet_state_before
    assert ledger_available(bob, coin.asset) == Decimal("10") and ledger_available(alice, usd) == Decimal("100000.00")
    assert Notification.objects.filter(event="failed", audience="participant").count() == 2
    coin.sim.clear_faults()
    retry = coin.trade(quantity="1", external_id="DOWN-3")
    crypto_advance_task(trade_ids=[retry.pk])
    settle_waiting(coin)
    assert statuses(retry) == [S.SETTLED, S.SETTLED]
    assert_ledger_matches_chain(coin)


def test_dropped_transaction_is_rebroadcast_as_the_same_bytes(coin):
    coin.sim.inject("drop")
    trade = coin.trade(quantity="1", external_id="DROP-1")
    crypto_advance_task(trade_ids=[trade.pk])  # sent, lost, seen missing, rebroadcast
    transfer = ChainTransfer.objects.get()
    original = transfer.tx_hash
    settle_waiting(coin)
    transfer.refresh_from_db()
    assert transfer.status == TS.CONFIRMED and transfer.broadcast_count == 2 and transfer.tx_hash == original
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert TransitionLog.objects.filter(entity_type="chaintransfer", reason__startswith="rebroadcast").count() == 1
    assert_ledger_matches_chain(coin)


def test_reorg_below_threshold_rebroadcasts_and_settles_once(coin):
    trade = coin.trade(quantity="1", external_id="REORG-1")
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    assert transfer_check(transfer=transfer).state == "waiting"  # 1 of 2 confirmations
    coin.sim.call("sim_reorg", [1])  # the block/slot holding our transaction is gone
    assert coin.on_chain("ALICE") == Decimal("1")
    assert transfer_check(transfer=transfer).state == "rebroadcast"
    coin.mine(1)
    assert transfer_check(transfer=transfer).state == "settled"
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert coin.on_chain("ALICE") == Decimal("2")  # paid once
    assert_ledger_matches_chain(coin)


def test_double_spend_halts_the_asset_and_opens_an_investigation(coin, usd, alice):
    coin.sim.inject("double_spend")
    trade = coin.trade(quantity="1", external_id="DS-1")
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.FAILED and "double spend" in transfer.last_error
    assert statuses(trade) == [S.FAILED, S.FAILED]
    assert SettlementHalt.objects.filter(asset=coin.asset, lifted_at__isnull=True).exists()
    assert ReviewCase.objects.filter(kind=CaseKind.INVESTIGATION, instruction=transfer.instruction).exists()
    assert ledger_available(alice, usd) == Decimal("100000.00")  # the buyer's cash never moved
    assert coin.on_chain("ALICE") == Decimal("1")
    # nothing more is signed for the asset while halted
    second = coin.trade(quantity="1", external_id="DS-2")
    crypto_advance_task(trade_ids=[second.pk])
    assert statuses(second) == [S.LOCKED, S.LOCKED] and ChainTransfer.objects.count() == 1


@pytest.mark.parametrize("coin", [Chain.SOLANA], indirect=True)
def test_solana_transfer_whose_blockhash_expired_unlanded_is_re_signed(coin, settings):
    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 5
    coin.sim.inject("drop")
    trade = coin.trade(quantity="1", external_id="EXP-1")
    crypto_advance_task(trade_ids=[trade.pk])
    transfer = ChainTransfer.objects.get()
    first = transfer.tx_hash
    coin.sim.call("sim_expire_blockhash", [])
    assert transfer_check(transfer=transfer).state == "resigned"
    transfer.refresh_from_db()
    assert transfer.tx_hash != first and transfer.resign_count == 1 and transfer.nonce == 0
    coin.mine(1)
    assert transfer_check(transfer=transfer).state == "settled"
    assert coin.rail.broadcast(ChainTransfer.objects.get().raw_tx)  # re-sending changes nothing
    assert coin.on_chain("ALICE") == Decimal("2")
    assert TransitionLog.objects.filter(entity_type="chaintransfer", reason__startswith="re-signed").count() == 1
    assert_ledger_matches_chain(coin)


@pytest.mark.parametrize("coin", [Chain.SOLANA], indirect=True)
def test_transfer_resign_twice_for_the_same_observed_hash_acts_once(coin, settings):
    # given: a Solana transfer whose blockhash expired unlanded, seen so by two racing checks
    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 5
    coin.sim.inject("drop")
    trade = coin.trade(quantity="1", external_id="RACE-1")
    crypto_advance_task(trade_ids=[trade.pk])
    seen = ChainTransfer.objects.get()  # the row as both checks read it
    coin.sim.call("sim_expire_blockhash", [])
    # when: both re-sign on that observation and send what they got; the first one lands at once,
    # and the cluster's recent blockhash moves on before the second acts
    first = transfer_resign(transfer=seen)
    transfer_broadcast(transfer=first)
    coin.sim.call("sim_expire_blockhash", [])
    second = transfer_resign(transfer=seen)
    transfer_broadcast(transfer=second)
    # then: one replacement only; the second saw its hash replaced and did nothing
    stored = ChainTransfer.objects.get()
    assert stored.resign_count == 1 and stored.tx_hash == first.tx_hash == second.tx_hash != seen.tx_hash
    assert TransitionLog.objects.filter(entity_type="chaintransfer", reason__startswith="re-signed").count() == 1
    settle_waiting(coin)
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert coin.on_chain("ALICE") == Decimal("2")  # paid once
    assert_ledger_matches_chain(coin)


@pytest.mark.parametrize("coin", [Chain.SOLANA], indirect=True)
def test_transfer_double_spent_on_a_stale_observation_does_nothing(coin, settings):
    # given: a check saw the old signature unknown and unfunded, but the transfer was re-signed since
    from settlement.crypto.pipeline import transfer_double_spent

    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 5
    coin.sim.inject("drop")
    trade = coin.trade(quantity="1", external_id="STALE-1")
    crypto_advance_task(trade_ids=[trade.pk])
    seen = ChainTransfer.objects.get()
    coin.sim.call("sim_expire_blockhash", [])
    transfer_resign(transfer=ChainTransfer.objects.get())
    # when: the stale observation arrives
    transfer_double_spent(transfer=seen, sender_nonce=0)
    # then: nothing failed, nothing halted
    assert ChainTransfer.objects.get().status == TS.BROADCAST and statuses(trade) == [S.PROCESSING, S.PROCESSING]
    assert not SettlementHalt.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("coin", [Chain.SOLANA], indirect=True)
def test_transfer_resign_racing_on_one_expiry_re_signs_once(coin, settings):
    # given: a Solana transfer whose blockhash expired unlanded, and two checks racing on it
    import threading

    from django.db import connection

    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 5
    coin.sim.inject("drop")
    trade = coin.trade(quantity="1", external_id="RACE-2")
    crypto_advance_task(trade_ids=[trade.pk])
    seen = ChainTransfer.objects.get()
    coin.sim.call("sim_expire_blockhash", [])
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            barrier.wait()
            transfer_resign(transfer=seen)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: one replacement, and the trade pays once
    assert errors == []
    stored = ChainTransfer.objects.get()
    assert stored.resign_count == 1
    assert TransitionLog.objects.filter(entity_type="chaintransfer", reason__startswith="re-signed").count() == 1
    transfer_broadcast(transfer=stored)
    settle_waiting(coin)
    assert statuses(trade) == [S.SETTLED, S.SETTLED]
    assert coin.on_chain("ALICE") == Decimal("2")
    assert_ledger_matches_chain(coin)


@pytest.mark.parametrize(
    ("chain", "address", "valid"),
    [
        (Chain.BITCOIN, "mfWxJ45yp2SFn7UciZyNpvDKrzbhyfKrY8", True),
        (Chain.BITCOIN, "mfWxJ45yp2SFn7UciZyNpvDKrzbhyfKrY9", False),  # checksum
        (Chain.SOLANA, "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", True),
        (Chain.SOLANA, "0x52908400098527886E0F7030069857D2E4169EE7", False),
    ],
)
def test_wallet_addresses_are_checked_per_chain(chain, address, valid, alice):
    wallet = WalletAddress(participant=alice, chain=chain, address=address)
    if valid:
        wallet.full_clean()
    else:
        with pytest.raises(ValidationError, match="address"):
            wallet.full_clean()
