# ruff: noqa: F811 - ``coin`` is the imported fixture, named as in test_btc_sol
"""The batch engine on Bitcoin (one transaction, many outputs plus change) and Solana (many
transfers and a memo in one transaction) against the node simulators: each trade settles once,
reconciles on its own, and the chain faults (reorg, expiry) are handled per chain transaction."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.choices import Chain
from common.choices import InstructionStatus as S
from ledger.models import TransitionLog
from reconciliation.engine import reconciliation_run
from reconciliation.models import Break
from reconciliation.services import chain_transactions_fetch
from settlement.batch_tasks import crypto_batch_advance_task
from settlement.crypto.batch_form import batches_form
from settlement.crypto.batch_settle import batch_check
from settlement.models import ChainTransaction, ChainTransfer, CryptoBatch, Trade
from settlement.models.pipeline import TransferStatus as TS
from tests.crypto.conftest import ledger_total
from tests.crypto.test_btc_sol import coin  # noqa: F401 - the fixture
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db


@pytest.fixture
def batched(coin, settings):
    settings.CLEARHOUSE_CRYPTO_ENGINE = "batch"
    return coin


def run_batch(coin, quantities):
    trades = [coin.trade(quantity=q, external_id=f"B{n}") for n, q in enumerate(quantities)]
    (batch_id,) = batches_form().batches
    crypto_batch_advance_task(batch_id)  # lock, sign, broadcast, first check
    return trades, batch_id


def settled(trades) -> bool:
    return set(Trade.objects.filter(pk__in=[t.pk for t in trades]).values_list("instructions__status", flat=True)) == {
        S.SETTLED
    }


def ledger_matches_chain(coin):
    for code, wallet in coin.wallets.items():
        assert ledger_total(wallet.participant, coin.asset) == coin.on_chain(code), code


def test_one_chain_transaction_settles_every_trade_once_and_each_reconciles(batched):
    coin = batched
    trades, batch_id = run_batch(coin, ["0.5", "1.25", "0.125"])
    (tx,) = ChainTransaction.objects.all()
    assert tx.payouts == 3
    coin.mine(2)
    assert batch_check(batch_id=batch_id).done
    assert settled(trades)
    assert CryptoBatch.objects.get(pk=batch_id).settled == 3
    paid = coin.rail.payouts_in(tx.tx_hash)
    rows = list(ChainTransfer.objects.filter(chain_tx=tx).order_by("output_index"))
    assert [(i, ref, amount) for i, ref, _, amount in paid] == [
        (r.output_index, f"{r.instruction.reference}:a{r.attempt}", r.amount) for r in rows
    ]
    assert coin.on_chain("ALICE") == Decimal("1") + Decimal("1.875")  # each paid once
    ledger_matches_chain(coin)
    # reconciliation reads the batch transaction and matches every settlement on its own
    coin.mine(3)
    assert chain_transactions_fetch(chain=coin.chain, actor=ACTOR) is not None
    run = reconciliation_run(actor=ACTOR)
    assert not Break.objects.exists(), run.totals
    assert run.totals["matched"] >= 3


def test_a_reorg_below_the_threshold_sends_the_same_bytes_again_and_pays_once(batched):
    coin = batched
    trades, batch_id = run_batch(coin, ["1", "0.5"])
    (tx,) = ChainTransaction.objects.all()
    first = tx.tx_hash
    assert batch_check(batch_id=batch_id).waiting == 1  # mined on arrival: 1 of 2 confirmations
    coin.sim.call("sim_reorg", [1])  # the block holding it is gone
    assert batch_check(batch_id=batch_id).rebroadcast == 1
    coin.mine(2)
    assert batch_check(batch_id=batch_id).done
    assert settled(trades)
    assert ChainTransaction.objects.get().tx_hash == first
    assert coin.on_chain("ALICE") == Decimal("2.5")
    ledger_matches_chain(coin)


@pytest.mark.parametrize("coin", [Chain.SOLANA], indirect=True)
def test_a_solana_batch_whose_blockhash_expired_unlanded_is_re_signed_once(batched, settings):
    coin = batched
    settings.CLEARHOUSE_DROPPED_AFTER_CHECKS = 5
    coin.sim.inject("drop")
    trades, batch_id = run_batch(coin, ["1", "0.25"])
    (tx,) = ChainTransaction.objects.all()
    first = tx.tx_hash
    coin.sim.call("sim_expire_blockhash", [])
    assert batch_check(batch_id=batch_id).resigned == 1
    tx = ChainTransaction.objects.get()
    assert tx.tx_hash != first and tx.resign_count == 1
    assert set(ChainTransfer.objects.values_list("tx_hash", flat=True)) == {tx.tx_hash}
    coin.mine(2)
    assert batch_check(batch_id=batch_id).done
    assert settled(trades)
    assert coin.on_chain("ALICE") == Decimal("2.25")
    assert TransitionLog.objects.filter(entity_type="chaintransaction", reason__startswith="re-signed").count() == 1
    assert ChainTransaction.objects.get().status == TS.CONFIRMED
    ledger_matches_chain(coin)
