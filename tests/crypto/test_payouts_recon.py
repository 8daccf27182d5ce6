"""Reconciliation meets a chain transaction paying many settlements: the chain scan imports one
record per payout (``chain:tx_hash:index``, reference ``tx_hash:index``) and the internal
snapshot references each ChainTransfer of a ChainTransaction the same way, so every leg matches
its own payout; old single transfers still match by transaction hash."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.choices import Chain
from rails.base import Payout
from rails.crypto.registry import chain_rail_of
from reconciliation.engine import reconciliation_run
from reconciliation.models import Break, ExternalRecord, Source
from reconciliation.services import chain_transactions_fetch
from settlement.models import ChainTransfer
from settlement.models.batch import ChainTransaction, CryptoBatch
from settlement.models.pipeline import TransferStatus
from tests.crypto.conftest import chain, eth, eth_usd, funded  # noqa: F401 - fixtures
from tests.crypto.test_pipeline import make_trade
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db


def test_each_leg_of_a_payout_transaction_matches_its_own_payout(funded, chain, eth, eth_usd, alice, bob):  # noqa: F811
    # given three deliveries of bob's paid in one multisend from his wallet to alice's
    rail = chain_rail_of(Chain.ETHEREUM)
    sender, receiver = funded["BOB"].address, funded["ALICE"].address
    quantities = ["0.5", "0.25", "1.125"]
    legs = []
    for n, quantity in enumerate(quantities):
        trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity=quantity, external_id=f"MS{n}")
        legs.append(trade.instructions.get(asset=eth))
    payouts = [Payout(receiver, leg.amount, f"{leg.reference}") for leg in legs]
    rail.multisend_address()
    nonce = rail.confirmed_nonce(sender)
    signed = rail.sign_payouts(
        from_address=sender, payouts=payouts, nonce=nonce, fee_cap=len(payouts) * rail.payout_fee_reserve()
    )
    assert rail.broadcast_many([signed.raw]) == [None]
    [status] = rail.status_many([(signed.tx_hash, sender, signed.raw)])
    assert status.succeeded
    batch = CryptoBatch.objects.create(chain=Chain.ETHEREUM, size=len(legs))
    chain_tx = ChainTransaction.objects.create(
        batch=batch,
        chain=Chain.ETHEREUM,
        from_address=sender,
        nonce=nonce,
        tx_hash=signed.tx_hash,
        raw_tx=signed.raw,
        payouts=len(legs),
        fee_cap=signed.fee_cap,
        fee=status.fee,
    )
    for index, leg in enumerate(legs):
        ChainTransfer.objects.create(
            instruction=leg,
            attempt=1,
            chain=Chain.ETHEREUM,
            from_address=sender,
            to_address=receiver,
            amount=leg.amount,
            nonce=nonce,
            tx_hash=signed.tx_hash,
            chain_tx=chain_tx,
            output_index=index,
            fee_cap=Decimal(0),
        )
    ChainTransfer.objects.filter(chain_tx=chain_tx).update(status=TransferStatus.CONFIRMED)

    # when the chain is scanned and reconciled
    outcome = chain_transactions_fetch(chain=Chain.ETHEREUM, actor=ACTOR)

    # then one record per payout, keyed by position, and every leg matches its own
    assert outcome is not None
    records = {
        r.natural_key: r for r in ExternalRecord.objects.filter(source=Source.CHAIN, detail__tx_hash=signed.tx_hash)
    }
    assert sorted(records) == [f"ethereum:{signed.tx_hash}:{i}" for i in range(3)]
    for index, leg in enumerate(legs):
        record = records[f"ethereum:{signed.tx_hash}:{index}"]
        assert record.reference == f"{signed.tx_hash}:{index}"
        assert record.amount == -leg.amount and record.account == sender and record.counterparty == receiver
        assert record.detail["payout_reference"] == leg.reference
    run = reconciliation_run(actor=ACTOR)
    assert run.totals["breaks"] == {} and not Break.objects.exists()
    assert run.totals["matched"] == 2 + 3  # the two funding deposits and the three payouts


def test_a_payout_paid_short_on_chain_is_a_break_of_that_leg_only(funded, chain, eth, eth_usd, alice, bob):  # noqa: F811
    rail = chain_rail_of(Chain.ETHEREUM)
    sender, receiver = funded["BOB"].address, funded["ALICE"].address
    legs = [
        make_trade(eth_usd, buyer=alice, seller=bob, quantity=q, external_id=f"MT{q}").instructions.get(asset=eth)
        for q in ("0.5", "0.75")
    ]
    rail.multisend_address()
    nonce = rail.confirmed_nonce(sender)
    # the chain pays 0.7 for the second leg, the books expect 0.75
    payouts = [Payout(receiver, Decimal("0.5"), "a"), Payout(receiver, Decimal("0.7"), "b")]
    signed = rail.sign_payouts(from_address=sender, payouts=payouts, nonce=nonce, fee_cap=2 * rail.payout_fee_reserve())
    rail.broadcast_many([signed.raw])
    batch = CryptoBatch.objects.create(chain=Chain.ETHEREUM, size=2)
    chain_tx = ChainTransaction.objects.create(
        batch=batch,
        chain=Chain.ETHEREUM,
        from_address=sender,
        nonce=nonce,
        tx_hash=signed.tx_hash,
        raw_tx=signed.raw,
        payouts=2,
        fee_cap=signed.fee_cap,
    )
    for index, leg in enumerate(legs):
        ChainTransfer.objects.create(
            instruction=leg,
            attempt=1,
            chain=Chain.ETHEREUM,
            from_address=sender,
            to_address=receiver,
            amount=leg.amount,
            nonce=nonce,
            tx_hash=signed.tx_hash,
            chain_tx=chain_tx,
            output_index=index,
            fee_cap=Decimal(0),
        )
    ChainTransfer.objects.filter(chain_tx=chain_tx).update(status=TransferStatus.CONFIRMED)
    chain_transactions_fetch(chain=Chain.ETHEREUM, actor=ACTOR)
    reconciliation_run(actor=ACTOR)
    [only] = Break.objects.all()
    assert only.reference == f"{signed.tx_hash}:1"
    assert (only.expected, only.found) == (Decimal("-0.75"), Decimal("-0.7"))
