"""The chain as an external source: each rail lists the final blocks' (slots') transactions of
our wallets (Ethereum and Bitcoin by block, Solana by each wallet's signatures), each page is
imported once, and the run matches them against the chain transfers and the deposits the
ledger credited, by transaction hash."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.choices import Chain
from reconciliation.engine import reconciliation_run
from reconciliation.models import Break, ChainScan, ExternalRecord, ImportedFile, Source
from reconciliation.services import chain_transactions_fetch
from settlement.models import ChainTransfer
from settlement.models.pipeline import TransferStatus
from settlement.tasks import crypto_advance_task, crypto_check_task
from tests.crypto.conftest import chain, eth, eth_usd, funded  # noqa: F401 - fixtures
from tests.crypto.test_btc_sol import coin, settle_waiting  # noqa: F401 - fixture
from tests.crypto.test_pipeline import make_trade
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db


def test_chain_lists_are_imported_once_and_matched_by_hash(funded, chain, eth, eth_usd, alice, bob):  # noqa: F811
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1.5")
    crypto_advance_task(trade_ids=[trade.pk])
    crypto_check_task([t.pk for t in ChainTransfer.objects.all()])
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TransferStatus.CONFIRMED

    first = chain_transactions_fetch(chain="ethereum", actor=ACTOR)
    # two deposits into the wallets (from the chain's faucet) and bob's delivery to alice
    assert first is not None and first.created == 3
    records = {r.reference: r for r in ExternalRecord.objects.filter(source=Source.CHAIN)}
    delivery = records[transfer.tx_hash]
    assert (delivery.account, delivery.counterparty) == (funded["BOB"].address, funded["ALICE"].address)
    assert delivery.amount == Decimal("-1.5") and delivery.status == "confirmed"
    assert delivery.detail["block"] is not None
    assert chain_transactions_fetch(chain="ethereum", actor=ACTOR) is None  # no new final block
    assert ChainScan.objects.get().next_block == chain.w3.eth.block_number + 1

    clean = reconciliation_run(actor=ACTOR)
    assert clean.totals["breaks"] == {} and clean.totals["matched"] == 3

    # faults: value arrives that nobody credited; the list names another receiver for our
    # delivery; a deposit the ledger credited turns out reverted on chain
    chain.fund(funded["ALICE"].address, 10**17)
    assert chain_transactions_fetch(chain="ethereum", actor=ACTOR).created == 1
    delivery.counterparty = "0x000000000000000000000000000000000000dEaD"
    delivery.save()
    deposit = ExternalRecord.objects.filter(source=Source.CHAIN, account=funded["BOB"].address, amount=10).get()
    deposit.status = "failed"
    deposit.save()

    run = reconciliation_run(actor=ACTOR)
    breaks = {b.kind: b for b in Break.objects.all()}
    assert set(breaks) == {"unexpected", "counterparty", "status"}
    assert breaks["unexpected"].found == Decimal("0.1") and breaks["unexpected"].account == funded["ALICE"].address
    assert breaks["counterparty"].reference == transfer.tx_hash
    assert breaks["status"].reference == deposit.reference
    assert run.totals["matched"] == 1
    files = ImportedFile.objects.filter(source=Source.CHAIN).count()
    assert chain_transactions_fetch(chain="ethereum", actor=ACTOR) is None
    assert ImportedFile.objects.filter(source=Source.CHAIN).count() == files == 2


@pytest.mark.parametrize("coin", [Chain.BITCOIN, Chain.SOLANA], indirect=True)
def test_bitcoin_and_solana_list_their_transactions_and_they_match(coin, settings):  # noqa: F811
    """Bitcoin (UTXO model): a delivery spends the sender's outputs and pays the receiver plus
    change back. Solana (accounts): the balances move by the transfer and the fee. Either way the
    list shows the sender's debit of what the receiver got, the fee excluded."""
    settings.CLEARHOUSE_RECON_CHAIN_LISTS = [coin.chain]
    trade = coin.trade(quantity="1.5", external_id=f"{coin.chain}-R1")
    crypto_advance_task(trade_ids=[trade.pk])
    settle_waiting(coin)
    transfer = ChainTransfer.objects.get()
    assert transfer.status == TransferStatus.CONFIRMED

    first = chain_transactions_fetch(chain=coin.chain, actor=ACTOR)
    assert first is not None and first.created == 3  # two funding deposits and the delivery
    delivery = ExternalRecord.objects.get(source=Source.CHAIN, reference=transfer.tx_hash)
    bob, alice = coin.wallets["BOB"].address, coin.wallets["ALICE"].address
    assert (delivery.account, delivery.counterparty, delivery.amount) == (bob, alice, Decimal("-1.5"))
    deposits = ExternalRecord.objects.filter(source=Source.CHAIN).exclude(pk=delivery.pk)
    assert sorted((r.account, r.amount) for r in deposits) == sorted([(bob, Decimal("10")), (alice, Decimal("1"))])
    assert chain_transactions_fetch(chain=coin.chain, actor=ACTOR) is None  # nothing new is final yet

    clean = reconciliation_run(actor=ACTOR)
    assert clean.totals["breaks"] == {} and clean.totals["matched"] == 3

    # value paid to our wallet that nobody credited on the ledger is unexpected
    coin.sim.call("sim_fund", [alice, "0.2"])
    coin.mine(2)
    assert chain_transactions_fetch(chain=coin.chain, actor=ACTOR).created == 1
    run = reconciliation_run(actor=ACTOR)
    (found,) = Break.objects.all()
    assert (found.kind, found.account, found.found) == ("unexpected", alice, Decimal("0.2"))
    assert run.totals["matched"] == 3
