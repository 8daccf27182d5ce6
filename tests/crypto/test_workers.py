"""The crypto pipeline through real Celery worker processes on Redis, against anvil (a real
Ethereum JSON-RPC node on loopback), including a worker killed between broadcast and ledger post,
and the recovery measurement: a worker SIGKILLed mid-pipeline and the broker's Redis crashed and
restarted, everything settled within 30 s of the fault clearing, once. Each runs with the batch
engine (batches, multisend chain transactions) and the crash test with the per-trade pipeline
too (it still settles crypto/crypto trades)."""

from __future__ import annotations

import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from common.choices import AssetKind, Chain, JournalKind, MarketCalendar
from common.choices import InstructionStatus as S
from config.celery import app
from ledger.models import Journal
from rails.crypto import registry
from rails.crypto.registry import chain_rail
from rails.simulators.anvil import AnvilNode, anvil_binary
from settlement.crypto.wallets import local_chain_fund, wallet_provision
from settlement.models import ChainTransaction, ChainTransfer, SettlementInstruction, Trade
from settlement.models.pipeline import TransferStatus as TS
from settlement.tasks import crypto_sweep_task
from tests import factories, helpers
from tests.crypto.conftest import ledger_total
from tests.factories import ACTOR

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.real_clock]


@pytest.fixture(scope="module")
def anvil():
    if anvil_binary() is None:
        pytest.fail("anvil is not installed: `make test` installs it (scripts/ensure_anvil.sh)")
    with AnvilNode(block_time=1) as node:  # a block a second, as a real chain keeps producing
        yield node


@pytest.fixture(params=["batch"])
def engine(request, settings) -> str:
    settings.CLEARHOUSE_CRYPTO_ENGINE = request.param
    return str(request.param)


@pytest.fixture
def on_anvil(anvil, engine, settings, tmp_path, alice, bob, usd):
    settings.CLEARHOUSE_KEYSTORE = str(tmp_path / "keystore.json")
    settings.CLEARHOUSE_ETH_RPC_URL = anvil.url
    settings.CLEARHOUSE_CHAIN_RAILS = ["ethereum"]
    registry.reset()
    assert settings.CELERY_BROKER_URL.startswith("redis://") and not app.conf.task_always_eager
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # the test broker db only
    eth = factories.AssetFactory(
        code="ETH",
        kind=AssetKind.CRYPTO,
        precision=18,
        settlement_cycle=0,
        calendar=MarketCalendar.ALWAYS,
        chain=Chain.ETHEREUM,
        required_confirmations=2,
    )
    factories.instrument(eth, usd)
    wallets = {p.code: wallet_provision(participant=p, chain=Chain.ETHEREUM, actor=ACTOR) for p in (alice, bob)}
    local_chain_fund(wallet=wallets["BOB"], asset=eth, amount=Decimal("20"), actor=ACTOR)
    factories.fund(alice, usd, "1000000.00")
    yield {"eth": eth, "wallets": wallets, "anvil": anvil}
    registry.reset()


def chain_env() -> dict[str, str]:
    return {
        "CLEARHOUSE_ETH_RPC_URL": settings.CLEARHOUSE_ETH_RPC_URL,
        "CLEARHOUSE_CHAIN_RAILS": "ethereum",
        "CLEARHOUSE_KEYSTORE": settings.CLEARHOUSE_KEYSTORE,
        "CLEARHOUSE_CRYPTO_ENGINE": settings.CLEARHOUSE_CRYPTO_ENGINE,
    }


def start_worker(*, crash_after: str = "", name: str = "test-worker", **env: str) -> subprocess.Popen:
    return helpers.start_worker(
        name,
        chain_env() | {"CLEARHOUSE_CONFIRM_POLL_SECONDS": "0.3", "CLEARHOUSE_CRASH_AFTER": crash_after, **env},
    )


stop = helpers.stop


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def post(client, n: int, prefix: str) -> list[int]:
    payload = [
        {
            "external_id": f"{prefix}-{i}",
            "symbol": "ETH/USD",
            "buyer": "ALICE",
            "seller": "BOB",
            "quantity": "0.5",
            "price": "3000.00",
            "executed_at": timezone.now().isoformat(),
        }
        for i in range(n)
    ]
    response = client.post("/api/v1/trades/", payload, format="json")
    assert response.status_code == 201, response.json()
    return list(Trade.objects.filter(external_id__startswith=f"{prefix}-").values_list("pk", flat=True))


def all_settled(trade_ids) -> bool:
    legs = SettlementInstruction.objects.filter(trade_id__in=trade_ids)
    return legs.exists() and not legs.exclude(status=S.SETTLED).exists()


def chain_txs() -> int:
    """Chain transactions sent: one per batch and sender (batch engine), one per transfer (per trade)."""
    return ChainTransaction.objects.count() or ChainTransfer.objects.count()


def assert_ledger_equals_chain(env, participants):
    rail = chain_rail("ethereum")
    for participant in participants:
        assert ledger_total(participant, env["eth"]) == rail.balance(env["wallets"][participant.code].address)


def test_trades_settle_through_a_real_worker_on_anvil(staff_client, on_anvil, alice, bob):
    worker = start_worker()
    try:
        trade_ids = post(staff_client, 6, "W")
        assert wait_for(lambda: all_settled(trade_ids)), list(
            SettlementInstruction.objects.values_list("status", flat=True)
        )
    finally:
        stop(worker)
    transfers = ChainTransfer.objects.all()
    assert transfers.count() == 6 and set(transfers.values_list("status", flat=True)) == {TS.CONFIRMED}
    assert sorted(set(transfers.values_list("nonce", flat=True))) == list(range(chain_txs()))
    assert on_anvil["anvil"].w3.eth.get_transaction_count(on_anvil["wallets"]["BOB"].address) == chain_txs()
    assert all(t.confirmations >= 2 for t in transfers)
    assert_ledger_equals_chain(on_anvil, [alice, bob])


@pytest.mark.parametrize("engine", ["batch", "trade"], indirect=True)
def test_worker_killed_between_broadcast_and_ledger_post_settles_exactly_once(staff_client, on_anvil, alice, bob):
    crashing = start_worker(crash_after="broadcast", CELERY_VISIBILITY_TIMEOUT="5")
    trade_ids = post(staff_client, 1, "CRASH")
    assert crashing.wait(timeout=60) == 17  # died right after broadcasting
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TS.BROADCAST
    assert set(SettlementInstruction.objects.values_list("status", flat=True)) == {S.PROCESSING}
    seller = on_anvil["wallets"]["BOB"].address
    # the transaction is on chain (mined with the next block)
    assert wait_for(lambda: on_anvil["anvil"].w3.eth.get_transaction_count(seller) == 1, timeout=10)
    # restart: the unacked task comes back after the visibility timeout, and beat's sweeper
    # also re-dispatches the stuck transfer; both paths must end in one settlement
    worker = start_worker(CELERY_VISIBILITY_TIMEOUT="5")
    try:
        crypto_sweep_task.delay(older_than_seconds=0)
        assert wait_for(lambda: all_settled(trade_ids))
        time.sleep(6)  # let the redelivered task run too
    finally:
        stop(worker)
    assert ChainTransfer.objects.count() == 1
    assert on_anvil["anvil"].w3.eth.get_transaction_count(seller) == 1
    for leg in SettlementInstruction.objects.all():
        assert Journal.objects.filter(lock=leg.lock, kind=JournalKind.POST).count() == 1
    assert_ledger_equals_chain(on_anvil, [alice, bob])


@pytest.fixture
def own_redis(tmp_path, settings):
    """The broker is a Redis of this test's own (AOF, as deployed), which it crashes and restarts."""
    with helpers.own_broker(tmp_path, settings) as redis:
        yield redis


def test_crypto_recovers_within_30_s_from_a_sigkilled_worker_and_a_crashed_redis(
    own_redis, staff_client, on_anvil, alice, bob
):
    # given: beat (its sweepers only) and a worker on our own Redis, trades in flight
    helpers.beat_only(helpers.SWEEPERS)
    beat = helpers.start_beat(chain_env())
    worker = start_worker(name="doomed")
    processes = [beat, worker]
    try:
        trade_ids = post(staff_client, 8, "KILL")
        assert wait_for(lambda: ChainTransfer.objects.exists(), timeout=60)  # signing has begun
        # when: the worker is SIGKILLed mid-pipeline (it holds unacked tasks), Redis crashes too
        helpers.sigkill(worker)
        own_redis.crash()
        in_flight = SettlementInstruction.objects.exclude(status=S.SETTLED).count()
        own_redis.start()  # same data directory: the AOF brings the queues and unacked tasks back
        worker = start_worker(name="replacement")
        processes.append(worker)
        cleared = time.monotonic()
        # then: everything settles within 30 s of the fault clearing
        settled = wait_for(lambda: all_settled(trade_ids), timeout=30)
        took = time.monotonic() - cleared
        assert settled, list(SettlementInstruction.objects.values_list("status", flat=True))
        assert in_flight > 0, "the kill came too late to test anything"
        time.sleep(3)  # let redelivered tasks and sweeps run too: they must change nothing
    finally:
        for process in processes:
            stop(process)
    # nothing lost or doubled: one transaction per trade on chain, one post per leg, ledger == chain
    assert took < 30, took
    seller = on_anvil["wallets"]["BOB"].address
    assert ChainTransfer.objects.count() == 8
    assert on_anvil["anvil"].w3.eth.get_transaction_count(seller) == chain_txs()
    assert set(ChainTransfer.objects.values_list("status", flat=True)) == {TS.CONFIRMED}
    for leg in SettlementInstruction.objects.all():
        assert Journal.objects.filter(lock=leg.lock, kind=JournalKind.POST).count() == 1
    assert_ledger_equals_chain(on_anvil, [alice, bob])
